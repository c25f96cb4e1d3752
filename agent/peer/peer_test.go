package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/plugin/plugintest"
	"github.com/neubot/neubot/agent/speedtest"
	"github.com/neubot/neubot/internal/looptest"
	"github.com/neubot/neubot/internal/webtest"
	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/schemas"
)

// TestMain fails the package's tests if they leave goroutines running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startPeer(t *testing.T, dir string, caps rendezvous.PeerCaps, now func() time.Time) *Server {
	t.Helper()
	s, err := Start(Options{Listen: "127.0.0.1:0", StateDir: dir, ID: "peer-under-test", Version: "test", now: now}, caps)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func env(server string) plugin.Env {
	e := plugintest.Env(server)
	e.ServerPeer = true
	return e
}

// TestCapsHoldUnderLoad: four agents test against one peer at once, again
// and again, until its daily volume has no room for another test. The
// tests never overlap (one at a time, as seen from the agents, not from
// the peer's own counter: no agent measures between another's first
// measuring phase and its collect request, whatever the load), no test and no second goes faster than the
// bandwidth cap, today's bytes never pass the volume cap, and then new
// tests are refused, saying why.
func TestCapsHoldUnderLoad(t *testing.T) {
	caps := rendezvous.PeerCaps{MaxTests: 1, MaxMbps: 16, DailyMB: 60}
	s := startPeer(t, t.TempDir(), caps, nil)
	defer s.Close()
	url := "http://" + s.Addr()

	var (
		stop      = make(chan struct{})
		samplesMu sync.Mutex
		samples   []sample
	)
	go func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			st := s.Status()
			samplesMu.Lock()
			samples = append(samples, sample{time.Now(), st.TodayBytes})
			samplesMu.Unlock()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	// Each test's interval as its agent sees it: from the end of the
	// wait for a slot (the first measuring phase) to the moment it sends
	// its collect request, after its last measured byte. The peer frees
	// the slot only once it has that request, so the next test's first
	// phase comes strictly later: the check needs no margin for load.
	type outcome struct {
		rec        *schemas.Record
		err        error
		start, end time.Time
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	begin := time.Now()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := speedtest.NewMeasurer(speedtest.Config{})
			for ctx.Err() == nil {
				var o outcome
				e := env(url)
				e.Progress = func(p plugin.Progress) {
					if o.start.IsZero() && p.Phase == "latency" {
						o.start = time.Now()
					}
					if p.Phase == "collect" {
						o.end = time.Now()
					}
				}
				o.rec, o.err = m.Run(ctx, e)
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				var pe *plugin.ProtocolError
				if errors.As(o.err, &pe) && pe.Status == http.StatusServiceUnavailable {
					return // refused: the day's volume has no room for a test
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	elapsed := time.Since(begin)

	st := s.Status()
	if !st.CapReached || st.TodayBytes > caps.DailyMB*1_000_000 {
		t.Fatalf("after the load: %d bytes today (cap %d), cap reached %v", st.TodayBytes, caps.DailyMB*1_000_000, st.CapReached)
	}
	completed, refused, failed, overlap := 0, 0, 0, 0
	var fastest float64
	var fastestPhase string // what the fastest phase was, for a failure
	var spans []outcome
	for _, o := range outcomes {
		var pe *plugin.ProtocolError
		switch {
		case o.err == nil:
			completed++
			spans = append(spans, o)
			k := o.rec.TestKeys.(*schemas.Speedtest)
			if !o.rec.Server.Peer {
				t.Errorf("record not marked as a peer's: %+v", o.rec.Server)
			}
			for _, ph := range []struct {
				dir string
				p   schemas.SpeedtestPhase
			}{{"download", k.Download}, {"upload", k.Upload}} {
				if ph.p.GoodputMbps > fastest {
					fastest = ph.p.GoodputMbps
					fastestPhase = fmt.Sprintf("%s: stop %s, window [%.3f, %.3f] s of %.3f, %d connections, samples %+v",
						ph.dir, ph.p.StopReason, ph.p.WindowStartS, ph.p.WindowEndS, ph.p.DurationS, ph.p.Connections, ph.p.Samples)
				}
			}
		case errors.As(o.err, &pe) && pe.Status == http.StatusServiceUnavailable:
			refused++
			if !strings.Contains(pe.Msg, "daily volume") {
				t.Errorf("refusal without the reason: %v", o.err)
			}
		default:
			failed++
			t.Errorf("a test failed: %v", o.err)
		}
	}
	var worst time.Duration
	for i := range spans {
		for j := range i {
			end, start := spans[i].end, spans[i].start
			if spans[j].end.Before(end) {
				end = spans[j].end
			}
			if spans[j].start.After(start) {
				start = spans[j].start
			}
			if d := end.Sub(start); d > 0 {
				worst = max(worst, d)
				overlap++
			}
		}
	}
	if overlap > 0 {
		t.Errorf("%d pairs of tests overlapped (at worst by %s); the cap is one at a time", overlap, worst)
	}
	if completed < 3 || refused != 4 {
		t.Fatalf("%d tests completed, %d refused (want 4: one per agent), %d failed", completed, refused, failed)
	}
	if fastest > caps.MaxMbps*1.05 {
		t.Errorf("a test measured %.2f Mbit/s through a cap of %g (%s)", fastest, caps.MaxMbps, fastestPhase)
	}
	// Both directions together, over any one second: at most twice the
	// cap (one bucket per direction), plus the buckets' 20 ms bursts.
	samplesMu.Lock()
	peak := peakRate(samples, time.Second)
	samplesMu.Unlock()
	if peak > 2*caps.MaxMbps*1.05 {
		t.Errorf("peak one-second rate %.2f Mbit/s through a cap of %g per direction", peak, caps.MaxMbps)
	}
	t.Logf("caps %+v under 4 agents for %s: %d tests completed, none overlapping (at worst %s of overlap), %d refused once the day had no room for one more (%d bytes left); fastest test %.2f Mbit/s; peak one-second rate %.2f Mbit/s (both directions); %d bytes of tests today, %d bytes of refusals",
		caps, elapsed.Round(time.Millisecond), completed, worst, refused, st.DailyBytes-st.TodayBytes, fastest, peak, st.TodayBytes, st.RefusedBytes)
}

// TestDailyCapCutsExactly: a transfer that would pass the day's volume is
// cut at exactly the cap plus one connection's grace (room for a refusal),
// whatever the sender tries; a connection made afterwards gets only its
// grace, and past maxOver a day nothing.
func TestDailyCapCutsExactly(t *testing.T) {
	m := newMeter(rendezvous.PeerCaps{MaxTests: 1, MaxMbps: 1000, DailyMB: 1}, time.Now)
	ln := looptest.Listen(t)
	l := &listener{Listener: ln, m: m}
	defer l.closeConns()
	defer l.Close()
	served := make(chan int)
	looptest.ServeEach(l, func(c net.Conn) {
		n, _ := c.Write(make([]byte, 3_000_000)) // more than the cap
		c.Close()
		served <- n
	})
	read := func() int64 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		return n
	}
	if got, wrote := read(), <-served; got != 1_000_000+grace || int64(wrote) != got {
		t.Fatalf("first connection: read %d bytes, the server wrote %d; want exactly the cap and the grace, %d", got, wrote, 1_000_000+grace)
	}
	if got, wrote := read(), <-served; got != grace || wrote != grace {
		t.Fatalf("after the cap: read %d, wrote %d; want the grace, %d", got, wrote, grace)
	}
	if _, used, _ := m.usage(); used != 1_000_000 || m.overflow() != 2*grace {
		t.Fatalf("meter: %d used, %d past the cap", used, m.overflow())
	}
	// Past maxOver a day, not even the grace.
	for m.overflow() < maxOver {
		read()
		<-served
	}
	if got, wrote := read(), <-served; got != 0 || wrote != 0 {
		t.Fatalf("past the day's overflow bound: read %d bytes, the server wrote %d", got, wrote)
	}
}

// TestRefundAcrossMidnight: bytes reserved before midnight and not used
// are not given back to the new day's budget.
func TestRefundAcrossMidnight(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 26, 23, 59, 59, 0, time.UTC).Unix())
	m := newMeter(rendezvous.PeerCaps{MaxTests: 1, MaxMbps: 10, DailyMB: 1}, func() time.Time { return time.Unix(now.Load(), 0) })
	k, day, err := m.take(500_000)
	if err != nil || k != 500_000 {
		t.Fatal(k, err)
	}
	now.Add(2) // the next day
	m.refund(k, day)
	if _, used, _ := m.usage(); used != 0 {
		t.Fatalf("the new day starts at %d bytes", used)
	}
	if k, _, _ := m.take(2_000_000); k != 1_000_000 {
		t.Fatalf("the new day gives %d bytes, want its cap", k)
	}
}

