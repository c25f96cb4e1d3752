package chdb_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/internal/localcluster"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

const speedtestLike = `CREATE TABLE IF NOT EXISTS speedtest (
    measurement_uid UUID COMMENT 'Random UUID; idempotency key',
    start_time DateTime COMMENT 'When, UTC',
    note String COMMENT 'it''s got (parentheses), and a ; too',
    authority UInt8 COMMENT '1 when merged'
) ENGINE = ReplacingMergeTree(authority)
PARTITION BY toYYYYMM(start_time)
ORDER BY (toDate(start_time), measurement_uid)`

func TestRewrite(t *testing.T) {
	rw := chdb.NewRewriter("c1", "db")
	steps := func(stmt string) []chdb.Step {
		t.Helper()
		st, err := rw.Rewrite(stmt)
		if err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
		return st
	}
	has := func(s string, subs ...string) {
		t.Helper()
		for _, sub := range subs {
			if !strings.Contains(s, sub) {
				t.Errorf("%s\nlacks %q", s, sub)
			}
		}
	}
	column := func(st chdb.Step) string { // the column of a step of one ADD COLUMN
		if len(st.Adds) != 1 {
			return fmt.Sprintf("%d columns", len(st.Adds))
		}
		return st.Adds[0].Column
	}
	hasNot := func(s string, subs ...string) {
		t.Helper()
		for _, sub := range subs {
			if strings.Contains(s, sub) {
				t.Errorf("%s\nhas %q", s, sub)
			}
		}
	}

	// A measurement table: a replicated local table per shard, without
	// comments (18.16 refuses them on Replicated tables), and a
	// Distributed table with them, sharded by measurement_uid.
	st := steps(speedtestLike)
	if len(st) != 2 {
		t.Fatalf("speedtest: %d steps, want 2", len(st))
	}
	has(st[0].SQL, "CREATE TABLE IF NOT EXISTS db.speedtest_local ON CLUSTER c1 (",
		"ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/speedtest_local', '{replica}', authority)",
		"PARTITION BY toYYYYMM(start_time)", "ORDER BY (toDate(start_time), measurement_uid)", "note String")
	hasNot(st[0].SQL, "COMMENT", "idempotency", "got", "too'") // the whole literal, '' and all
	has(st[1].SQL, "CREATE TABLE IF NOT EXISTS db.speedtest ON CLUSTER c1 (", "COMMENT 'Random UUID; idempotency key'",
		"COMMENT 'it''s got (parentheses), and a ; too'",
		"ENGINE = Distributed(c1, db, speedtest_local, cityHash64(toString(measurement_uid)))")
	hasNot(st[1].SQL, "PARTITION BY")

	// Another MergeTree table: one replicated table on every server.
	st = steps(`CREATE TABLE IF NOT EXISTS analytics_runs (day Date COMMENT 'The day', n UInt64) ENGINE = MergeTree ORDER BY (day)`)
	if len(st) != 1 {
		t.Fatalf("analytics_runs: %d steps, want 1", len(st))
	}
	has(st[0].SQL, "db.analytics_runs ON CLUSTER c1 (day Date , n UInt64)",
		"ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/db/analytics_runs', '{replica}') ORDER BY (day)")

	// AS another table: the engine spelled out with a path of its own.
	st = steps(`CREATE TABLE IF NOT EXISTS speedtest_copy AS speedtest`)
	if len(st) != 2 {
		t.Fatalf("AS: %d steps, want 2", len(st))
	}
	has(st[0].SQL, "db.speedtest_copy_local ON CLUSTER c1 AS db.speedtest_local ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/speedtest_copy_local', '{replica}', authority) PARTITION BY")
	has(st[1].SQL, "db.speedtest_copy ON CLUSTER c1 AS db.speedtest ENGINE = Distributed(c1, db, speedtest_copy_local, ")

	// The shape of main's migration 0005: ALTER ... ADD COLUMN with a
	// comment and AFTER, on a measurement table.
	st = steps(`ALTER TABLE speedtest ADD COLUMN peer UInt8 DEFAULT 0 COMMENT 'test between two agents' AFTER authority`)
	if len(st) != 3 {
		t.Fatalf("ALTER: %d steps, want 3", len(st))
	}
	if st[0].SQL != "ALTER TABLE db.speedtest_local ADD COLUMN peer UInt8 DEFAULT 0  AFTER authority" ||
		st[0].Table != "speedtest_local" || column(st[0]) != "peer" || !st[0].PerShard || st[0].PerHost {
		t.Errorf("ALTER local step: %+v", st[0])
	}
	if st[1].SQL != "ALTER TABLE speedtest ADD COLUMN peer UInt8 DEFAULT 0  AFTER authority" ||
		st[1].Table != "speedtest" || column(st[1]) != "peer" || !st[1].PerHost {
		t.Errorf("ALTER Distributed step: %+v", st[1])
	}
	if st[2].SQL != "ALTER TABLE speedtest COMMENT COLUMN peer 'test between two agents'" || !st[2].PerHost || st[2].Table != "" {
		t.Errorf("ALTER Distributed comment step: %+v", st[2])
	}
	st = steps(`ALTER TABLE speedtest_copy ADD COLUMN a UInt8 COMMENT 'x, y', ADD COLUMN b String DEFAULT 'p,q'`)
	if len(st) != 5 || column(st[0]) != "a" || st[2].SQL != "ALTER TABLE speedtest_copy COMMENT COLUMN a 'x, y'" || column(st[3]) != "b" || !strings.HasPrefix(st[3].SQL, "ALTER TABLE db.speedtest_copy_local ADD COLUMN b String DEFAULT 'p,q'") {
		t.Errorf("two ADD COLUMN: %+v", st)
	}
	st = steps(`ALTER TABLE analytics_runs ADD COLUMN x UInt8 COMMENT 'x'`)
	if len(st) != 1 || st[0].SQL != "ALTER TABLE analytics_runs ADD COLUMN x UInt8 " || st[0].PerHost || st[0].PerShard {
		t.Errorf("ALTER a table on every server: %+v", st)
	}

	// Consecutive ALTERs of one table become one ALTER per target, in the
	// order local table, Distributed table, comments; a CREATE between
	// runs ends the run.
	var (
		batch []chdb.Step
		of    []int
	)
	for i, stmt := range []string{
		`ALTER TABLE speedtest ADD COLUMN a UInt8 COMMENT 'x'`,
		`ALTER TABLE speedtest ADD COLUMN b String AFTER a, COMMENT COLUMN note 'n'`,
		`ALTER TABLE speedtest ADD COLUMN c UInt8`,
		`CREATE TABLE IF NOT EXISTS analytics_more (n UInt64) ENGINE = MergeTree ORDER BY n`,
		`ALTER TABLE analytics_runs ADD COLUMN x UInt8`,
		`ALTER TABLE analytics_runs ADD COLUMN y UInt8 COMMENT 'y'`,
		`ALTER TABLE speedtest ADD COLUMN d UInt8`,
	} {
		for _, st := range steps(stmt) {
			batch, of = append(batch, st), append(of, i+1)
		}
	}
	batch, of = chdb.Batch(batch, of)
	want := []struct {
		sql               string
		of                int
		perHost, perShard bool
		table, columns    string
	}{
		{"ALTER TABLE db.speedtest_local ADD COLUMN a UInt8 , ADD COLUMN b String AFTER a, ADD COLUMN c UInt8", 1, false, true, "speedtest_local", "a b c"},
		{"ALTER TABLE speedtest ADD COLUMN a UInt8 , ADD COLUMN b String AFTER a, ADD COLUMN c UInt8", 1, true, false, "speedtest", "a b c"},
		{"ALTER TABLE speedtest COMMENT COLUMN a 'x', COMMENT COLUMN note 'n'", 1, true, false, "", ""},
		{"CREATE TABLE IF NOT EXISTS db.analytics_more ON CLUSTER c1 (n UInt64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/db/analytics_more', '{replica}') ORDER BY n", 4, false, false, "", ""},
		{"ALTER TABLE analytics_runs ADD COLUMN x UInt8, ADD COLUMN y UInt8 ", 5, false, false, "analytics_runs", "x y"},
		{"ALTER TABLE db.speedtest_local ADD COLUMN d UInt8", 7, false, true, "speedtest_local", "d"},
		{"ALTER TABLE speedtest ADD COLUMN d UInt8", 7, true, false, "speedtest", "d"},
	}
	if len(batch) != len(want) {
		t.Errorf("Batch: %d steps, want %d", len(batch), len(want))
	}
	for i := 0; i < len(batch) && i < len(want); i++ {
		st, w := batch[i], want[i]
		var cols []string
		for _, a := range st.Adds {
			cols = append(cols, a.Column)
		}
		if st.SQL != w.sql || of[i] != w.of || st.PerHost != w.perHost || st.PerShard != w.perShard || st.Table != w.table || strings.Join(cols, " ") != w.columns {
			t.Errorf("Batch step %d: %q (statement %d, per host %v, per shard %v, %s: %v)\nwant %+v", i, st.SQL, of[i], st.PerHost, st.PerShard, st.Table, cols, w)
		}
	}

	// What has no rule fails, naming the statement.
	for _, bad := range []string{
		`DROP TABLE speedtest`,
		`INSERT INTO speedtest VALUES (1)`,
		`CREATE TABLE t (x UInt8) ENGINE = Log`,
		`CREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = SummingMergeTree ORDER BY x`,
		`CREATE TABLE IF NOT EXISTS t AS nowhere`,
		`ALTER TABLE speedtest DROP COLUMN peer`,
		`ALTER TABLE speedtest MODIFY COLUMN peer UInt16`,
		`ALTER TABLE speedtest ADD COLUMN IF NOT EXISTS z UInt8`,
		`ALTER TABLE nowhere ADD COLUMN z UInt8`,
		`CREATE MATERIALIZED VIEW IF NOT EXISTS v AS SELECT 1`,
	} {
		if _, err := rw.Rewrite(bad); err == nil {
			t.Errorf("%s: rewritten; want an error", bad)
		}
	}

	// Every embedded migration has a rule.
	migs, err := schemas.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	all := chdb.NewRewriter("c1", "neubot")
	for _, m := range migs {
		for _, s := range m.Statements {
			if _, err := all.Rewrite(s); err != nil {
				t.Errorf("migration %04d_%s: %v", m.Version, m.Name, err)
			}
		}
	}
}

