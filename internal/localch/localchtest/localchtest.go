// Package localchtest gives integration tests a real ClickHouse server: one
// local clickhouse-server per test binary, started by the first test that
// needs it and stopped by TestMain, and a fresh
// migrated database per test. A missing binary fails the tests loudly; it
// never skips them.
package localchtest

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/goleak"

	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/localch"
	"github.com/neubot/neubot/internal/localcluster"
	"github.com/neubot/neubot/schemas"
)

var (
	inMain    bool
	startOnce sync.Once
	server    *localch.Server
	startErr  error
	dir       string
	seq       atomic.Int64
	zonesMu   sync.Mutex
	zones     = map[string]*localch.Server{}
)

// Main runs the tests and stops the ClickHouse server that the first test
// needing it started, in a temporary directory. Use it as
// `func TestMain(m *testing.M) { os.Exit(localchtest.Main(m)) }`.
func Main(m *testing.M) int {
	inMain = true
	code := m.Run()
	if server != nil {
		server.Stop()
	}
	for _, z := range zones {
		z.Stop()
	}
	if dir != "" {
		os.RemoveAll(dir)
	}
	return code
}

// MainNoLeaks is Main, then a check that the tests left no goroutine
// running (go.uber.org/goleak): a package whose tests start servers,
// loaders or pollers proves that they all stop. Use it as Main.
func MainNoLeaks(m *testing.M, opts ...goleak.Option) int {
	code := Main(m)
	if code != 0 {
		return code
	}
	if err := goleak.Find(opts...); err != nil {
		fmt.Fprintf(os.Stderr, "localchtest: goroutines left running after the tests: %v\n", err)
		return 1
	}
	return 0
}

// Server returns the test binary's ClickHouse server, starting it on first
// use. A test that cannot have it fails, with the reason.
func Server(t testing.TB) *localch.Server {
	t.Helper()
	if !inMain {
		t.Fatal("localchtest: call localchtest.Main from TestMain, so that the server is stopped")
	}
	startOnce.Do(func() {
		dir, startErr = os.MkdirTemp("", "neubot-clickhouse-")
		if startErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		server, startErr = localch.Start(ctx, localch.Config{Dir: dir, SkipMigrate: true})
	})
	if startErr != nil {
		t.Fatalf("localchtest: cannot start ClickHouse, so this integration test cannot run: %v", startErr)
	}
	return server
}

// ServerIn returns a ClickHouse server whose time zone is tz (its
// <timezone>), started on first use and stopped by Main, with a database
// migrated as NewDatabase's are; it proves that queries take days and hours
// in the zone they name, not in the server's.
func ServerIn(t testing.TB, tz string) (chdb.Options, driver.Conn) {
	t.Helper()
	if !inMain {
		t.Fatal("localchtest: call localchtest.Main from TestMain, so that the server is stopped")
	}
	zonesMu.Lock()
	s, ok := zones[tz]
	if !ok {
		d, err := os.MkdirTemp("", "neubot-clickhouse-tz-")
		if err != nil {
			zonesMu.Unlock()
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		s, err = localch.Start(ctx, localch.Config{Dir: d, Timezone: tz})
		cancel()
		if err != nil {
			zonesMu.Unlock()
			t.Fatalf("localchtest: cannot start ClickHouse in zone %s: %v", tz, err)
		}
		zones[tz] = s
		t.Cleanup(func() {}) // the server outlives the test; Main stops it
	}
	zonesMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := chdb.Setup(ctx, s.Options(), nil)
	if err != nil {
		t.Fatalf("localchtest: migrate the server in zone %s: %v", tz, err)
	}
	t.Cleanup(func() { conn.Close() })
	return s.Options(), conn
}

// NewDatabase creates a fresh database named after the test, migrated,
// and returns options to reach it and an open connection. The database is
// dropped when the test ends.
//
// The migrations run once per test binary, into a template database;
// each test's database is a copy of the template's tables (SHOW CREATE
// TABLE, renamed) and of its migration records: a dozen statements
// instead of every migration's hundreds. internal/chdb's TestCopyIsMigrated
// proves the copy is what chdb.Setup makes.
func NewDatabase(t testing.TB) (chdb.Options, driver.Conn) {
	t.Helper()
	s := Server(t)
	tmpl := template(t, s)
	name := fmt.Sprintf("t%d_%s", seq.Add(1), sanitize(t.Name()))
	if len(name) > 60 {
		name = name[:60]
	}
	opts := s.Options()
	opts.Database = name
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := copyDatabase(ctx, s, tmpl, name); err != nil {
		t.Fatalf("localchtest: set up database %s: %v", name, err)
	}
	conn, err := chdb.Open(ctx, opts)
	if err != nil {
		t.Fatalf("localchtest: open database %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name)
		conn.Close()
	})
	return opts, conn
}

var (
	templateOnce sync.Once
	templateErr  error
)

// templateDB is the database the migrations run in, once per test binary.
const templateDB = "t0_template"

// template returns the name of s's migrated template database, migrating
// it on first use.
func template(t testing.TB, s *localch.Server) string {
	t.Helper()
	templateOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		opts := s.Options()
		opts.Database = templateDB
		var conn driver.Conn
		if conn, templateErr = chdb.Setup(ctx, opts, nil); templateErr == nil {
			conn.Close()
		}
	})
	if templateErr != nil {
		t.Fatalf("localchtest: migrate the template database %s: %v", templateDB, templateErr)
	}
	return templateDB
}