type sample struct {
	at    time.Time
	bytes int64
}

// peakRate is the highest rate, Mbit/s, over windows of w.
func peakRate(ss []sample, w time.Duration) float64 {
	peak, j := 0.0, 0
	for i := range ss {
		for j < i && ss[i].at.Sub(ss[j].at) > w {
			j++
		}
		if d := ss[i].at.Sub(ss[j].at); d >= w*9/10 {
			peak = max(peak, float64(ss[i].bytes-ss[j].bytes)*8/1e6/d.Seconds())
		}
	}
	return peak
}

// TestCapsChangeAndPersist: caps change live; today's volume survives a
// restart and starts again at 00:00 UTC.
func TestCapsChangeAndPersist(t *testing.T) {
	dir := t.TempDir()
	var day atomic.Int64
	day.Store(time.Date(2026, 11, 26, 23, 0, 0, 0, time.UTC).Unix())
	now := func() time.Time { return time.Unix(day.Load(), 0) }
	caps := rendezvous.PeerCaps{MaxTests: 1, MaxMbps: 50, DailyMB: 100}
	s := startPeer(t, dir, caps, now)
	if _, err := speedtest.NewMeasurer(speedtest.Config{MaxPhase: time.Second, MinPhase: time.Second, V2: speedtest.V2Config{MaxPhase: time.Second, MaxPhaseLongRTT: time.Second}}).Run(context.Background(), env("http://"+s.Addr())); err != nil {
		t.Fatal(err)
	}
	used := s.Status().TodayBytes
	if used < 1_000_000 {
		t.Fatalf("a test used %d bytes?", used)
	}
	if err := s.SetCaps(rendezvous.PeerCaps{MaxTests: 0, MaxMbps: 1, DailyMB: 1}); err == nil {
		t.Fatal("invalid caps accepted")
	}
	if err := s.SetCaps(rendezvous.PeerCaps{MaxTests: 3, MaxMbps: 5, DailyMB: 1}); err != nil {
		t.Fatal(err)
	}
	if _, _, c := s.svc.Negotiator().Load(); c != 3 {
		t.Fatalf("capacity %d after SetCaps, want 3", c)
	}
	if st := s.Status(); !st.CapReached || !strings.Contains(st.Reason, "used up") {
		t.Fatalf("a 1 MB cap below today's %d bytes: %+v", used, st)
	}
	s.Close()

	s = startPeer(t, dir, caps, now)
	// Reads reserve their buffer before the bytes arrive: an idle
	// keep-alive connection's reservation counted then is given back.
	if got := s.Status().TodayBytes; got > used || got < used-64<<10 {
		t.Fatalf("after a restart: %d bytes today, want %d (less the reservations of idle reads)", got, used)
	}
	day.Add(3600) // 00:00 UTC
	if got := s.Status().TodayBytes; got != 0 {
		t.Fatalf("a new day starts with %d bytes", got)
	}
	s.Close()
}

// TestHello answers the collector's check, and only well-formed ones.
func TestHello(t *testing.T) {
	s := startPeer(t, t.TempDir(), DefaultCaps, nil)
	defer s.Close()
	for nonce, want := range map[string]int{"00ff": 200, "": 400, "XYZ": 400, strings.Repeat("a", 65): 400} {
		resp, err := http.Get(fmt.Sprintf("http://%s%s?nonce=%s", s.Addr(), rendezvous.PeerHelloPath, nonce))
		if err != nil {
			t.Fatal(err)
		}
		var h rendezvous.PeerHello
		json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if resp.StatusCode != want || want == 200 && (h.ID != "peer-under-test" || h.Nonce != nonce) {
			t.Errorf("nonce %q: %d %+v", nonce, resp.StatusCode, h)
		}
	}
	if code, _ := webtest.Get(t, "http://"+s.Addr()+"/metrics"); code != 404 {
		t.Errorf("the peer's metrics are public: %d", code)
	}
}
