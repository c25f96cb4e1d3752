package chdb

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/internal/sqltext"
	"github.com/neubot/neubot/schemas"
)

// Cluster mode. The migrations in schemas/ are written once, for a single
// node. When Options.Cluster names a cluster, the migrator rewrites each
// statement for it (Rewriter):
//
//   - a measurement table (a MergeTree-family table with a measurement_uid
//     column) becomes t_local, a Replicated* table on every shard
//     (ZooKeeper path per shard, {shard} and {replica} macros of each
//     server), plus t, a Distributed table over the t_local of every shard,
//     sharded by cityHash64(toString(measurement_uid)): every copy of one
//     measurement lands on one shard, so ReplacingMergeTree and FINAL
//     collapse them there. Readers and writers keep using the name t.
//   - any other MergeTree-family table (the analytics results, small)
//     becomes one Replicated* table with one ZooKeeper path for the whole
//     cluster: every server holds all of it, reads need no fan-out, and
//     DROP PARTITION and INSERT on any server reach all the others.
//   - ALTER TABLE t ADD COLUMN goes to t_local on one replica of each shard
//     in turn (replication carries it to the shard's other replicas, and
//     the ALTER returns once they have it), then to the Distributed t on
//     every server in turn; a column is left out where it is already
//     there, so a migration that failed half-way can be run again. Not ON
//     CLUSTER: 18.16's distributed-DDL worker stops for good (until the
//     server restarts) on an unexpected ZooKeeper error in the shard-lock
//     path that ALTER ... ON CLUSTER of a replicated table takes, and every
//     later ON CLUSTER statement then waits for that server in vain (seen
//     under CI load); a replicated table is ALTERed through its replication
//     log instead, without the DDL queue. (18.16 also refuses ALTER ... ON
//     CLUSTER on a non-replicated table of a replicated cluster.)
//   - Consecutive ALTER TABLE statements of one table in a migration run as
//     one ALTER per target (Batch): each step costs a round per server (the
//     columns checked, then ALTERed) plus the replicas' catching up, whatever
//     it holds, and a migration adds dozens of columns.
//
// Column comments stay on the Distributed tables (what system.columns
// shows readers): 18.16 refuses a Replicated table whose columns carry
// comments ("Table structure in ZooKeeper is too different"), so the
// Replicated tables are created without them. Any other statement is an
// error: a migration that the rewriter does not understand must not run on
// a cluster half-translated.

// LocalSuffix names the per-shard table under a Distributed one.
const LocalSuffix = "_local"

// ShardingKey is the Distributed tables' sharding expression: the
// idempotency key (18.16's cityHash64 does not take a UUID, its string does).
const ShardingKey = "cityHash64(toString(measurement_uid))"

// Step is one statement of a rewritten migration.
type Step struct {
	SQL string
	// PerHost runs SQL on every server of the cluster in turn instead of
	// once on the connection.
	PerHost bool
	// Table and Adds: SQL is ALTER TABLE Table ADD COLUMN ..., one clause
	// per column (18.16 cannot say IF NOT EXISTS): the step runs only the
	// clauses of the columns that Table does not have yet, and nothing
	// when it has them all.
	Table string
	Adds  []Add
	// PerShard: SQL (an ALTER of a replicated table, with Adds) runs on
	// one replica of each shard, where no replica of the shard has the
	// columns yet; replication carries it to the others.
	PerShard bool

	// An ALTER step is head + " " + its clauses joined by ", ", of the
	// statement ALTER TABLE base: Batch merges the steps of the same head.
	head, base string
	clauses    []string
}

// Add is one ADD COLUMN clause of a Step.
type Add struct{ Column, Clause string }

// alterStep returns the step head clauses... of an ALTER of base.
func alterStep(base, head string, clauses ...string) Step {
	return Step{SQL: head + " " + strings.Join(clauses, ", "), head: head, base: base, clauses: clauses}
}

