package localch_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/neubot/neubot/internal/localch"
)

func TestMissingBinary(t *testing.T) {
	_, err := localch.Start(context.Background(), localch.Config{Dir: t.TempDir(), Binary: "/nonexistent/clickhouse-server"})
	if !errors.Is(err, localch.ErrNoBinary) || !strings.Contains(err.Error(), "scripts/setup") || !strings.Contains(err.Error(), "apt-get install clickhouse-server") {
		t.Fatalf("got %v; want ErrNoBinary saying how to install it", err)
	}
}

// TestStartStopRestart: the server starts on a free port, keeps its data
// across a restart on the same directory, and stops cleanly.
func TestStartStopRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := localch.Start(ctx, localch.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := s.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "CREATE TABLE kept (x UInt8) ENGINE = TinyLog"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	s.Stop()
	select {
	case <-s.Done():
	default:
		t.Fatal("Stop returned before the process exited")
	}
	s2, err := s.Restart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Stop()
	if s2.Addr() != s.Addr() {
		t.Fatalf("restart moved from %s to %s", s.Addr(), s2.Addr())
	}
	conn, err = s2.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = 'neubot' AND name IN ('kept', 'speedtest')").Scan(&n); err != nil || n != 2 {
		t.Fatalf("after restart: %d tables, %v; want kept and speedtest", n, err)
	}
}
