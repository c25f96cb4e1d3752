package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/internal/localch"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/internal/metrics"
	"github.com/neubot/neubot/proto/ingest"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

// The commands the tests run as processes, each built once per test
// binary into one temporary directory that TestMain removes.
var builds struct {
	mu   sync.Mutex
	dir  string
	done map[string]error // by package
}

// TestMain runs the package's tests. The two that spend most of their
// time waiting on servers, namespaces and schedules rather than computing
// (TestCluster and TestPeersAcrossHosts: measured idle 51 and 70 of their
// CPU-seconds) are parallel: after the serial ones they run beside each
// other. (Three would be released in no set order, and TestCluster, the
// longest, could then start last.)
func TestMain(m *testing.M) {
	code := localchtest.MainNoLeaks(m)
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	os.Exit(code)
}

// build compiles the command in pkg (relative to this one) as name, once
// per test binary, and returns the path of the executable.
func build(t *testing.T, pkg, name string) string {
	t.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.done == nil {
		builds.done = map[string]error{}
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "neubot-server-bin-")
		if err != nil {
			t.Fatal(err)
		}
		builds.dir = dir
	}
	bin := filepath.Join(builds.dir, name)
	err, ok := builds.done[pkg]
	if !ok {
		if out, berr := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); berr != nil {
			err = fmt.Errorf("go build %s: %v\n%s", pkg, berr, out)
		}
		builds.done[pkg] = err
	}
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// buildServer builds this command (neubot-server).
func buildServer(t *testing.T) string { return build(t, ".", "neubot-server") }

// buildAgent builds the volunteers' command (neubot).
func buildAgent(t *testing.T) string { return build(t, "../neubot", "neubot") }

// collectorProc is a collector running as a separate process, so that it
// can be killed with SIGKILL like a crash would.
type collectorProc struct {
	t      *testing.T
	bin    string
	args   []string
	logs   *os.File
	cmd    *exec.Cmd
	exited chan struct{}
}

func (p *collectorProc) start() {
	p.t.Helper()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(p.exited) }()
}