// addStep is alterStep of ADD COLUMN clauses, column by column, on table.
func addStep(base, head, table string, adds ...Add) Step {
	var clauses []string
	for _, a := range adds {
		clauses = append(clauses, a.Clause)
	}
	st := alterStep(base, head, clauses...)
	st.Table, st.Adds = table, adds
	return st
}

// rank orders the steps of one table's ALTERs in Batch: the replicated
// tables' columns first, then the Distributed table's, then its comments.
func (st Step) rank() int {
	switch {
	case st.PerShard || !st.PerHost:
		return 0
	case len(st.Adds) > 0:
		return 1
	}
	return 2
}

// Batch merges the steps that consecutive ALTER TABLE statements of one
// table were rewritten into (of[i]: the statement of steps[i]) into one
// step per target (t_local per shard, t on every server, t's comments),
// in that order, each clause in the order of the statements; any other
// step stays where it is. It returns the steps and the statement each
// comes from (the first of those merged).
func Batch(steps []Step, of []int) ([]Step, []int) {
	var (
		out   []Step
		outOf []int
	)
	for i := 0; i < len(steps); {
		j := i + 1
		for steps[i].base != "" && j < len(steps) && steps[j].base == steps[i].base {
			j++
		}
		if steps[i].base == "" {
			out, outOf = append(out, steps[i]), append(outOf, of[i])
			i = j
			continue
		}
		for rank := 0; rank <= 2; rank++ {
			at := map[string]int{} // head: index in out
			for k := i; k < j; k++ {
				st := steps[k]
				if st.rank() != rank {
					continue
				}
				n, ok := at[st.head]
				if !ok {
					at[st.head] = len(out)
					out, outOf = append(out, st), append(outOf, of[k])
					continue
				}
				m := alterStep(st.base, st.head, slices.Concat(out[n].clauses, st.clauses)...)
				m.PerHost, m.PerShard, m.Table, m.Adds = st.PerHost, st.PerShard, st.Table, slices.Concat(out[n].Adds, st.Adds)
				out[n] = m
			}
		}
		i = j
	}
	return out, outOf
}

type tableKind int

const (
	sharded    tableKind = iota + 1 // t_local per shard + Distributed t
	replicated                      // one Replicated table on every server
)

type tableDef struct {
	kind    tableKind
	engine  string // e.g. ReplacingMergeTree
	args    string // engine arguments, e.g. authority
	clauses string // PARTITION BY ... ORDER BY ... SETTINGS ...
}

// Rewriter translates single-node migration statements into cluster
// statements. It remembers the tables that the statements before created,
// so feed it every migration in order, applied ones too.
type Rewriter struct {
	Cluster, Database string
	tables            map[string]tableDef
}

// NewRewriter returns a Rewriter for database db on cluster.
func NewRewriter(cluster, db string) *Rewriter {
	return &Rewriter{Cluster: cluster, Database: db, tables: map[string]tableDef{}}
}

var (
	createRE     = regexp.MustCompile(`(?is)^CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+([A-Za-z_][A-Za-z0-9_]*)\s*(.*)$`)
	asRE         = regexp.MustCompile(`(?is)^AS\s+([A-Za-z_][A-Za-z0-9_]*)$`)
	engineRE     = regexp.MustCompile(`(?is)^ENGINE\s*=\s*([A-Za-z]+)\s*(?:\(([^()]*)\))?\s*(.*)$`)
	alterRE      = regexp.MustCompile(`(?is)^ALTER\s+TABLE\s+([A-Za-z_][A-Za-z0-9_]*)\s+(.*)$`)
	addColRE     = regexp.MustCompile(`(?is)^ADD\s+COLUMN\s+([A-Za-z_][A-Za-z0-9_]*)\s`)
	ifNotRE      = regexp.MustCompile(`(?i)^ADD\s+COLUMN\s+IF\s+NOT\s+EXISTS`)
	commentColRE = regexp.MustCompile(`(?is)^COMMENT\s+COLUMN\s+([A-Za-z_][A-Za-z0-9_]*)\s+('(?:[^'\\]|\\.|'')*')\s*$`)
	uidColRE     = regexp.MustCompile(`(?m)(^|[(,]\s*)measurement_uid\s+UUID\b`)
	mergeTrees   = map[string]bool{"MergeTree": true, "ReplacingMergeTree": true}
)

