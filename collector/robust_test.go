package collector_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/neubot/neubot/collector"
	"github.com/neubot/neubot/collector/collectortest"
	metricsreg "github.com/neubot/neubot/internal/metrics"
	"github.com/neubot/neubot/internal/spool"
	"github.com/neubot/neubot/internal/webtest"
	"github.com/neubot/neubot/proto/ingest"
	"github.com/neubot/neubot/publish"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

// dialFrom opens a TCP connection to the server of url from a loopback
// address of its own (127.0.0.0/8 is all loopback on Linux), so that the
// collector sees distinct clients.
func dialFrom(t *testing.T, url, from string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// stall sends the headers of an ingest request announcing length bytes, then
// body (possibly empty), and nothing more.
func stall(t *testing.T, c net.Conn, length int, body string) {
	t.Helper()
	if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: %d\r\n\r\n%s", ingest.Path, length, body); err != nil {
		t.Fatal(err)
	}
}

func status(t *testing.T, c net.Conn, within time.Duration) (*http.Response, time.Duration) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(within))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer within %s: %v", within, err)
	}
	resp.Body.Close()
	return resp, time.Since(start)
}

// TestStalledBodies: 8 clients that send headers and stall (as many as
// there are ingest slots) do not keep a legitimate client from its 202;
// they get 408 once the read deadline passes, a client trickling bytes
// below the minimum rate gets 408 too, and a 3rd request from one address
// (2 are allowed at once) gets 429 with Retry-After at once.
func TestStalledBodies(t *testing.T) {
	c := collectortest.New(t, collector.Config{ReadTimeout: 1500 * time.Millisecond, MinBodyRate: 1000})
	var stalled []net.Conn
	for i := range 8 {
		conn := dialFrom(t, c.Server.URL, fmt.Sprintf("127.0.0.%d", 10+i))
		stall(t, conn, 1000, "")
		stalled = append(stalled, conn)
	}
	trickle := dialFrom(t, c.Server.URL, "127.0.0.30")
	stall(t, trickle, 100_000, "{")
	stopTrickle := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopTrickle:
				return
			case <-time.After(200 * time.Millisecond):
				if _, err := trickle.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	defer close(stopTrickle)
	time.Sleep(200 * time.Millisecond) // all of them in the handler

	rec := schemastest.Speedtest(rand.New(rand.NewPCG(1, 9)), time.Now().Add(-time.Hour), "151.5.10.20", 20)
	start := time.Now()
	code, resp := post(t, c.Server.URL, append(schemastest.Line(rec), '\n'))
	if code != http.StatusAccepted || resp.Accepted != 1 {
		t.Fatalf("legitimate client got %d %+v while 8 bodies stalled", code, resp)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("legitimate client waited %s", took)
	}
	t.Logf("legitimate client: 202 in %s with 8 stalled bodies", time.Since(start).Round(time.Millisecond))

	var same []net.Conn
	for range 3 {
		conn := dialFrom(t, c.Server.URL, "127.0.0.40")
		stall(t, conn, 1000, "")
		same = append(same, conn)
		time.Sleep(20 * time.Millisecond)
	}
	r, took := status(t, same[2], time.Second)
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("3rd stalled request of one address: %s, Retry-After %q; want 429 with Retry-After", r.Status, r.Header.Get("Retry-After"))
	}
	t.Logf("3rd request of one address: 429 in %s", took.Round(time.Millisecond))

	for i, conn := range stalled {
		r, took := status(t, conn, 5*time.Second)
		if r.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("stalled body %d: %s, want 408", i, r.Status)
		}
		if i == 0 {
			t.Logf("stalled body: 408 after %s more", took.Round(time.Millisecond))
		}
	}
	r, took = status(t, trickle, 10*time.Second)
	if r.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("trickling body: %s, want 408", r.Status)
	}
	t.Logf("trickling body (5 bytes/s, minimum 1000): 408 after %s more", took.Round(time.Millisecond))
	c.WaitLoaded(t, 30*time.Second)
	if n := len(rows(t, c)); n != 1 {
		t.Fatalf("%d rows, want the legitimate one", n)
	}
}

