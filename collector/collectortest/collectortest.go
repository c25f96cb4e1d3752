// Package collectortest runs a real collector for tests: the real handler
// on an httptest server, its spool in a temporary directory, loading into a
// fresh database of the ClickHouse that localchtest started, with the real
// IP database installed by scripts/setup.
package collectortest

import (
	"context"
	"sync"
	"testing"
	"time"

	"net/http/httptest"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/collector"
	"github.com/neubot/neubot/collector/annotate"
	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/schemas/schemastest"
)

var (
	ipdbOnce sync.Once
	ipdb     *annotate.DB
	ipdbErr  error
)

// IPDB returns the real IP database, loaded once per test binary; the test
// fails if it is not installed.
func IPDB(t testing.TB) *annotate.DB {
	t.Helper()
	ipdbOnce.Do(func() {
		dir, err := annotate.DefaultDir()
		if err != nil {
			ipdbErr = err
			return
		}
		ipdb, ipdbErr = annotate.Open(dir)
	})
	if ipdbErr != nil {
		t.Fatalf("collectortest: the IP database is required (run scripts/setup): %v", ipdbErr)
	}
	return ipdb
}

// Collector is a running test collector.
type Collector struct {
	*collector.Collector
	Server *httptest.Server
	Conn   driver.Conn  // to the collector's database
	DB     chdb.Options // where it loads
}

// Start starts a collector with the default configuration (New with an
// empty Config).
func Start(t testing.TB) *Collector {
	t.Helper()
	return New(t, collector.Config{})
}

// New starts a collector; cfg may be partly filled (SpoolDir, ClickHouse,
// IPDB and Logger are set when empty). It is stopped when the test ends.
func New(t testing.TB, cfg collector.Config) *Collector {
	t.Helper()
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = t.TempDir()
	}
	var conn driver.Conn
	if cfg.ClickHouse.Addr == "" {
		cfg.ClickHouse, conn = localchtest.NewDatabase(t)
	}
	if cfg.IPDB == nil {
		cfg.IPDB = IPDB(t)
	}
	if cfg.Enrolled == nil {
		cfg.Enrolled = schemastest.Enrolled() // schemastest.ServerKey as its ServerID
	}
	if cfg.Spool.MaxAge == 0 {
		cfg.Spool.MaxAge = 50 * time.Millisecond
	}
	c, err := collector.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		c.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		c.Close()
	})
	return &Collector{Collector: c, Server: srv, Conn: conn, DB: cfg.ClickHouse}
}

// WaitLoaded waits until the spool is empty (everything acknowledged is in
// ClickHouse) or fails the test after timeout.
func (c *Collector) WaitLoaded(t testing.TB, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if !c.Collector.WaitLoaded(ctx) {
		_, n, _ := c.SpoolStats()
		t.Fatalf("collectortest: %d records still spooled after %s", n, timeout)
	}
}