// Rewrite returns the cluster steps of one single-node statement.
func (r *Rewriter) Rewrite(stmt string) ([]Step, error) {
	stmt = strings.TrimSpace(stmt)
	if m := createRE.FindStringSubmatch(stmt); m != nil {
		return r.create(m[1], strings.TrimSpace(m[2]))
	}
	if m := alterRE.FindStringSubmatch(stmt); m != nil {
		return r.alter(m[1], strings.TrimSpace(m[2]))
	}
	return nil, fmt.Errorf("chdb: cluster mode does not know how to run %q", head(stmt))
}

func (r *Rewriter) create(name, rest string) ([]Step, error) {
	if m := asRE.FindStringSubmatch(rest); m != nil {
		src, ok := r.tables[m[1]]
		if !ok {
			return nil, fmt.Errorf("chdb: cluster mode: CREATE TABLE %s AS %s: %s is not a table of the migrations", name, m[1], m[1])
		}
		r.tables[name] = src
		// The engine is spelled out: AS alone would copy the source's
		// ZooKeeper path and make the two tables replicas of each other.
		switch src.kind {
		case sharded:
			return []Step{
				{SQL: fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s%s ON CLUSTER %s AS %s%s ENGINE = %s %s",
					r.q(name), LocalSuffix, r.Cluster, r.q(m[1]), LocalSuffix, r.engine(src, r.shardPath(name)), src.clauses)},
				{SQL: fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s ON CLUSTER %s AS %s ENGINE = %s",
					r.q(name), r.Cluster, r.q(m[1]), r.distributed(name))},
			}, nil
		default:
			return []Step{{SQL: fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s ON CLUSTER %s AS %s ENGINE = %s %s",
				r.q(name), r.Cluster, r.q(m[1]), r.engine(src, r.globalPath(name)), src.clauses)}}, nil
		}
	}
	if !strings.HasPrefix(rest, "(") {
		return nil, fmt.Errorf("chdb: cluster mode: CREATE TABLE %s: want a column list or AS table", name)
	}
	end, err := sqltext.Closing(rest)
	if err != nil {
		return nil, fmt.Errorf("chdb: cluster mode: CREATE TABLE %s: %w", name, err)
	}
	cols, tail := rest[:end+1], strings.TrimSpace(rest[end+1:])
	m := engineRE.FindStringSubmatch(tail)
	if m == nil {
		return nil, fmt.Errorf("chdb: cluster mode: CREATE TABLE %s: cannot read its ENGINE clause %q", name, head(tail))
	}
	def := tableDef{engine: m[1], args: strings.TrimSpace(m[2]), clauses: strings.TrimSpace(m[3])}
	if !mergeTrees[def.engine] {
		return nil, fmt.Errorf("chdb: cluster mode: CREATE TABLE %s: engine %s has no rule (only %s)", name, def.engine, keys(mergeTrees))
	}
	bare, _, err := sqltext.Comments(cols)
	if err != nil {
		return nil, fmt.Errorf("chdb: cluster mode: CREATE TABLE %s: %w", name, err)
	}
	def.kind = replicated
	if uidColRE.MatchString(cols) {
		def.kind = sharded
	}
	r.tables[name] = def
	if def.kind == sharded {
		return []Step{
			{SQL: fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s%s ON CLUSTER %s %s ENGINE = %s %s",
				r.q(name), LocalSuffix, r.Cluster, bare, r.engine(def, r.shardPath(name)), def.clauses)},
			{SQL: fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s ON CLUSTER %s %s ENGINE = %s",
				r.q(name), r.Cluster, cols, r.distributed(name))},
		}, nil
	}
	return []Step{{SQL: fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s ON CLUSTER %s %s ENGINE = %s %s",
		r.q(name), r.Cluster, bare, r.engine(def, r.globalPath(name)), def.clauses)}}, nil
}

