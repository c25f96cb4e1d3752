// Package chdb opens ClickHouse connections over the native protocol and
// applies the embedded migrations of package schemas. It is the only place
// that knows how Neubot talks to ClickHouse; the SQL itself lives in schemas.
package chdb

import (
	"context"
	sqldriver "database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/internal/sqlrows"
	"github.com/neubot/neubot/schemas"
)

// DefaultDatabase is the database that holds Neubot's tables.
const DefaultDatabase = "neubot"

// MigrationsTable records which migrations have been applied.
const MigrationsTable = "neubot_migrations"

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// Options say where ClickHouse is.
type Options struct {
	Addr string // host:port of the native protocol
	// More lists further servers, host:port, tried in turn when Addr
	// does not answer (e.g. the other replicas of a cluster).
	More     []string
	Database string // DefaultDatabase when empty
	Username string // "default" when empty
	Password string
	// MaxOpenConns bounds the connection pool (default 8).
	MaxOpenConns int
	// Cluster names the ClickHouse cluster (remote_servers) that the
	// database lives on; empty is a single node. See cluster.go.
	Cluster string
}

// Addrs is Addr followed by More.
func (o Options) Addrs() []string { return append([]string{o.Addr}, o.More...) }

// Open connects to ClickHouse and pings it. The database must exist unless
// it is created with EnsureDatabase first (see Setup).
func Open(ctx context.Context, o Options) (driver.Conn, error) {
	if o.Database == "" {
		o.Database = DefaultDatabase
	}
	if !identRE.MatchString(o.Database) {
		return nil, fmt.Errorf("chdb: bad database name %q", o.Database)
	}
	if o.Username == "" {
		o.Username = "default"
	}
	if o.MaxOpenConns == 0 {
		o.MaxOpenConns = 8
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Protocol:     clickhouse.Native,
		Addr:         o.Addrs(),
		Auth:         clickhouse.Auth{Database: o.Database, Username: o.Username, Password: o.Password},
		DialTimeout:  5 * time.Second,
		ReadTimeout:  5 * time.Minute,
		MaxOpenConns: o.MaxOpenConns,
		MaxIdleConns: o.MaxOpenConns,
	})
	if err != nil {
		return nil, fmt.Errorf("chdb: open %s: %w", o.Addr, err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("chdb: ping %s: %w", o.Addr, err)
	}
	return conn, nil
}

// Setup creates the database if needed, connects to it and applies the
// migrations: what `neubot-server migrate`, `up` and the tests all run. With
// o.Cluster set it does so on the whole cluster (see cluster.go).
func Setup(ctx context.Context, o Options, log *slog.Logger) (driver.Conn, error) {
	if o.Cluster == "" {
		return setup(ctx, o, log)
	}
	// On a cluster, a server may drop a connection while it runs a
	// distributed DDL (seen once in about twenty runs of two migrators at
	// once on a loaded 2×2 test cluster): every step is idempotent, so
	// try again, as a collector would.
	var err error
	for attempt := 1; ; attempt++ {
		var conn driver.Conn
		if conn, err = setup(ctx, o, log); err == nil || attempt == 3 || !transient(err) {
			return conn, err
		}
		if log != nil {
			log.Warn("chdb: cluster set-up interrupted; trying again", "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt) * time.Second):
		}
	}
}

// transient says whether err is a connection the server dropped.
func transient(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) || errors.Is(err, sqldriver.ErrBadConn) ||
		errors.As(err, &ne) && ne.Timeout() ||
		// clickhouse-go does not always wrap the socket's error.
		strings.Contains(err.Error(), "failed to read packet")
}