func (p *collectorProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// metric reads a series of the collector's /metrics (metrics.Scrape); -1
// when the collector does not answer or has none.
func metric(url, series string) float64 {
	v, found, err := metrics.Scrape(url, series)
	if err != nil || !found {
		return -1
	}
	return v
}

// TestZeroLoss: concurrent clients submit 100,000 records while the
// collector is killed with SIGKILL several times and ClickHouse is stopped
// for a while, then hangs (SIGSTOP) for a while. Half of the bodies come
// from an enrolled test server, signed. Afterwards the measurement_uids in
// ClickHouse (FINAL) are exactly those acknowledged with 202: nothing lost,
// nothing duplicated.
func TestZeroLoss(t *testing.T) {
	const (
		records  = 100_000
		perBody  = 250
		clients  = 8
		kills    = 4
		chOutage = 3 * time.Second
	)
	dir := t.TempDir()
	bin := buildServer(t)

	ctx := context.Background()
	chPort, err := localch.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ch, err := localch.Start(ctx, localch.Config{Dir: filepath.Join(dir, "clickhouse"), TCPPort: chPort, Database: "zeroloss"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ch.Stop() }()

	port, _ := localch.FreePort()
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	logs, err := os.Create(filepath.Join(dir, "collector.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	enrolled := filepath.Join(dir, "enrolled.txt")
	if _, err := identity.Enroll(enrolled, schemastest.ServerKey.Public(), schemastest.ServerID); err != nil {
		t.Fatal(err)
	}
	proc := &collectorProc{t: t, bin: bin, logs: logs, args: []string{"collector",
		"--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--spool-dir", filepath.Join(dir, "spool"),
		"--clickhouse", ch.Addr(), "--database", "zeroloss",
		"--batch-max-age", "200ms", "--batch-max-records", "20000",
		// All clients post from one address, as fast as they can.
		"--max-per-address", strconv.Itoa(clients), "--address-bytes-per-second", "1000000000000",
		// Half of the bodies come from an enrolled test server (signed
		// records, signed requests); the other half, as from agents,
		// from one address: no per-address limit for them here.
		"--enrolled", enrolled, "--ingest-rate", "0", "--agent-rate", "0",
	}}
	proc.start()
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("collector log (tail):\n%s", b)
		}
		proc.kill()
	}()

	// The bodies: 400 of 250 records each, all distinct.
	rng := rand.New(rand.NewPCG(2026, 11))
	bodies := make(chan [][]byte, records/perBody)
	uids := map[string]bool{}
	start := time.Now().Add(-48 * time.Hour)
	for i := 0; i < records/perBody; i++ {
		var body bytes.Buffer
		var recs []*schemas.Record
		for j := 0; j < perBody; j++ {
			rec := schemastest.Speedtest(rng, start.Add(time.Duration(i*perBody+j)*time.Second), "151.5.10.20", 7)
			uids[rec.MeasurementUID] = true
			body.Write(schemastest.Line(rec))
			recs = append(recs, rec)
		}
		if i%2 == 1 {
			bodies <- [][]byte{schemastest.Signed(recs...), nil} // the second element marks a server's body
			continue
		}
		bodies <- [][]byte{body.Bytes()}
	}
	close(bodies)
	if len(uids) != records {
		t.Fatalf("generated %d distinct uids, want %d", len(uids), records)
	}

	// Clients retry each body until it is acknowledged, as agents do.
	var (
		acked     atomic.Int64
		retries   atomic.Int64
		wg        sync.WaitGroup
		clientErr atomic.Value
	)
	client := &http.Client{Timeout: 30 * time.Second}
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range bodies {
				deadline := time.Now().Add(3 * time.Minute)
				for {
					req, _ := http.NewRequest(http.MethodPost, url+ingest.Path, bytes.NewReader(b[0]))
					req.Header.Set("Content-Type", "application/x-ndjson")
					if len(b) == 2 {
						schemastest.ServerKey.SignRequest(req, nil, time.Now())
					}
					resp, err := client.Do(req)
					if err == nil {
						io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
						resp.Body.Close()
						if resp.StatusCode == http.StatusAccepted {
							acked.Add(perBody)
							break
						}
						if resp.StatusCode != http.StatusServiceUnavailable {
							clientErr.Store(fmt.Errorf("status %d", resp.StatusCode))
							return
						}
					}
					if time.Now().After(deadline) {
						clientErr.Store(fmt.Errorf("body never acknowledged: %v", err))
						return
					}
					retries.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}

	// Chaos while they run: SIGKILL the collector and restart it, stop
	// ClickHouse for a while in the middle, then make it hang.
	clientsDone := make(chan struct{})
	go func() { wg.Wait(); close(clientsDone) }()
	var chStopped atomic.Bool
	chDone := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		ch.Stop()
		chStopped.Store(true)
		t.Logf("clickhouse stopped for %s, %d records acknowledged so far", chOutage, acked.Load())
		time.Sleep(chOutage)
		var err error
		ch, err = ch.Restart(ctx)
		t.Logf("clickhouse started again")
		if err != nil {
			chDone <- err
			return
		}
		// Then it hangs: the process stopped (SIGSTOP), its connections
		// open and unanswered, while the loader inserts.
		time.Sleep(time.Second)
		if err := ch.Signal(syscall.SIGSTOP); err != nil {
			chDone <- err
			return
		}
		t.Logf("clickhouse hung (SIGSTOP) for %s, %d records acknowledged so far", chOutage, acked.Load())
		time.Sleep(chOutage)
		err = ch.Signal(syscall.SIGCONT)
		t.Logf("clickhouse resumed (SIGCONT)")
		chDone <- err
	}()
	killed := 0
chaos:
	for killed < kills {
		select {
		case <-clientsDone:
			break chaos
		case <-time.After(time.Duration(300+rand.IntN(300)) * time.Millisecond):
		}
		proc.kill()
		killed++
		t.Logf("collector killed (%d), %d records acknowledged so far", killed, acked.Load())
		time.Sleep(100 * time.Millisecond)
		proc.start()
	}
	if err := <-chDone; err != nil {
		t.Fatal(err)
	}
	<-clientsDone
	if err, _ := clientErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	if killed < kills || !chStopped.Load() {
		t.Fatalf("the clients finished before the chaos was done (killed %d times, ClickHouse stopped: %v): make the run longer", killed, chStopped.Load())
	}
	t.Logf("%d records acknowledged, %d retries, collector killed %d times", acked.Load(), retries.Load(), killed)

	waitDrained(t, map[string]string{"": url})

	conn := localchtest.Open(t, chdb.Options{Addr: ch.Addr(), Database: "zeroloss"})
	var verified uint64
	if err := conn.QueryRow(ctx, "SELECT sum(verified) FROM speedtest FINAL").Scan(&verified); err != nil || verified != uint64(records/perBody/2*perBody) {
		t.Errorf("verified rows: %d (%v), want the %d records of the server's signed bodies", verified, err, records/perBody/2*perBody)
	}
	stored := map[string]int{}
	for _, u := range localchtest.Strings(t, conn, "SELECT toString(measurement_uid) FROM speedtest FINAL") {
		stored[u]++
	}
	var raw uint64
	_ = conn.QueryRow(ctx, "SELECT count() FROM speedtest").Scan(&raw)
	lost, dup := 0, 0
	for u := range uids {
		if stored[u] == 0 {
			lost++
		}
	}
	for u, n := range stored {
		if n > 1 {
			dup++
		}
		if !uids[u] {
			t.Errorf("stored a uid that was never sent: %s", u)
		}
	}
	t.Logf("acknowledged %d, stored (FINAL) %d, raw rows before merge %d, lost %d, duplicated %d",
		acked.Load(), len(stored), raw, lost, dup)
	if int(acked.Load()) != records || len(stored) != records || lost != 0 || dup != 0 {
		t.Fatalf("acknowledged %d, stored %d distinct, lost %d, duplicated %d; want %d, %d, 0, 0",
			acked.Load(), len(stored), lost, dup, records, records)
	}
}
