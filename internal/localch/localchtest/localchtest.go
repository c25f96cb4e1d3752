// Package localchtest gives integration tests a real ClickHouse server: one
// local clickhouse-server per test binary, started from TestMain, and a fresh
// migrated database per test. A missing binary fails the tests loudly; it
// never skips them.
package localchtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/localch"
)

var (
	server *localch.Server
	seq    atomic.Int64
)

// Main starts ClickHouse in a temporary directory, runs the tests and stops
// it. Use it as `func TestMain(m *testing.M) { os.Exit(localchtest.Main(m)) }`.
func Main(m *testing.M) int {
	dir, err := os.MkdirTemp("", "neubot-clickhouse-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "localchtest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	server, err = localch.Start(ctx, localch.Config{Dir: dir, SkipMigrate: true})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "localchtest: cannot start ClickHouse, so the integration tests cannot run:", err)
		return 1
	}
	code := m.Run()
	server.Stop()
	return code
}

// Server returns the server started by Main.
func Server(t testing.TB) *localch.Server {
	t.Helper()
	if server == nil {
		t.Fatal("localchtest: no server: call localchtest.Main from TestMain")
	}
	return server
}

// NewDatabase creates a fresh database named after the test, applies the
// migrations and returns options to reach it and an open connection. The
// database is dropped when the test ends.
func NewDatabase(t testing.TB) (chdb.Options, driver.Conn) {
	t.Helper()
	s := Server(t)
	name := fmt.Sprintf("t%d_%s", seq.Add(1), sanitize(t.Name()))
	if len(name) > 60 {
		name = name[:60]
	}
	opts := s.Options()
	opts.Database = name
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := chdb.Setup(ctx, opts, nil)
	if err != nil {
		t.Fatalf("localchtest: set up database %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name)
		conn.Close()
	})
	return opts, conn
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}