// TestPerAddressLimits: behind a proxy, one IPv6 host rotating addresses in
// its /64 shares one place count and one volume budget; another /64 is not
// affected.
func TestPerAddressLimits(t *testing.T) {
	c := collectortest.New(t, collector.Config{TrustProxy: true, AddressBurstBytes: 20_000, AddressBytesPerSecond: 100, MaxPerAddress: 2})
	rng := rand.New(rand.NewPCG(2, 9))
	var body []byte
	for len(body) < 15_000 {
		body = append(append(body, schemastest.Line(schemastest.Speedtest(rng, time.Now().Add(-time.Hour), "151.5.10.20", 20))...), '\n')
	}
	from := func(addr string) (int, http.Header) { return postFrom(t, c, addr, body) }
	if code, _ := from("2001:db8:1:2::1"); code != http.StatusAccepted {
		t.Fatalf("first body of a /64: %d", code)
	}
	// Admitted with budget left, the second body is charged whole: the
	// /64 is then overdrawn and waits.
	if code, _ := from("2001:db8:1:2::2"); code != http.StatusAccepted {
		t.Fatalf("second body of a /64, with budget left: %d", code)
	}
	code, h := from("2001:db8:1:2:ffff::7") // same /64, another address
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("third body of the same /64 over its volume: %d Retry-After %q, want 429", code, h.Get("Retry-After"))
	}
	if code, _ := from("2001:db8:1:3::1"); code != http.StatusAccepted {
		t.Fatalf("another /64: %d", code)
	}
}

// postFrom posts body to c's ingest as if from addr (c trusts the proxy
// header) and returns the status and headers of the answer.
func postFrom(t *testing.T, c *collectortest.Collector, addr string, body []byte) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.Server.URL+ingest.Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("X-Forwarded-For", addr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// TestPerAgentLimit: an agent_id past its burst gets 429 with Retry-After,
// from any address, and a body that names it is refused whole (another
// agent's record in it is not loaded either); another agent is not
// affected.
func TestPerAgentLimit(t *testing.T) {
	c := collectortest.New(t, collector.Config{TrustProxy: true, Limits: collector.Limits{AgentRate: 0.001, AgentBurst: 2}})
	rng := rand.New(rand.NewPCG(4, 2))
	rec := func(agent string) []byte {
		r := schemastest.Speedtest(rng, time.Now().Add(-time.Hour), "151.5.10.20", 20)
		r.AgentID = agent
		return append(schemastest.Line(r), '\n')
	}
	const a, b = "6f1d8c52-3b0e-4a57-9d0c-2a61f0e7a001", "6f1d8c52-3b0e-4a57-9d0c-2a61f0e7a002"
	for i, addr := range []string{"192.0.2.1", "192.0.2.2"} {
		if code, _ := postFrom(t, c, addr, rec(a)); code != http.StatusAccepted {
			t.Fatalf("body %d of agent a, within its burst: %d", i+1, code)
		}
	}
	code, h := postFrom(t, c, "192.0.2.3", append(rec(b), rec(a)...))
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("a body naming agent a past its burst: %d Retry-After %q, want 429", code, h.Get("Retry-After"))
	}
	if code, _ := postFrom(t, c, "192.0.2.3", rec(b)); code != http.StatusAccepted {
		t.Fatalf("agent b alone: %d", code)
	}
	c.WaitLoaded(t, 30*time.Second)
	if n := len(rows(t, c)); n != 3 {
		t.Fatalf("%d rows, want 3 (agent a's two, agent b's last)", n)
	}
}

// TestStartTimeWindowAndPartitions: one POST with 101 records in 101
// different months (accepted: the window is widened for the test) and
// others, with the loader bound to 10 partitions per insert: everything
// loads, in at least 11 inserts (the loader refuses to send a block over its
// bound, so a missing split would fail the load). With the default window a
// record 500 days old is refused at ingest.
func TestStartTimeWindowAndPartitions(t *testing.T) {
	c := collectortest.New(t, collector.Config{MaxPartitionsPerInsert: 10, MaxStartAge: 10 * 366 * 24 * time.Hour})
	rng := rand.New(rand.NewPCG(3, 9))
	now := time.Now().UTC()
	var body []byte
	for m := range 101 {
		start := time.Date(now.Year(), now.Month(), 1, 12, 0, 0, 0, time.UTC).AddDate(0, -m-1, 0)
		body = append(append(body, schemastest.Line(schemastest.Speedtest(rng, start, "151.5.10.20", 20))...), '\n')
	}
	for range 5 {
		body = append(append(body, schemastest.Line(schemastest.Speedtest(rng, now.Add(-time.Hour), "151.5.10.20", 20))...), '\n')
	}
	if code, resp := post(t, c.Server.URL, body); code != http.StatusAccepted || resp.Accepted != 106 {
		t.Fatalf("%d %+v", code, resp)
	}
	c.WaitLoaded(t, time.Minute)
	if n := len(rows(t, c)); n != 106 {
		t.Fatalf("%d rows loaded, want 106", n)
	}
	var parts uint64
	if err := c.Conn.QueryRow(context.Background(), "SELECT uniqExact(partition) FROM system.parts WHERE database = currentDatabase() AND table = 'speedtest' AND active").Scan(&parts); err != nil {
		t.Fatal(err)
	}
	if parts < 101 {
		t.Fatalf("%d partitions, want at least 101", parts)
	}
	if n := metric(t, c.Server.URL, "neubot_collector_inserts_total"); n < 11 {
		t.Fatalf("%v inserts for 101 months with 10 a block", n)
	}

	d := collectortest.Start(t)
	old := schemastest.Speedtest(rng, now.Add(-500*24*time.Hour), "151.5.10.20", 20)
	code, resp := post(t, d.Server.URL, append(schemastest.Line(old), '\n'))
	if code != http.StatusBadRequest || len(resp.Rejected) != 1 || resp.Rejected[0].Field != "start_time" {
		t.Fatalf("500 days old: %d %+v", code, resp)
	}
}