func (r *Rewriter) alter(name, rest string) ([]Step, error) {
	def, ok := r.tables[name]
	if !ok {
		return nil, fmt.Errorf("chdb: cluster mode: ALTER TABLE %s: not a table of the migrations", name)
	}
	clauses, err := sqltext.Split(rest, ",")
	if err != nil {
		return nil, fmt.Errorf("chdb: cluster mode: ALTER TABLE %s: %w", name, err)
	}
	var steps []Step
	for _, c := range clauses {
		if ifNotRE.MatchString(c) {
			return nil, fmt.Errorf("chdb: ALTER TABLE %s: ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS", name)
		}
		if cm := commentColRE.FindStringSubmatch(c); cm != nil {
			// Comments live on the Distributed tables only (18.16's
			// Replicated tables refuse them): set it there on every
			// server; a replicated table keeps none.
			if def.kind == sharded {
				steps = append(steps, r.comment(name, cm[1], cm[2]))
			}
			continue
		}
		m := addColRE.FindStringSubmatch(c + " ")
		if m == nil {
			return nil, fmt.Errorf("chdb: cluster mode: ALTER TABLE %s: only ADD COLUMN and COMMENT COLUMN have a rule, not %q", name, head(c))
		}
		bare, comments, err := sqltext.Comments(c)
		if err != nil {
			return nil, fmt.Errorf("chdb: cluster mode: ALTER TABLE %s: %w", name, err)
		}
		add := Add{Column: m[1], Clause: bare}
		if def.kind == sharded {
			local := addStep(name, "ALTER TABLE "+r.q(name)+LocalSuffix, name+LocalSuffix, add)
			local.PerShard = true
			dist := addStep(name, "ALTER TABLE "+name, name, add)
			dist.PerHost = true
			steps = append(steps, local, dist)
			// 18.16's Distributed tables drop the COMMENT of ADD COLUMN;
			// COMMENT COLUMN sets it (and setting it again is harmless).
			if len(comments) > 0 {
				steps = append(steps, r.comment(name, add.Column, comments[0]))
			}
		} else {
			// One Replicated table on every server: ALTER it on one,
			// ZooKeeper carries it to the others.
			steps = append(steps, addStep(name, "ALTER TABLE "+name, name, add))
		}
	}
	return steps, nil
}

// comment is the step of COMMENT COLUMN col literal on a Distributed table:
// on every server.
func (r *Rewriter) comment(name, col, literal string) Step {
	st := alterStep(name, "ALTER TABLE "+name, "COMMENT COLUMN "+col+" "+literal)
	st.PerHost = true
	return st
}

// q qualifies a table name with the database: a statement ON CLUSTER runs
// on the other servers in their default database otherwise.
func (r *Rewriter) q(name string) string { return r.Database + "." + name }

func (r *Rewriter) engine(def tableDef, path string) string {
	args := fmt.Sprintf("'%s', '{replica}'", path)
	if def.args != "" {
		args += ", " + def.args
	}
	return fmt.Sprintf("Replicated%s(%s)", def.engine, args)
}

func (r *Rewriter) shardPath(name string) string {
	return fmt.Sprintf("/clickhouse/tables/{shard}/%s/%s%s", r.Database, name, LocalSuffix)
}

func (r *Rewriter) globalPath(name string) string {
	return fmt.Sprintf("/clickhouse/tables/all/%s/%s", r.Database, name)
}

func (r *Rewriter) distributed(name string) string {
	return fmt.Sprintf("Distributed(%s, %s, %s%s, %s)", r.Cluster, r.Database, name, LocalSuffix, ShardingKey)
}