// TestClusterMigrations runs the migrations on a real cluster (2 shards × 2
// replicas, one ZooKeeper): two migrators at once, then again (nothing to
// do), then a migration shaped like main's 0005 (ALTER TABLE ... ADD COLUMN
// ... COMMENT ... AFTER), twice; then a retried insert is deduplicated on
// every shard, and the new column works through the Distributed table.
func TestClusterMigrations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cl := localchtest.Cluster(t, ctx, localcluster.Config{Dir: dir, Name: "c2", Shards: 2, Replicas: 2, Database: "mig"})
	addrs := cl.Addrs()

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, entry := range []string{addrs[0], addrs[3]} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := chdb.Setup(ctx, cl.Options(entry), nil)
			if err == nil {
				c.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrator %d: %v", i+1, err)
		}
	}
	migs, err := schemas.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := chdb.Setup(ctx, cl.Options(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	again, err := chdb.MigrateCluster(ctx, conn, cl.Options(), nil)
	if err != nil || len(again) != 0 {
		t.Fatalf("third run: applied %v, %v; want nothing", again, err)
	}

	engines := func(addr string) map[string]string {
		t.Helper()
		c := localchtest.Open(t, chdb.Options{Addr: addr, Database: "mig"})
		defer c.Close()
		rows, err := c.Query(ctx, "SELECT name, engine FROM system.tables WHERE database = 'mig'")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]string{}
		for rows.Next() {
			var n, e string
			if err := rows.Scan(&n, &e); err != nil {
				t.Fatal(err)
			}
			out[n] = e
		}
		return out
	}
	for _, a := range addrs {
		e := engines(a)
		for name, want := range map[string]string{
			"speedtest": "Distributed", "speedtest_local": "ReplicatedReplacingMergeTree",
			"ndt7_browser": "Distributed", "ndt7_browser_local": "ReplicatedReplacingMergeTree",
			"analytics_distributions": "ReplicatedMergeTree", chdb.MigrationsTable: "ReplicatedMergeTree",
		} {
			if e[name] != want {
				t.Errorf("%s: %s is %q, want %s", a, name, e[name], want)
			}
		}
		c := localchtest.Open(t, chdb.Options{Addr: a, Database: "mig"})
		if err := c.Exec(ctx, "SYSTEM SYNC REPLICA "+chdb.MigrationsTable); err != nil {
			t.Fatal(err)
		}
		done, err := chdb.Applied(ctx, c)
		c.Close()
		if err != nil || len(done) != len(migs) {
			t.Errorf("%s: applied %v, %v; want all %d", a, done, err, len(migs))
		}
	}

	// Main's 0005 shape, then the same statements again as another
	// migration: the second finds the columns and skips them, as a rerun
	// after a half-way failure does.
	alter := []string{
		"ALTER TABLE speedtest ADD COLUMN peer UInt8 DEFAULT 0 COMMENT '1 when the test ran between two agents' AFTER synthetic",
		"ALTER TABLE ndt7_browser ADD COLUMN peer UInt8 DEFAULT 0 COMMENT 'as speedtest.peer' AFTER synthetic",
		"ALTER TABLE analytics_runs ADD COLUMN note String DEFAULT '' COMMENT 'free text'",
	}
	extra := append(migs,
		schemas.Migration{Version: 90, Name: "peer", Statements: alter},
		schemas.Migration{Version: 91, Name: "peer_again", Statements: alter})
	applied, err := chdb.MigrateClusterWith(ctx, conn, cl.Options(), extra)
	if err != nil || fmt.Sprint(applied) != "[90 91]" {
		t.Fatalf("ALTER migrations: applied %v, %v; want [90 91]", applied, err)
	}
	for _, a := range addrs {
		c := localchtest.Open(t, chdb.Options{Addr: a, Database: "mig"})
		if err := c.Exec(ctx, "SYSTEM SYNC REPLICA analytics_runs"); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ table, column, comment string }{
			{"speedtest_local", "peer", ""},
			{"speedtest", "peer", "1 when the test ran between two agents"},
			{"ndt7_browser_local", "peer", ""},
			{"ndt7_browser", "peer", "as speedtest.peer"},
			{"analytics_runs", "note", ""},
		} {
			var n uint64
			var comment string
			if err := c.QueryRow(ctx, "SELECT count(), any(comment) FROM system.columns WHERE database = 'mig' AND table = ? AND name = ?", tc.table, tc.column).Scan(&n, &comment); err != nil {
				t.Fatal(err)
			}
			if n != 1 || comment != tc.comment {
				t.Errorf("%s: %s.%s: %d columns, comment %q; want 1, %q", a, tc.table, tc.column, n, comment, tc.comment)
			}
		}
		c.Close()
	}

	// A migration that failed half-way: shard 1 has the column (added on
	// one replica, replicated to the other), shard 2 not, the Distributed
	// tables not. Run again, it adds the column where it is missing.
	half := localchtest.Open(t, chdb.Options{Addr: cl.Node(0, 0).Addr(), Database: "mig"})
	err = half.Exec(ctx, "ALTER TABLE speedtest_local ADD COLUMN half UInt8 DEFAULT 0")
	half.Close()
	if err != nil {
		t.Fatal(err)
	}
	extra = append(extra, schemas.Migration{Version: 92, Name: "half", Statements: []string{"ALTER TABLE speedtest ADD COLUMN half UInt8 DEFAULT 0"}})
	if applied, err := chdb.MigrateClusterWith(ctx, conn, cl.Options(), extra); err != nil || fmt.Sprint(applied) != "[92]" {
		t.Fatalf("a migration that failed half-way, again: applied %v, %v; want [92]", applied, err)
	}
	for _, a := range addrs {
		c := localchtest.Open(t, chdb.Options{Addr: a, Database: "mig"})
		var n uint64
		err = c.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = 'mig' AND table IN ('speedtest', 'speedtest_local') AND name = 'half'").Scan(&n)
		c.Close()
		if err != nil || n != 2 {
			t.Errorf("%s: column half in %d of speedtest and speedtest_local, %v; want both", a, n, err)
		}
	}

	// The new column works through the Distributed table.
	ictx := clickhouse.Context(ctx, clickhouse.WithSettings(chdb.InsertSettings(cl.Options())))
	batch, err := conn.PrepareBatch(ictx, "INSERT INTO speedtest (measurement_uid, start_time, peer)")
	if err != nil {
		t.Fatal(err)
	}
	if err := batch.Append("00000000-0000-4000-8000-000000000001", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), uint8(1)); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	// A collector's retry: the same rows in the same order again, through
	// the Distributed table. Each shard gets the same block again and drops
	// it (insert_deduplicate), whether or not its part of the first insert
	// had landed: the raw rows stay as many as the records.
	rng := rand.New(rand.NewPCG(1, 2))
	test, _ := schemas.Lookup(schemas.SpeedtestName)
	var rows [][]any
	for i := 0; i < 1000; i++ {
		rec := schemastest.Speedtest(rng, time.Date(2026, 11, 2, 0, 0, i, 0, time.UTC), "151.5.10.20", 50)
		rows = append(rows, rec.Row(schemas.Annotation{IngestedAt: time.Date(2026, 11, 2, 1, 0, 0, 0, time.UTC)}, nil))
	}
	for try := 0; try < 2; try++ {
		b, err := conn.PrepareBatch(ictx, "INSERT INTO speedtest ("+strings.Join(test.TableColumns(), ", ")+")")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if err := b.Append(r...); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
	}
	var window string
	if err := conn.QueryRow(ctx, "SELECT value FROM system.merge_tree_settings WHERE name = 'replicated_deduplication_window'").Scan(&window); err != nil || window != "1000" {
		t.Errorf("replicated_deduplication_window = %q, %v; want 1000 (localch's cluster configuration)", window, err)
	}
	var raw uint64
	for s := 0; s < 2; s++ {
		c := localchtest.Open(t, chdb.Options{Addr: cl.Node(s, 1).Addr(), Database: "mig"})
		var n uint64
		if err := c.Exec(ctx, "SYSTEM SYNC REPLICA speedtest_local"); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRow(ctx, "SELECT count() FROM speedtest_local WHERE toDate(start_time) = toDate('2026-11-02')").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("shard %d got none of the rows", s+1)
		}
		raw += n
		c.Close()
	}
	if raw != uint64(len(rows)) {
		t.Errorf("the same 1000 rows inserted twice: %d raw rows on the shards, want 1000", raw)
	}

	// A read may reach the replica that has not fetched the part yet.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var peers uint64
		err := conn.QueryRow(ctx, "SELECT sum(peer) FROM speedtest FINAL").Scan(&peers)
		if err == nil && peers == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sum(peer) = %d, %v; want 1", peers, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
