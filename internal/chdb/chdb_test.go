package chdb_test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/schemas"
)

func TestMain(m *testing.M) { os.Exit(localchtest.MainNoLeaks(m)) }

// migratedOnItsOwn is a database of the test server that chdb.Setup
// migrated (localchtest.NewDatabase copies a template instead), dropped
// when the test ends.
func migratedOnItsOwn(t *testing.T) (chdb.Options, driver.Conn) {
	t.Helper()
	opts := localchtest.Server(t).Options()
	opts.Database = "own_" + strings.ToLower(t.Name())
	conn, err := chdb.Setup(context.Background(), opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+opts.Database)
		conn.Close()
	})
	return opts, conn
}

func TestMigrateOnceEach(t *testing.T) {
	_, conn := migratedOnItsOwn(t)
	ctx := context.Background()
	migs, err := schemas.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	done, err := chdb.Applied(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != len(migs) {
		t.Fatalf("applied %d migrations, have %d", len(done), len(migs))
	}
	again, err := chdb.Migrate(ctx, conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 0 {
		t.Fatalf("second run applied %v; want nothing", again)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+chdb.MigrationsTable).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if int(n) != len(migs) {
		t.Fatalf("%d rows in %s, want %d", n, chdb.MigrationsTable, len(migs))
	}
}

// TestCopyIsMigrated: a test's database (localchtest.NewDatabase, a copy
// of a template) has the tables (columns, types, defaults, comments,
// engines) and the migration records that chdb.Setup gives a database
// migrated on its own.
func TestCopyIsMigrated(t *testing.T) {
	ctx := context.Background()
	copied, conn := localchtest.NewDatabase(t)
	own, direct := migratedOnItsOwn(t)
	want, got := describe(t, direct, own.Database), describe(t, conn, copied.Database)
	if len(want) < 10 {
		t.Fatalf("a migrated database has %d tables: %v", len(want), want)
	}
	for table, w := range want {
		if g := got[table]; g != w {
			t.Errorf("table %s\ncopy:     %s\nmigrated: %s", table, g, w)
		}
	}
	for table := range got {
		if _, ok := want[table]; !ok {
			t.Errorf("the copy has a table %s that migrations do not make", table)
		}
	}
	wantApplied, err := chdb.Applied(ctx, direct)
	if err != nil {
		t.Fatal(err)
	}
	gotApplied, err := chdb.Applied(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotApplied, wantApplied) {
		t.Fatalf("migrations recorded in the copy %v, in the migrated database %v", gotApplied, wantApplied)
	}
	if applied, err := chdb.Migrate(ctx, conn, nil); err != nil || len(applied) != 0 {
		t.Fatalf("migrating the copy applied %v (%v), want nothing", applied, err)
	}
}

// describe gives each table of db as SHOW CREATE TABLE spells it (the
// database's name taken out) and its columns as system.columns lists them.
func describe(t *testing.T, conn driver.Conn, db string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, table := range localchtest.Strings(t, conn, "SELECT name FROM system.tables WHERE database = ?", db) {
		var stmt string
		if err := conn.QueryRow(ctx, "SHOW CREATE TABLE "+db+"."+table).Scan(&stmt); err != nil {
			t.Fatal(err)
		}
		cols, err := chdb.Select(ctx, conn, func(rows driver.Rows, s *string) error {
			var name, typ, kind, expr, comment string
			err := rows.Scan(&name, &typ, &kind, &expr, &comment)
			*s = fmt.Sprintf("%s %s %s %s %q", name, typ, kind, expr, comment)
			return err
		}, "SELECT name, type, default_kind, default_expression, comment FROM system.columns WHERE database = ? AND table = ?", db, table)
		if err != nil {
			t.Fatal(err)
		}
		out[table] = strings.ReplaceAll(stmt, db+".", "DB.") + "\n" + strings.Join(cols, "\n")
	}
	return out
}

// TestTablesMatchTypes checks, against the live tables made by the
// migrations, that every test's column list equals its table's columns in
// order, and that every column is documented with a COMMENT.
func TestTablesMatchTypes(t *testing.T) {
	opts, conn := localchtest.NewDatabase(t)
	ctx := context.Background()
	for _, test := range schemas.Tests() {
		rows, err := conn.Query(ctx, "SELECT name, comment FROM system.columns WHERE database = ? AND table = ?", opts.Database, test.Table)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var name, comment string
			if err := rows.Scan(&name, &comment); err != nil {
				t.Fatal(err)
			}
			if comment == "" {
				t.Errorf("%s.%s has no COMMENT documenting it", test.Table, name)
			}
			got = append(got, name)
		}
		rows.Close()
		want := test.TableColumns()
		if len(got) != len(want) {
			gs, ws := append([]string(nil), got...), append([]string(nil), want...)
			sort.Strings(gs)
			sort.Strings(ws)
			t.Fatalf("table %s has columns %v;\nthe Go types say %v", test.Table, gs, ws)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("table %s column %d is %s; the Go types say %s", test.Table, i, got[i], want[i])
			}
		}
	}
}

// TestEveryColumnDocumented: every column of every table the migrations
// make carries a COMMENT.
func TestEveryColumnDocumented(t *testing.T) {
	opts, conn := localchtest.NewDatabase(t)
	rows, err := conn.Query(context.Background(), "SELECT table, name, comment FROM system.columns WHERE database = ?", opts.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var table, name, comment string
		if err := rows.Scan(&table, &name, &comment); err != nil {
			t.Fatal(err)
		}
		n++
		if comment == "" && table != chdb.MigrationsTable {
			t.Errorf("%s.%s has no COMMENT", table, name)
		}
	}
	if n < 50 {
		t.Fatalf("only %d columns: migrations not applied?", n)
	}
}