// metric reads a series of the collector's /metrics (metrics.Scrape): 0
// when absent.
func metric(t *testing.T, url, series string) float64 {
	t.Helper()
	v, _, err := metricsreg.Scrape(url, series)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestDeadLettersIntact: rows that ClickHouse refuses for good (here a
// column narrowed to FixedString(4), so that longer agent versions do not
// fit) go to deadletter.ndjson with the reason, each read back intact,
// while the other rows of the same segment load.
func TestDeadLettersIntact(t *testing.T) {
	dir := t.TempDir()
	c := collectortest.New(t, collector.Config{SpoolDir: dir})
	rng := rand.New(rand.NewPCG(4, 9))
	first := schemastest.Speedtest(rng, time.Now().Add(-time.Hour), "151.5.10.20", 20)
	first.Agent.Version = "0.1"
	post(t, c.Server.URL, schemastest.Line(first))
	c.WaitLoaded(t, 30*time.Second) // the tables exist now
	if err := c.Conn.Exec(context.Background(), "ALTER TABLE speedtest MODIFY COLUMN agent_version FixedString(4)"); err != nil {
		t.Fatal(err)
	}
	var body []byte
	bad := map[string][]byte{}
	for i := range 6 {
		rec := schemastest.Speedtest(rng, time.Now().Add(-time.Hour), "151.5.10.20", 20)
		rec.Agent.Version = "0.2"
		if i%2 == 1 {
			rec.Agent.Version = fmt.Sprintf("1.%d.0-long-%d", i, i)
		}
		line := schemastest.Line(rec)
		if i%2 == 1 {
			bad[rec.MeasurementUID] = line
		}
		body = append(append(body, line...), '\n')
	}
	if code, resp := post(t, c.Server.URL, body); code != http.StatusAccepted {
		t.Fatalf("%d %+v", code, resp)
	}
	c.WaitLoaded(t, 30*time.Second)
	if n := len(rows(t, c)); n != 4 {
		t.Fatalf("%d rows loaded, want 4 (1 + the 3 that fit)", n)
	}
	f, err := os.ReadFile(filepath.Join(dir, "deadletter.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(f)), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d dead letters, want 3:\n%s", len(lines), f)
	}
	for _, l := range lines {
		var d collector.DeadLetter
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatal(err)
		}
		var env schemas.Envelope
		if err := json.Unmarshal(d.Record, &env); err != nil {
			t.Fatal(err)
		}
		want, ok := bad[env.MeasurementUID]
		if !ok || !bytes.Equal(d.Record, bytes.TrimSpace(want)) {
			t.Fatalf("dead letter is not the record sent:\n got %s\nwant %s", d.Record, want)
		}
		delete(bad, env.MeasurementUID)
		if !strings.Contains(d.Reason, "FixedString(4)") {
			t.Fatalf("reason %q", d.Reason)
		}
	}
	if len(bad) != 0 {
		t.Fatalf("dead letters missing: %v", bad)
	}
}

// TestTransientReadError: the segment cannot be opened for a while (EMFILE,
// a full file table): the loader retries, quarantines nothing, and loads
// everything once it can. A failed directory sync after a segment was
// created does not stall ingest either.
func TestTransientReadError(t *testing.T) {
	var failReads, failSyncs atomic.Int32
	failReads.Store(3)
	dir := t.TempDir()
	c := collectortest.New(t, collector.Config{SpoolDir: dir, Spool: spool.Options{
		OpenRead: func(name string) (*os.File, error) {
			if failReads.Add(-1) >= 0 {
				return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EMFILE}
			}
			return os.Open(name)
		},
		SyncDir: func(d string) error {
			if failSyncs.Add(-1) >= 0 {
				return &os.PathError{Op: "fsync", Path: d, Err: syscall.EIO}
			}
			return nil
		},
	}})
	rng := rand.New(rand.NewPCG(5, 9))
	sent := 0
	postOK := func() {
		rec := schemastest.Speedtest(rng, time.Now().Add(-time.Hour), "151.5.10.20", 20)
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, _ := post(t, c.Server.URL, append(schemastest.Line(rec), '\n'))
			if code == http.StatusAccepted {
				sent++
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("ingest stalled: %d", code)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	postOK()
	failSyncs.Store(2) // the next two segments' directory syncs fail
	for range 5 {
		postOK()
		time.Sleep(60 * time.Millisecond) // past the segment age: new segments
	}
	c.WaitLoaded(t, 30*time.Second)
	if n := len(rows(t, c)); n != sent {
		t.Fatalf("%d rows, want %d", n, sent)
	}
	if q, _ := os.ReadDir(filepath.Join(dir, "quarantine")); len(q) != 0 {
		t.Fatalf("quarantined: %v", q)
	}
	if n := metric(t, c.Server.URL, `neubot_collector_load_events_total{event="read_retry"}`); n < 3 {
		t.Fatalf("%v read retries counted, want 3", n)
	}
}

// TestLateCopyChangesNothing: the server's copy arrived on time; the
// agent's copy of the same measurement (also authoritative: the agent keeps
// the server's record) arrives three days later. The stored row and the
// API's answer stay the same.
func TestLateCopyChangesNothing(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(6, 9))
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -4)
	rec := schemastest.Speedtest(rng, day.Add(10*time.Hour), "151.5.10.20", 20)
	rec.Synthetic = false
	// Signed by the enrolled test server: only verified rows are published.
	line := bytes.TrimRight(schemastest.Signed(rec), "\n")
	onTime := day.Add(11 * time.Hour)
	// The server's copy, received on time: written to the spool as the
	// collector of that day did, and loaded by this one on start.
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Append(context.Background(), []spool.Entry{{Received: onTime, Peer: "151.5.10.20", Record: line}}); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	c := collectortest.New(t, collector.Config{SpoolDir: dir})
	c.WaitLoaded(t, 30*time.Second)

	api := httptest.NewServer(publish.New(publish.Config{Conn: c.Conn, IPDB: collectortest.IPDB(t)}).Handler())
	defer api.Close()
	answer := func() string {
		return string(webtest.GetOK(t, api.URL+"/api/v1/measurements?test=speedtest&from="+day.Format("2006-01-02")+"&to="+day.Format("2006-01-02")))
	}
	stored := func() string {
		var ing time.Time
		var dl float64
		var n uint64
		if err := c.Conn.QueryRow(context.Background(), "SELECT any(ingested_at), any(download_mbps), count() FROM speedtest FINAL").Scan(&ing, &dl, &n); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(ing.UTC(), dl, n)
	}
	before, beforeRow := answer(), stored()
	if !strings.Contains(before, rec.MeasurementUID) {
		t.Fatalf("the on-time copy is not in the API's answer: %s", before)
	}
	late := *rec
	keys := *rec.TestKeys.(*schemas.Speedtest)
	keys.Download.GoodputMbps += 1 // the agent's own figure differs
	late.TestKeys = &keys
	if code, resp := post(t, c.Server.URL, append(schemastest.Line(&late), '\n')); code != http.StatusAccepted {
		t.Fatalf("late copy: %d %+v", code, resp)
	}
	c.WaitLoaded(t, 30*time.Second)
	if after := stored(); after != beforeRow {
		t.Fatalf("stored row changed: %s -> %s", beforeRow, after)
	}
	var total uint64
	if err := c.Conn.QueryRow(context.Background(), "SELECT count() FROM speedtest").Scan(&total); err != nil {
		t.Fatal(err)
	}
	if total != 1 {
		t.Fatalf("%d rows without FINAL: analytics would count the late copy", total)
	}
	if after := answer(); after != before {
		t.Fatalf("API answer changed:\n%s\n%s", before, after)
	}
}