// copyDatabase creates database to with from's tables (their statements as
// SHOW CREATE TABLE gives them, in to) and from's migration records.
func copyDatabase(ctx context.Context, s *localch.Server, from, to string) error {
	opts := s.Options()
	opts.Database = "default"
	opts.MaxOpenConns = 1
	conn, err := chdb.Open(ctx, opts)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "CREATE DATABASE "+to); err != nil {
		return err
	}
	tables, err := chdb.Select(ctx, conn, func(rows driver.Rows, name *string) error { return rows.Scan(name) },
		"SELECT name FROM system.tables WHERE database = ? ORDER BY name", from)
	if err != nil {
		return err
	}
	if len(tables) == 0 {
		return fmt.Errorf("template database %s has no tables", from)
	}
	for _, table := range tables {
		var stmt string
		if err := conn.QueryRow(ctx, "SHOW CREATE TABLE "+from+"."+table).Scan(&stmt); err != nil {
			return fmt.Errorf("show create table %s: %w", table, err)
		}
		head := "CREATE TABLE " + from + "." + table + " "
		if !strings.HasPrefix(stmt, head) {
			return fmt.Errorf("show create table %s: %.80q does not start with %q", table, stmt, head)
		}
		if err := conn.Exec(ctx, "CREATE TABLE "+to+"."+table+" "+stmt[len(head):]); err != nil {
			return fmt.Errorf("copy table %s: %w", table, err)
		}
	}
	return conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s.%s SELECT * FROM %s.%s", to, chdb.MigrationsTable, from, chdb.MigrationsTable))
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}

// Cluster starts a local ClickHouse cluster (localcluster.Start) for t:
// stopped when t ends, the servers' last errors logged first if t failed.
func Cluster(t testing.TB, ctx context.Context, cfg localcluster.Config) *localcluster.Cluster {
	t.Helper()
	cl, err := localcluster.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(cl.Errors(15))
		}
	})
	return cl
}

// Open opens a connection with o (chdb.Open: the default database when o
// names none), closed when the test ends; an error fails the test.
func Open(t testing.TB, o chdb.Options) driver.Conn {
	t.Helper()
	conn, err := chdb.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Rows runs query and returns its column types and its rows, each value
// scanned into a new value of its column's scan type (not a pointer),
// failing the test on an error: a whole table read for comparisons.
func Rows(t testing.TB, conn driver.Conn, query string, args ...any) ([]driver.ColumnType, [][]any) {
	t.Helper()
	rows, err := conn.Query(context.Background(), query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	var out [][]any
	for rows.Next() {
		ptrs := make([]any, len(types))
		for i, ct := range types {
			ptrs[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		vals := make([]any, len(ptrs))
		for i, p := range ptrs {
			vals[i] = reflect.ValueOf(p).Elem().Interface()
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return types, out
}

// Select is chdb.Select for tests: an error fails the test.
func Select[T any](t testing.TB, conn driver.Conn, scan func(rows driver.Rows, x *T) error, query string, args ...any) []T {
	t.Helper()
	out, err := chdb.Select(context.Background(), conn, scan, query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return out
}

// Strings runs query, whose one column is a String, and returns its
// values, failing the test on an error.
func Strings(t testing.TB, conn driver.Conn, query string, args ...any) []string {
	t.Helper()
	return Select(t, conn, func(rows driver.Rows, s *string) error { return rows.Scan(s) }, query, args...)
}

// InsertRecords loads recs, all of one test, into that test's table as the
// collector's loader does (the same Row), each with the annotation that
// annotate gives it; an error fails the test.
func InsertRecords(t testing.TB, conn driver.Conn, recs []*schemas.Record, annotate func(*schemas.Record) schemas.Annotation) {
	t.Helper()
	if len(recs) == 0 {
		return
	}
	test, ok := schemas.Lookup(recs[0].TestName)
	if !ok {
		t.Fatalf("no test %q", recs[0].TestName)
	}
	batch, err := conn.PrepareBatch(context.Background(), "INSERT INTO "+test.Table+" ("+strings.Join(test.TableColumns(), ", ")+")")
	if err != nil {
		t.Fatal(err)
	}
	defer batch.Close()
	for _, r := range recs {
		if r.TestName != recs[0].TestName {
			t.Fatalf("a %s record among %s ones", r.TestName, recs[0].TestName)
		}
		if err := batch.Append(r.Row(annotate(r), nil)...); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
}
