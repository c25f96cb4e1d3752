package agent_test

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/neubot/neubot/agent"
	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/speedtest"
	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/schemas"
)

// killable is a TCP relay in front of a test server that dies like a killed
// server: once it has carried cutAfter bytes towards the client, it stops
// listening and resets every connection.
type killable struct {
	l        net.Listener
	target   string
	cutAfter int64
	down     atomic.Int64
	mu       sync.Mutex
	conns    []net.Conn
	killed   chan struct{}
	once     sync.Once
}

func newKillable(t *testing.T, target string, cutAfter int64) *killable {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &killable{l: l, target: target, cutAfter: cutAfter, killed: make(chan struct{})}
	go k.serve()
	t.Cleanup(k.kill)
	return k
}

func (k *killable) serve() {
	for {
		c, err := k.l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", k.target)
		if err != nil {
			c.Close()
			continue
		}
		k.mu.Lock()
		k.conns = append(k.conns, c, s)
		k.mu.Unlock()
		go func() { io.Copy(s, c); s.(*net.TCPConn).CloseWrite() }()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
					if k.down.Add(int64(n)) > k.cutAfter {
						k.kill()
						return
					}
				}
				if err != nil {
					c.(*net.TCPConn).CloseWrite()
					return
				}
			}
		}()
	}
}

func (k *killable) kill() {
	k.once.Do(func() {
		k.l.Close()
		k.mu.Lock()
		defer k.mu.Unlock()
		for _, c := range k.conns {
			c.(*net.TCPConn).SetLinger(0) // a reset, as from a dead process's kernel
			c.Close()
		}
		close(k.killed)
	})
}

// TestFailureRecordReachesClickHouse: the test server dies in the middle
// of the download; the agent still keeps a record of the test, with the
// failure's code and phase, uploads it through the real collector, and it
// is in ClickHouse, with no goodput.
func TestFailureRecordReachesClickHouse(t *testing.T) {
	col := collectortest.Start(t)
	server := testServer(t)
	// Negotiation, pings and a few MB of download pass, then the "kill".
	k := newKillable(t, server[len("http://"):], 4<<20)
	a, err := agent.New(agent.Options{
		StateDir: t.TempDir(), CollectorURL: col.Server.URL, ServerURL: "http://" + k.l.Addr().String(),
		Tests: map[string]plugin.Measurer{schemas.SpeedtestName: speedtest.NewMeasurer(speedtest.Config{})},
	})
	if err != nil {
		t.Fatal(err)
	}
	a.SetConsent(true, true, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done; a.Close() }()

	tested := make(chan error, 1)
	if err := a.StartTest(context.Background(), tested); err != nil {
		t.Fatal(err)
	}
	if err := <-tested; err == nil {
		t.Fatal("the test succeeded although its server died")
	}
	select {
	case <-k.killed:
	default:
		t.Fatal("the relay was never cut: the test failed for another reason")
	}
	var (
		failure, phase, stop string
		mbps                 float64
		version              string
		n                    uint64
	)
	deadline := time.Now().Add(30 * time.Second)
	for {
		row := col.Conn.QueryRow(context.Background(), `SELECT count(), any(failure), any(failure_phase), any(download_stop_reason),
			any(download_mbps), any(test_version) FROM speedtest FINAL`)
		if err := row.Scan(&n, &failure, &phase, &stop, &mbps, &version); err != nil {
			t.Fatal(err)
		}
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n != 1 {
		t.Fatalf("%d rows in ClickHouse, want the one failure record", n)
	}
	if (failure != schemas.FailureConnectionReset && failure != schemas.FailureEOF) || phase != "download" || stop != "failure" || mbps != 0 || version != schemas.SpeedtestVersion {
		t.Fatalf("row: failure %q phase %q stop %q download %g Mbit/s version %q; want connection_reset or eof, download, failure, 0, %s",
			failure, phase, stop, mbps, version, schemas.SpeedtestVersion)
	}
	rs, err := a.Results(context.Background(), 10)
	if err != nil || len(rs) != 1 {
		t.Fatalf("agent's store: %d results (%v), want the failure record", len(rs), err)
	}
}