func head(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

func keys(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// hosts lists the native addresses of every server of the cluster, as the
// server behind conn knows them (system.clusters), in shard order.
func hosts(ctx context.Context, conn driver.Conn, cluster string) ([]string, error) {
	shards, err := shardHosts(ctx, conn, cluster)
	return slices.Concat(shards...), err
}

// shardHosts lists the native addresses of the servers of each shard of
// the cluster (system.clusters of the server behind conn).
func shardHosts(ctx context.Context, conn driver.Conn, cluster string) ([][]string, error) {
	rows, err := conn.Query(ctx, "SELECT shard_num, host_address, toString(port) FROM system.clusters WHERE cluster = ? ORDER BY shard_num, replica_num", cluster)
	if err != nil {
		return nil, fmt.Errorf("chdb: servers of cluster %s: %w", cluster, err)
	}
	defer rows.Close()
	var (
		out  [][]string
		last uint32
	)
	for rows.Next() {
		var (
			shard uint32
			h, p  string
		)
		if err := rows.Scan(&shard, &h, &p); err != nil {
			return nil, err
		}
		if strings.Contains(h, ":") {
			h = "[" + h + "]"
		}
		if len(out) == 0 || shard != last {
			out = append(out, nil)
			last = shard
		}
		out[len(out)-1] = append(out[len(out)-1], h+":"+p)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("chdb: the server knows no cluster %q (remote_servers in its configuration)", cluster)
	}
	return out, nil
}

// exists says whether the server behind conn has a database, or a table of
// its connection's database when table is not empty.
func exists(ctx context.Context, conn driver.Conn, db, table string) (bool, error) {
	var n uint64
	var err error
	if table == "" {
		err = conn.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", db).Scan(&n)
	} else {
		err = conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?", table).Scan(&n)
	}
	return n > 0, err
}

// InsertSettings are the settings of the collector's inserts: on a cluster
// the INSERT into a Distributed table returns once every shard's part of
// it is written on a replica of that shard (not later, from a queue of the
// receiving server), so a spool segment is deleted only after its rows are
// on the shards.
func InsertSettings(o Options) clickhouse.Settings {
	if o.Cluster == "" {
		return nil
	}
	return clickhouse.Settings{"insert_distributed_sync": 1}
}

// MigrateCluster is Migrate on the cluster o.Cluster: every migration is
// rewritten (Rewriter) and run with ON CLUSTER, on one replica of each
// shard, or on every server. The
// migrations table is one ReplicatedMergeTree with one ZooKeeper path for
// the whole cluster, so every server knows what was applied, whichever a
// migrator connects to. Migrators may run at once (every collector runs
// one when it connects): CREATE ... IF NOT EXISTS ON CLUSTER is queued and
// run in turn on each server, and an ADD COLUMN is checked first; the
// loser of a race on the same ADD COLUMN gets an error from ClickHouse,
// waits for the winner's column to be on every server, and goes on.
func MigrateCluster(ctx context.Context, conn driver.Conn, o Options, log *slog.Logger) ([]int, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db := o.Database
	if db == "" {
		db = DefaultDatabase
	}
	ok, err := exists(ctx, conn, db, MigrationsTable)
	if err != nil {
		return nil, fmt.Errorf("chdb: %w", err)
	}
	if !ok {
		if err := conn.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.%s ON CLUSTER %s (
			version UInt32, name String, applied_at DateTime
		) ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/%s/%s', '{replica}') ORDER BY version`,
			db, MigrationsTable, o.Cluster, db, MigrationsTable)); err != nil {
			return nil, fmt.Errorf("chdb: create %s: %w", MigrationsTable, err)
		}
	}
	migs, err := schemas.Migrations()
	if err != nil {
		return nil, err
	}
	return migrateCluster(ctx, conn, o, db, migs, log)
}