// TestFormulaRefused: free-text names are restricted to a safe alphabet at
// validation: a formula in agent.software or server.id is refused with
// its field.
func TestFormulaRefused(t *testing.T) {
	c := collectortest.Start(t)
	rng := rand.New(rand.NewPCG(7, 9))
	a := schemastest.Speedtest(rng, time.Now().Add(-time.Hour), "151.5.10.20", 20)
	a.Agent.Software = `=HYPERLINK("http://x")`
	b := schemastest.Speedtest(rng, time.Now().Add(-time.Hour), "151.5.10.20", 20)
	b.Server.ID = "@SUM(1+1)"
	ok := schemastest.Speedtest(rng, time.Now().Add(-time.Hour), "151.5.10.20", 20)
	ok.Agent.Version = "1.2.3-rc1+build (linux/amd64)"
	body := append(append(append(schemastest.Line(a), '\n'), schemastest.Line(b)...), '\n')
	body = append(append(body, schemastest.Line(ok)...), '\n')
	code, resp := post(t, c.Server.URL, body)
	if code != http.StatusBadRequest || resp.Accepted != 1 || len(resp.Rejected) != 2 ||
		resp.Rejected[0].Field != "agent.software" || resp.Rejected[1].Field != "server.id" {
		t.Fatalf("%d %+v", code, resp)
	}
}