func setup(ctx context.Context, o Options, log *slog.Logger) (driver.Conn, error) {
	db := o.Database
	if db == "" {
		db = DefaultDatabase
	}
	if !identRE.MatchString(db) {
		return nil, fmt.Errorf("chdb: bad database name %q", db)
	}
	if o.Cluster != "" && !identRE.MatchString(o.Cluster) {
		return nil, fmt.Errorf("chdb: bad cluster name %q", o.Cluster)
	}
	boot := o
	boot.Database = "default"
	boot.MaxOpenConns = 1
	c, err := Open(ctx, boot)
	if err != nil {
		return nil, err
	}
	if o.Cluster == "" {
		err = c.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db)
	} else {
		// ON CLUSTER waits for every server: not when the database is
		// there already, so that a collector reconnecting while one
		// replica is down does not wait for it.
		var ok bool
		if ok, err = exists(ctx, c, db, ""); err == nil && !ok {
			err = c.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db+" ON CLUSTER "+o.Cluster)
		}
	}
	c.Close()
	if err != nil {
		return nil, fmt.Errorf("chdb: create database %s: %w", db, err)
	}
	o.Database = db
	conn, err := Open(ctx, o)
	if err != nil {
		return nil, err
	}
	if o.Cluster != "" {
		_, err = MigrateCluster(ctx, conn, o, log)
	} else {
		_, err = Migrate(ctx, conn, log)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// Migrate applies, in order, every embedded migration not yet recorded in
// MigrationsTable, and records each after its last statement succeeded. It
// returns the versions it applied. ClickHouse has no transactions: a
// migration that failed half-way is retried whole, so each statement must be
// idempotent (CREATE ... IF NOT EXISTS).
func Migrate(ctx context.Context, conn driver.Conn, log *slog.Logger) ([]int, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+MigrationsTable+` (
		version UInt32, name String, applied_at DateTime
	) ENGINE = MergeTree ORDER BY version`); err != nil {
		return nil, fmt.Errorf("chdb: create %s: %w", MigrationsTable, err)
	}
	done, err := Applied(ctx, conn)
	if err != nil {
		return nil, err
	}
	migs, err := schemas.Migrations()
	if err != nil {
		return nil, err
	}
	var applied []int
	for _, m := range migs {
		if done[m.Version] {
			continue
		}
		for i, stmt := range m.Statements {
			if err := conn.Exec(ctx, stmt); err != nil {
				return applied, &MigrationError{Version: m.Version, Name: m.Name, Statement: i + 1, Err: err}
			}
		}
		if err := record(ctx, conn, m); err != nil {
			return applied, &MigrationError{Version: m.Version, Name: m.Name, Err: err}
		}
		log.Info("migration applied", "version", m.Version, "name", m.Name)
		applied = append(applied, m.Version)
	}
	return applied, nil
}

// record notes migration m as applied. Inserts go through a batch: an
// INSERT with bound values in Exec does not work with ClickHouse 18.16.
func record(ctx context.Context, conn driver.Conn, m schemas.Migration) error {
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+MigrationsTable+" (version, name, applied_at)")
	if err != nil {
		return err
	}
	defer batch.Close()
	if err := batch.Append(uint32(m.Version), m.Name, time.Now().UTC()); err != nil {
		return err
	}
	return batch.Send()
}

// Applied returns the set of migration versions recorded as applied.
func Applied(ctx context.Context, conn driver.Conn) (map[int]bool, error) {
	vs, err := Select(ctx, conn, func(rows driver.Rows, v *uint32) error { return rows.Scan(v) },
		"SELECT DISTINCT version FROM "+MigrationsTable)
	if err != nil {
		return nil, fmt.Errorf("chdb: read %s: %w", MigrationsTable, err)
	}
	done := map[int]bool{}
	for _, v := range vs {
		done[int(v)] = true
	}
	return done, nil
}

// MigrationError says which migration and statement failed.
type MigrationError struct {
	Version   int
	Name      string
	Statement int // 1-based; 0 when recording the migration failed
	Err       error
}

func (e *MigrationError) Error() string {
	if e.Statement == 0 {
		return fmt.Sprintf("chdb: migration %04d_%s: record: %v", e.Version, e.Name, e.Err)
	}
	return fmt.Sprintf("chdb: migration %04d_%s: statement %d: %v", e.Version, e.Name, e.Statement, e.Err)
}

func (e *MigrationError) Unwrap() error { return e.Err }

// Select runs query with args and returns one T per row, each filled by
// scan from the current row (rows.Scan into its fields, then whatever the
// row needs turned into): the one loop over rows that readers share.
func Select[T any](ctx context.Context, conn driver.Conn, scan func(rows driver.Rows, x *T) error, query string, args ...any) ([]T, error) {
	rows, err := conn.Query(ctx, query, args...)
	return sqlrows.Append(nil, rows, err, scan)
}