func migrateCluster(ctx context.Context, conn driver.Conn, o Options, db string, migs []schemas.Migration, log *slog.Logger) ([]int, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The migrations table is replicated: another migrator's record may not
	// be on this server yet (a CI run read migration 18 as not applied right
	// after two migrators had both finished). Running a migration again is
	// harmless (every step checks first) but wasted and reported as applied,
	// so the replica catches up first; if it cannot within syncWait (a
	// replica down), the run goes on with what this server knows.
	sctx, cancel := context.WithTimeout(ctx, syncWait)
	if err := conn.Exec(sctx, "SYSTEM SYNC REPLICA "+db+"."+MigrationsTable); err != nil && ctx.Err() == nil {
		log.Warn("chdb: migrations table not synced with the other replicas; going on", "err", err)
	}
	cancel()
	done, err := Applied(ctx, conn)
	if err != nil {
		return nil, err
	}
	rw := NewRewriter(o.Cluster, db)
	var applied []int
	for _, m := range migs {
		var (
			steps []Step
			of    []int // the statement each step comes from, 1-based
		)
		for i, stmt := range m.Statements {
			st, err := rw.Rewrite(stmt)
			if err != nil {
				return applied, &MigrationError{Version: m.Version, Name: m.Name, Statement: i + 1, Err: err}
			}
			steps = append(steps, st...)
			for range st {
				of = append(of, i+1)
			}
		}
		if done[m.Version] {
			continue
		}
		steps, of = Batch(steps, of)
		for i, st := range steps {
			if err := runStepRaced(ctx, conn, o, st); err != nil {
				return applied, &MigrationError{Version: m.Version, Name: m.Name, Statement: of[i], Err: fmt.Errorf("%w (cluster statement: %s)", err, head(st.SQL))}
			}
		}
		if err := record(ctx, conn, m); err != nil {
			return applied, &MigrationError{Version: m.Version, Name: m.Name, Err: err}
		}
		log.Info("migration applied on the cluster", "version", m.Version, "name", m.Name, "cluster", o.Cluster)
		applied = append(applied, m.Version)
	}
	return applied, nil
}

// runStepRaced runs st; when an ADD COLUMN fails because another migrator
// added the column meanwhile (two collectors starting together), it waits
// for the columns to be where st wants them, and then the step is done.
func runStepRaced(ctx context.Context, conn driver.Conn, o Options, st Step) error {
	err := runStep(ctx, conn, o, st)
	if err == nil || len(st.Adds) == 0 || transient(err) {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if ok, cerr := columnsEverywhere(ctx, conn, o, st); cerr == nil && ok {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}

// columns lists the columns of table in the connection's database.
func columns(ctx context.Context, conn driver.Conn, table string) (map[string]bool, error) {
	names, err := Select(ctx, conn, func(rows driver.Rows, name *string) error { return rows.Scan(name) },
		"SELECT name FROM system.columns WHERE database = currentDatabase() AND table = ?", table)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(names))
	for _, name := range names {
		out[name] = true
	}
	return out, nil
}

// missing is st's SQL with only the ADD COLUMN clauses of the columns that
// have is not true of; empty when there is none.
func (st Step) missing(has func(column string) bool) string {
	var clauses []string
	for _, a := range st.Adds {
		if !has(a.Column) {
			clauses = append(clauses, a.Clause)
		}
	}
	if len(clauses) == 0 {
		return ""
	}
	return st.head + " " + strings.Join(clauses, ", ")
}

// columnsEverywhere says whether st's columns are in st's table on every
// server (PerShard, PerHost) or on the connection's.
func columnsEverywhere(ctx context.Context, conn driver.Conn, o Options, st Step) (bool, error) {
	all := true
	check := func(c driver.Conn) error {
		cols, err := columns(ctx, c, st.Table)
		if err == nil && st.missing(func(col string) bool { return cols[col] }) != "" {
			all = false
		}
		return err
	}
	if !st.PerHost && !st.PerShard {
		return all, check(conn)
	}
	err := eachHost(ctx, conn, o, check)
	return all, err
}

// eachHost runs f on every server of the cluster in turn.
func eachHost(ctx context.Context, conn driver.Conn, o Options, f func(driver.Conn) error) error {
	addrs, err := hosts(ctx, conn, o.Cluster)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if err := onHost(ctx, o, a, f); err != nil {
			return fmt.Errorf("on %s: %w", a, err)
		}
	}
	return nil
}

