package chdb_test

import (
	"context"
	"os"
	"sort"
	"testing"

	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/schemas"
)

func TestMain(m *testing.M) { os.Exit(localchtest.MainNoLeaks(m)) }

func TestMigrateOnceEach(t *testing.T) {
	_, conn := localchtest.NewDatabase(t)
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