// TestQuarantineBacksOff: a segment damaged on disk goes to quarantine/;
// while moving it there fails (a sick disk), the loader retries with
// exponential backoff instead of spinning: the k-th retry comes at least
// 100 ms × 2^(k-1) after the attempt before it (timers never fire early, so
// load only makes the gaps longer). Once the rename works, the segment is in
// quarantine/, whole: nothing was deleted.
func TestQuarantineBacksOff(t *testing.T) {
	dir := t.TempDir()
	damaged := filepath.Join(t.TempDir(), "damaged.wal")
	const failures = 4
	var mu sync.Mutex
	var attempts []time.Time
	c := collectortest.New(t, collector.Config{SpoolDir: dir, Spool: spool.Options{
		// The segment as bit rot leaves it: its last byte, inside the
		// acknowledged bytes, flipped; the real file stays as it is.
		OpenRead: func(name string) (*os.File, error) {
			b, err := os.ReadFile(name)
			if err != nil {
				return nil, err
			}
			b[len(b)-1] ^= 0xff
			if err := os.WriteFile(damaged, b, 0o600); err != nil {
				return nil, err
			}
			return os.Open(damaged)
		},
		Rename: func(oldpath, newpath string) error {
			mu.Lock()
			attempts = append(attempts, time.Now())
			n := len(attempts)
			mu.Unlock()
			if n <= failures {
				return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: syscall.EIO}
			}
			return os.Rename(oldpath, newpath)
		},
	}})
	rng := rand.New(rand.NewPCG(8, 9))
	line := schemastest.Line(schemastest.Speedtest(rng, time.Now().Add(-time.Hour), "151.5.10.20", 20))
	if code, resp := post(t, c.Server.URL, line); code != http.StatusAccepted {
		t.Fatalf("POST: %d %+v", code, resp)
	}
	c.WaitLoaded(t, 30*time.Second) // quarantined: out of the spool's queue
	mu.Lock()
	got := append([]time.Time(nil), attempts...)
	mu.Unlock()
	if len(got) != failures+1 {
		t.Fatalf("%d rename attempts, want %d", len(got), failures+1)
	}
	for k := 1; k < len(got); k++ {
		gap, want := got[k].Sub(got[k-1]), 100*time.Millisecond<<(k-1)
		t.Logf("retry %d after %s", k, gap.Round(time.Millisecond))
		if gap < want {
			t.Errorf("retry %d came %s after the attempt before it, want at least %s (no backoff)", k, gap, want)
		}
	}
	q, err := os.ReadDir(filepath.Join(dir, "quarantine"))
	if err != nil || len(q) != 1 || !strings.HasSuffix(q[0].Name(), ".wal") {
		t.Fatalf("quarantine/ holds %v (%v), want the one segment", q, err)
	}
	kept, err := os.ReadFile(filepath.Join(dir, "quarantine", q[0].Name()))
	if err != nil || !bytes.Contains(kept, bytes.TrimSpace(line)) {
		t.Fatalf("the quarantined segment does not hold the record (%v)", err)
	}
	if n := metric(t, c.Server.URL, `neubot_collector_load_events_total{event="quarantine_retry"}`); n != failures {
		t.Errorf("%v quarantine retries counted, want %d", n, failures)
	}
	if n := metric(t, c.Server.URL, `neubot_collector_segments_quarantined_total`); n != 1 {
		t.Errorf("%v segments quarantined, want 1", n)
	}
}