func runStep(ctx context.Context, conn driver.Conn, o Options, st Step) error {
	if len(st.Adds) == 0 {
		if st.PerHost {
			return eachHost(ctx, conn, o, func(c driver.Conn) error { return c.Exec(ctx, st.SQL) })
		}
		return conn.Exec(ctx, st.SQL)
	}
	// addMissing adds, on the server of c, the columns its table lacks.
	addMissing := func(c driver.Conn) error {
		cols, err := columns(ctx, c, st.Table)
		if err != nil {
			return err
		}
		if sql := st.missing(func(col string) bool { return cols[col] }); sql != "" {
			return c.Exec(ctx, sql)
		}
		return nil
	}
	if st.PerHost {
		return eachHost(ctx, conn, o, addMissing)
	}
	if !st.PerShard {
		return addMissing(conn)
	}
	// PerShard: a column is added on a shard where none of its servers has
	// it, through one of them; one that some servers of a shard have and
	// others not is an error (replication is behind, or was broken).
	shards, err := shardHosts(ctx, conn, o.Cluster)
	if err != nil {
		return err
	}
	for n, addrs := range shards {
		have, err := serversHave(ctx, o, addrs, st.Table)
		if err != nil {
			return fmt.Errorf("shard %d, %w", n+1, err)
		}
		for _, a := range st.Adds {
			if k := have[a.Column]; k > 0 && k < len(addrs) {
				return fmt.Errorf("column %s is in %s on %d of the %d servers of shard %d: wait for replication, or add it by hand where it is missing", a.Column, st.Table, k, len(addrs), n+1)
			}
		}
		sql := st.missing(func(col string) bool { return have[col] > 0 })
		if sql == "" {
			continue
		}
		err = onHost(ctx, o, addrs[0], func(c driver.Conn) error { return c.Exec(ctx, sql) })
		// 18.16's ALTER of a Replicated table waits for the shard's active
		// replicas, but not when another ALTER of the table overlaps it (a
		// second migrator): the next shard and the next step start only
		// once every replica of this one has the columns, whoever added them.
		if werr := replicasHave(ctx, o, addrs, st, replicaWait); werr != nil {
			if err != nil {
				return fmt.Errorf("shard %d, on %s: %w", n+1, addrs[0], err)
			}
			return fmt.Errorf("shard %d: %w", n+1, werr)
		}
	}
	return nil
}

// syncWait bounds the wait for the migrations table to catch up with the
// other replicas before a migrator reads it.
const syncWait = 30 * time.Second

// replicaWait bounds the wait for a shard's replicas to have an ALTER's
// columns (18.16's replication_alter_columns_timeout is 60 s).
const replicaWait = 60 * time.Second

// serversHave counts, per column of table, the servers of addrs that have it.
func serversHave(ctx context.Context, o Options, addrs []string, table string) (map[string]int, error) {
	have := map[string]int{}
	for _, a := range addrs {
		if err := onHost(ctx, o, a, func(c driver.Conn) error {
			cols, err := columns(ctx, c, table)
			for col := range cols {
				have[col]++
			}
			return err
		}); err != nil {
			return nil, fmt.Errorf("on %s: %w", a, err)
		}
	}
	return have, nil
}

// replicasHave waits, up to d, until every server of addrs has st's columns.
func replicasHave(ctx context.Context, o Options, addrs []string, st Step, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		have, err := serversHave(ctx, o, addrs, st.Table)
		if err != nil {
			return err
		}
		if st.missing(func(col string) bool { return have[col] == len(addrs) }) == "" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s on some of %s still lacks some of the columns after %s", st.Table, strings.Join(addrs, ", "), d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// onHost runs f on a connection to one server of the cluster.
func onHost(ctx context.Context, o Options, addr string, f func(driver.Conn) error) error {
	h := o
	h.Addr, h.More, h.MaxOpenConns = addr, nil, 1
	c, err := Open(ctx, h)
	if err != nil {
		return err
	}
	defer c.Close()
	return f(c)
}
