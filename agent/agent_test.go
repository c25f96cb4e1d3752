package agent_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neubot/neubot/agent"
	"github.com/neubot/neubot/agent/bittorrent"
	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/speedtest"
	"github.com/neubot/neubot/agent/speedtest/speedtesttest"
	"github.com/neubot/neubot/collector"
	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/internal/looptest"
	"github.com/neubot/neubot/internal/version"
	"github.com/neubot/neubot/internal/webtest"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver/service"
	"github.com/neubot/neubot/testserver/service/servicetest"
)

func TestMain(m *testing.M) { os.Exit(localchtest.MainNoLeaks(m)) }

// testServer starts a real test server in-process on loopback.
func testServer(t *testing.T) string {
	t.Helper()
	_, url := servicetest.Start(t, service.Config{ID: "ts-agent-test"})
	return url
}

func newAgent(t *testing.T, dir, collectorURL, serverURL string) *agent.Agent {
	t.Helper()
	return newAgentWith(t, dir, collectorURL, serverURL, nil)
}

// newAgentWith is newAgent with its options changed by set (nil: none),
// e.g. to hear the agent's events.
func newAgentWith(t *testing.T, dir, collectorURL, serverURL string, set func(*agent.Options)) *agent.Agent {
	t.Helper()
	opts := agent.Options{
		StateDir: dir, CollectorURL: collectorURL, ServerURL: serverURL,
		Tests: map[string]plugin.Measurer{schemas.SpeedtestName: speedtest.NewMeasurer(speedtesttest.Quick)},
	}
	if set != nil {
		set(&opts)
	}
	a, err := agent.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// newScheduled is newAgent whose Run tells the test each time it draws
// the next test's time (agent.Options.OnSchedule); nextScheduled waits
// for the first of them.
func newScheduled(t *testing.T, serverURL string) (*agent.Agent, chan time.Time) {
	t.Helper()
	drawn := make(chan time.Time, 16)
	a := newAgentWith(t, t.TempDir(), "", serverURL, func(o *agent.Options) {
		o.OnSchedule = func(next time.Time) {
			select {
			case drawn <- next:
			default: // the test reads only the first ones
			}
		}
	})
	return a, drawn
}

// runScheduled starts a's Run until the test ends and returns the first
// time it drew for the next test (zero: none is due), failing the test
// after a minute.
func runScheduled(t *testing.T, a *agent.Agent, drawn chan time.Time) time.Time {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go a.Run(ctx)
	select {
	case next := <-drawn:
		return next
	case <-time.After(time.Minute):
		t.Fatal("Run drew no next test time in a minute")
		return time.Time{}
	}
}

// uploads counts the upload spool's delivery attempts by event
// (agent.Options.OnUpload), so that a test waits for the attempt it
// needs instead of sleeping.
type uploads struct {
	mu     sync.Mutex
	n      map[string]int
	signal chan struct{}
}

func newUploads() *uploads {
	return &uploads{n: map[string]int{}, signal: make(chan struct{}, 1)}
}

// listen sets the agent's options so that u hears its upload spool.
func (u *uploads) listen(o *agent.Options) { o.OnUpload = u.hear }

func (u *uploads) hear(event string, _ int) {
	u.mu.Lock()
	u.n[event]++
	u.mu.Unlock()
	select {
	case u.signal <- struct{}{}:
	default:
	}
}

func (u *uploads) count(event string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n[event]
}

// wait returns once event happened at least n times in all, or fails
// the test after a minute.
func (u *uploads) wait(t *testing.T, event string, n int) {
	t.Helper()
	timeout := time.After(time.Minute)
	for u.count(event) < n {
		select {
		case <-u.signal:
		case <-timeout:
			t.Fatalf("upload spool: %d %q events in a minute, want %d", u.count(event), event, n)
		}
	}
}

func runTest(t *testing.T, a *agent.Agent) {
	t.Helper()
	done := make(chan error, 1)
	if err := a.StartTest(context.Background(), done); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSecurity: DNS rebinding and CSRF protections of the local API.
func TestSecurity(t *testing.T) {
	a := newAgent(t, t.TempDir(), "", testServer(t))
	defer a.Close()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	do := func(method, path, host, origin, token, body string) int {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if token != "" {
			req.Header.Set(agent.CSRFHeader, token)
		}
		req.Header.Set("Content-Type", "application/json")
		code, _ := webtest.Do(t, req)
		return code
	}
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	self := "http://127.0.0.1:" + strings.TrimPrefix(srv.URL, "http://127.0.0.1:")
	consent := `{"informed":true,"can_collect":true,"can_publish":true}`
	for _, tc := range []struct {
		name                              string
		method, path, host, origin, token string
		body                              string
		want                              int
	}{
		{"rebinding GET", "GET", "/api/v1/status", "evil.example", "", "", "", 421},
		{"rebinding with port", "GET", "/", "evil.example:" + itoa(port), "", "", "", 421},
		{"rebinding POST with token", "POST", "/api/v1/consent", "evil.example", "", a.CSRFToken(), consent, 421},
		{"localhost name", "GET", "/api/v1/status", "localhost:" + itoa(port), "", "", "", 200},
		{"ipv6 loopback name", "GET", "/api/v1/status", "[::1]:" + itoa(port), "", "", "", 200},
		{"cross-origin POST without token", "POST", "/api/v1/consent", "", "http://evil.example", "", consent, 403},
		{"same-origin POST without token", "POST", "/api/v1/run", "", "", "", "", 403},
		{"wrong token", "PUT", "/api/v1/config", "", "", "0000", `{"paused":true}`, 403},
		{"cross-origin POST with token", "POST", "/api/v1/consent", "", "http://evil.example", a.CSRFToken(), consent, 403},
		{"run before consent", "POST", "/api/v1/run", "", self, a.CSRFToken(), "", 403},
		{"consent", "POST", "/api/v1/consent", "", self, a.CSRFToken(), consent, 200},
		{"bad config", "PUT", "/api/v1/config", "", "", a.CSRFToken(), `{"mean_interval_minutes":5}`, 400},
		{"unknown config field", "PUT", "/api/v1/config", "", "", a.CSRFToken(), `{"colour":1}`, 400},
		{"oversized body", "PUT", "/api/v1/config", "", "", a.CSRFToken(), `{"cron":"` + strings.Repeat("x", 20000) + `"}`, 413},
		{"pause", "PUT", "/api/v1/config", "", "", a.CSRFToken(), `{"paused":true}`, 200},
		{"bad limit", "GET", "/api/v1/results?limit=0", "", "", "", "", 400},
	} {
		if got := do(tc.method, tc.path, tc.host, tc.origin, tc.token, tc.body); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if !a.Config().Paused {
		t.Fatal("pause did not apply")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestSchedulerDistribution: intervals are 15 minutes plus an exponential
// of mean (configured - 15 min): a Kolmogorov-Smirnov test over many
// seeded draws, the mean, and the floor.
func TestSchedulerDistribution(t *testing.T) {
	const n = 20000
	mean := 2 * time.Hour
	rng := rand.New(rand.NewPCG(42, 2011))
	xs := make([]float64, n)
	var sum float64
	for i := range xs {
		d := agent.NextInterval(rng, mean)
		if d < agent.MinInterval {
			t.Fatalf("interval %s under 15 minutes", d)
		}
		xs[i] = (d - agent.MinInterval).Minutes()
		sum += d.Minutes()
	}
	if got := sum / n; math.Abs(got-120)/120 > 0.02 {
		t.Fatalf("mean interval %.1f min, want 120 within 2%%", got)
	}
	sort.Float64s(xs)
	scale := (mean - agent.MinInterval).Minutes()
	var d float64
	for i, x := range xs {
		cdf := 1 - math.Exp(-x/scale)
		d = math.Max(d, math.Max(math.Abs(float64(i+1)/n-cdf), math.Abs(cdf-float64(i)/n)))
	}
	// Critical value of the one-sample KS test at alpha = 0.01.
	if crit := 1.628 / math.Sqrt(n); d > crit {
		t.Fatalf("KS statistic %.4f > %.4f: not the configured distribution", d, crit)
	}
	t.Logf("KS statistic %.4f (critical %.4f at 1%%), mean %.1f min", d, 1.628/math.Sqrt(n), sum/n)
	// A mean at the floor gives exactly the floor.
	if d := agent.NextInterval(rng, 10*time.Minute); d != agent.MinInterval {
		t.Fatalf("mean under the floor gave %s", d)
	}
}

// TestCronNeverUnderFloor: a cron spec firing every minute is still held
// to 15 minutes after the last test.
func TestCronNeverUnderFloor(t *testing.T) {
	a, drawn := newScheduled(t, testServer(t))
	defer a.Close()
	if err := a.SetConsent(true, true, true); err != nil {
		t.Fatal(err)
	}
	c := a.Config()
	c.Cron = "* * * * *"
	if err := a.SetConfig(c); err != nil {
		t.Fatal(err)
	}
	runTest(t, a)
	next := runScheduled(t, a, drawn)
	if next.IsZero() || time.Until(next) < 14*time.Minute {
		t.Fatalf("next test drawn at %v: less than 15 minutes after the last", next)
	}
	st := a.Status(context.Background())
	if st.NextTest == nil || time.Until(*st.NextTest) < 14*time.Minute {
		t.Fatalf("status says the next test is at %v: less than 15 minutes after the last", st.NextTest)
	}
}

// TestDataCap: once this month's tests used the cap, no test runs, by
// schedule or on demand, and the status says so.
func TestDataCap(t *testing.T) {
	a, drawn := newScheduled(t, testServer(t))
	defer a.Close()
	a.SetConsent(true, true, true)
	c := a.Config()
	c.MonthlyCapMB = 1 // one loopback test moves far more
	a.SetConfig(c)
	runTest(t, a)
	if err := a.StartTest(context.Background(), nil); !errors.Is(err, agent.ErrCapReached) {
		t.Fatalf("second test: %v, want ErrCapReached", err)
	}
	if next := runScheduled(t, a, drawn); !next.IsZero() {
		t.Fatalf("Run scheduled a test at %v with the cap reached", next)
	}
	st := a.Status(context.Background())
	if !st.DataUsed.CapReached || st.NextTest != nil {
		t.Fatalf("status %+v: want cap_reached and no next test", st.DataUsed)
	}
}

// switchable serves a handler on a fixed loopback address that can be
// taken down (connections refused) and brought back.
type switchable struct {
	addr string
	h    http.Handler
	mu   sync.Mutex
	srv  *http.Server
}

func (s *switchable) up(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.srv = &http.Server{Handler: s.h}
	go s.srv.Serve(l)
	s.mu.Unlock()
}

// downCollector starts a real collector behind a switchable address, down
// until the test brings it up, and taken down when the test ends.
func downCollector(t *testing.T) (*collectortest.Collector, *switchable) {
	t.Helper()
	col := collectortest.Start(t)
	sw := &switchable{addr: looptest.ClosedAddr(t).String(), h: col.Handler()}
	t.Cleanup(sw.down)
	return col, sw
}

func (s *switchable) down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
}

// TestOffline: the collector is down while the agent runs 3 tests; when it
// comes back all 3 reach ClickHouse exactly once. Then the agent is
// restarted with a pending spool, and again nothing is lost.
func TestOffline(t *testing.T) {
	col, sw := downCollector(t)
	addr := sw.addr
	server := testServer(t)
	dir := t.TempDir()

	count := func() (rows, distinct uint64) {
		col.Conn.QueryRow(context.Background(), "SELECT count(), uniqExact(measurement_uid) FROM speedtest FINAL").Scan(&rows, &distinct)
		return
	}
	waitRows := func(want uint64) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			if rows, distinct := count(); rows == want && distinct == want {
				return
			}
			if time.Now().After(deadline) {
				rows, distinct := count()
				t.Fatalf("%d rows (%d distinct) in ClickHouse, want %d", rows, distinct, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	up := newUploads()
	a := newAgentWith(t, dir, "http://"+addr, server, up.listen)
	a.SetConsent(true, true, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	for i := 0; i < 3; i++ {
		runTest(t, a)
	}
	up.wait(t, "retry", 2) // the uploader tries, fails, tries again and fails
	if n := up.count("forwarded"); n != 0 {
		t.Fatalf("%d deliveries while the collector was down", n)
	}
	if st := a.Status(context.Background()); st.PendingUploads != 3 {
		t.Fatalf("%d uploads pending while the collector is down, want 3", st.PendingUploads)
	}
	if rows, _ := count(); rows != 0 {
		t.Fatalf("%d rows while the collector was down", rows)
	}
	sw.up(t)
	waitRows(3)

	// Two more tests with the collector down, then a restart of the agent.
	sw.down()
	for i := 0; i < 2; i++ {
		runTest(t, a)
	}
	cancel()
	<-done
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	sw.up(t)
	a2 := newAgent(t, dir, "http://"+addr, server)
	if st := a2.Status(context.Background()); st.PendingUploads != 2 {
		t.Fatalf("after restart: %d uploads pending, want 2", st.PendingUploads)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan struct{})
	go func() { a2.Run(ctx2); close(done2) }()
	waitRows(5)
	rs, err := a2.Results(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if !r.Uploaded {
			t.Errorf("result %s not marked uploaded", r.MeasurementUID)
		}
	}
	cancel2()
	<-done2
	a2.Close()
}

// TestRevokeStopsUploads: once the volunteer revokes consent, nothing more
// is uploaded, even though the collector is reachable; results wait
// locally, and go out only if consent is given again.
func TestRevokeStopsUploads(t *testing.T) {
	col, sw := downCollector(t)
	addr := sw.addr
	up := newUploads()
	a := newAgentWith(t, t.TempDir(), "http://"+addr, testServer(t), up.listen)
	defer a.Close()
	a.SetConsent(true, true, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	runTest(t, a) // the collector is down: the result waits
	if err := a.SetConsent(true, false, false); err != nil {
		t.Fatal(err)
	}
	sw.up(t)
	// The spool withholds the result twice with the collector up: the
	// second decision was taken after the first was heard, so after up.
	up.wait(t, "withheld", up.count("withheld")+2)
	var n uint64
	col.Conn.QueryRow(context.Background(), "SELECT count() FROM speedtest").Scan(&n)
	if st := a.Status(context.Background()); n != 0 || up.count("forwarded") != 0 || st.PendingUploads != 1 {
		t.Fatalf("after revoking: %d rows uploaded (%d deliveries), %d pending; want 0 and 1", n, up.count("forwarded"), st.PendingUploads)
	}
	if err := a.StartTest(context.Background(), nil); !errors.Is(err, agent.ErrNoConsent) {
		t.Fatalf("test after revoking: %v, want ErrNoConsent", err)
	}
	a.SetConsent(true, true, true)
	deadline := time.Now().Add(30 * time.Second)
	for n == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		col.Conn.QueryRow(context.Background(), "SELECT count() FROM speedtest").Scan(&n)
	}
	if n != 1 {
		t.Fatalf("after consenting again: %d rows, want 1", n)
	}
}

// TestRevokeStopsRunningTest: revoking consent also stops a test in progress.
func TestRevokeStopsRunningTest(t *testing.T) {
	a, err := agent.New(agent.Options{StateDir: t.TempDir(), ServerURL: testServer(t),
		Tests: map[string]plugin.Measurer{schemas.SpeedtestName: speedtest.NewMeasurer(speedtest.Config{})}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.SetConsent(true, true, true)
	done := make(chan error, 1)
	start := time.Now()
	if err := a.StartTest(context.Background(), done); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond) // into the download
	a.SetConsent(true, false, false)
	err = <-done
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("test ended after %s with %v; want it stopped at once with an error", time.Since(start), err)
	}
	if rs, _ := a.Results(context.Background(), 10); len(rs) != 0 {
		t.Fatalf("%d results stored from a stopped test", len(rs))
	}
}

// TestTakesTurns: an agent with several tests runs them in turn, the
// speedtest first, and keeps each result with its test's name and data.
func TestTakesTurns(t *testing.T) {
	quickBT := bittorrent.Config{Repetitions: 1, FlowDuration: 300 * time.Millisecond, SampleEvery: 50 * time.Millisecond, Warmup: 10 * time.Millisecond, MaxFlowBytes: 1 << 20}
	a, err := agent.New(agent.Options{StateDir: t.TempDir(), ServerURL: testServer(t),
		Tests: map[string]plugin.Measurer{schemas.SpeedtestName: speedtest.NewMeasurer(speedtesttest.Quick), schemas.BitTorrentName: bittorrent.NewMeasurer(quickBT)}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.SetConsent(true, true, true)
	// After each run, the tests run so far (results of one second have
	// no order, so count them).
	for i, want := range []map[string]int{
		{schemas.SpeedtestName: 1},
		{schemas.SpeedtestName: 1, schemas.BitTorrentName: 1},
		{schemas.SpeedtestName: 2, schemas.BitTorrentName: 1},
	} {
		runTest(t, a)
		rs, err := a.Results(context.Background(), 10)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, r := range rs {
			got[r.Test]++
			if r.Bytes <= 0 {
				t.Errorf("%s result without its data use", r.Test)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after run %d: %v, want %v", i+1, got, want)
		}
	}
}

// TestUpdateNotice: the status says a newer version exists only when the
// collector's rendezvous announced a release newer than this agent; an older
// or the same release, or none, says nothing. A collector refuses to
// announce what is not a version.
func TestUpdateNotice(t *testing.T) {
	if _, err := collector.New(collector.Config{SpoolDir: t.TempDir(), LatestAgentVersion: "1.0<b>"}); err == nil {
		t.Error("a collector announces the latest agent version 1.0<b>")
	}
	for _, tc := range []struct {
		announced string
		notice    bool
	}{{"99.0.0", true}, {"0.0.1", false}, {version.Version, false}, {"", false}} {
		col, err := collector.New(collector.Config{SpoolDir: t.TempDir(), LatestAgentVersion: tc.announced})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(col.Handler())
		a := newAgent(t, t.TempDir(), srv.URL, "")
		a.SetConsent(true, true, true)
		if a.Status(context.Background()).Update != nil {
			t.Errorf("%q: a notice before any rendezvous", tc.announced)
		}
		done := make(chan error, 1)
		if err := a.StartTest(context.Background(), done); err != nil {
			t.Fatal(err)
		}
		// No test server is registered: the test fails after the
		// rendezvous answered.
		if err := <-done; err == nil || !strings.Contains(err.Error(), "no test server serves speedtest") {
			t.Errorf("%q: the test ended with %v", tc.announced, err)
		}
		u := a.Status(context.Background()).Update
		if tc.notice != (u != nil) || (u != nil && (u.Latest != tc.announced || u.Current != version.Version)) {
			t.Errorf("collector announces %q, agent %s: update %+v", tc.announced, version.Version, u)
		}
		a.Close()
		srv.Close()
		col.Close()
	}
}
