package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/speedtest"
	"github.com/neubot/neubot/schemas"
)

func startPeer(t *testing.T, dir string, caps schemas.PeerCaps, now func() time.Time) *Server {
	t.Helper()
	s, err := Start(Options{Listen: "127.0.0.1:0", StateDir: dir, ID: "peer-under-test", Version: "test", now: now}, caps)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func env(server string) plugin.Env {
	return plugin.Env{ServerURL: server, AgentID: uuid.NewString(), ServerPeer: true,
		Consent: schemas.Consent{Informed: true, CanCollect: true, CanPublish: true}}
}

// TestCapsHoldUnderLoad: four agents test against one peer at once, again
// and again, until its daily volume is used up. The peer never runs more
// tests at once than its cap, no test and no second goes faster than its
// bandwidth cap, and the day's bytes stop exactly at the volume cap; then
// new tests are refused, saying why.
func TestCapsHoldUnderLoad(t *testing.T) {
	caps := schemas.PeerCaps{MaxTests: 1, MaxMbps: 16, DailyMB: 30}
	s := startPeer(t, t.TempDir(), caps, nil)
	defer s.Close()
	url := "http://" + s.Addr()

	var (
		maxActive atomic.Int64
		stop      = make(chan struct{})
		samplesMu sync.Mutex
		samples   []sample
	)
	go func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			st := s.Status()
			if int64(st.ActiveTests) > maxActive.Load() {
				maxActive.Store(int64(st.ActiveTests))
			}
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

	type outcome struct {
		rec *schemas.Record
		err error
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := speedtest.NewMeasurer(speedtest.Config{})
			for ctx.Err() == nil && !s.meter.full() {
				rec, err := m.Run(ctx, env(url))
				mu.Lock()
				outcomes = append(outcomes, outcome{rec, err})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	elapsed := time.Since(start)

	st := s.Status()
	if !st.CapReached || st.TodayBytes != caps.DailyMB*1_000_000 {
		t.Fatalf("after the load: %d bytes today, cap reached %v; want exactly %d", st.TodayBytes, st.CapReached, caps.DailyMB*1_000_000)
	}
	if maxActive.Load() != int64(caps.MaxTests) {
		t.Fatalf("at most %d tests ran at once; the cap is %d", maxActive.Load(), caps.MaxTests)
	}
	completed, cut := 0, 0
	var fastest float64
	for _, o := range outcomes {
		if o.err != nil {
			cut++
			continue
		}
		completed++
		k := o.rec.TestKeys.(*schemas.Speedtest)
		if !o.rec.Server.Peer || o.rec.Server.ID != "peer-under-test" {
			t.Errorf("record not marked as a peer's: %+v", o.rec.Server)
		}
		fastest = max(fastest, k.Download.GoodputMbps, k.Upload.GoodputMbps)
	}
	if completed < 2 {
		t.Fatalf("only %d tests completed (%d cut or refused): %v", completed, cut, outcomes)
	}
	if fastest > caps.MaxMbps*1.05 {
		t.Errorf("a test measured %.2f Mbit/s through a cap of %g", fastest, caps.MaxMbps)
	}
	// Both directions together, over any one second: at most twice the
	// cap (one bucket per direction), plus the buckets' 20 ms bursts.
	samplesMu.Lock()
	peak := peakRate(samples, time.Second)
	samplesMu.Unlock()
	if peak > 2*caps.MaxMbps*1.05 {
		t.Errorf("peak one-second rate %.2f Mbit/s through a cap of %g per direction", peak, caps.MaxMbps)
	}
	t.Logf("caps %+v under 4 agents for %s: %d tests completed, %d cut or refused at the volume cap; at most %d at once; fastest test %.2f Mbit/s; peak one-second rate %.2f Mbit/s (both directions); %d bytes of tests today, %d bytes of refusals",
		caps, elapsed.Round(time.Millisecond), completed, cut, maxActive.Load(), fastest, peak, st.TodayBytes, st.RefusedBytes)

	// Once the day's volume is gone, new tests are refused with the reason.
	resp, err := http.Post(url+"/speedtest/negotiate", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "daily volume") {
		t.Fatalf("negotiate after the cap: %d %s", resp.StatusCode, body)
	}
	_, err = speedtest.NewMeasurer(speedtest.Config{}).Run(ctx, env(url))
	var pe *plugin.ProtocolError
	if !errors.As(err, &pe) || pe.Status != http.StatusServiceUnavailable {
		t.Fatalf("a test after the cap: %v", err)
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
	caps := schemas.PeerCaps{MaxTests: 1, MaxMbps: 50, DailyMB: 100}
	s := startPeer(t, dir, caps, now)
	if _, err := speedtest.NewMeasurer(speedtest.Config{MaxPhase: time.Second, MinPhase: time.Second}).Run(context.Background(), env("http://"+s.Addr())); err != nil {
		t.Fatal(err)
	}
	used := s.Status().TodayBytes
	if used < 1_000_000 {
		t.Fatalf("a test used %d bytes?", used)
	}
	if err := s.SetCaps(schemas.PeerCaps{MaxTests: 0, MaxMbps: 1, DailyMB: 1}); err == nil {
		t.Fatal("invalid caps accepted")
	}
	if err := s.SetCaps(schemas.PeerCaps{MaxTests: 3, MaxMbps: 5, DailyMB: 1}); err != nil {
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
		resp, err := http.Get(fmt.Sprintf("http://%s%s?nonce=%s", s.Addr(), schemas.PeerHelloPath, nonce))
		if err != nil {
			t.Fatal(err)
		}
		var h schemas.PeerHello
		json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if resp.StatusCode != want || want == 200 && (h.ID != "peer-under-test" || h.Nonce != nonce) {
			t.Errorf("nonce %q: %d %+v", nonce, resp.StatusCode, h)
		}
	}
	if resp, err := http.Get("http://" + s.Addr() + "/metrics"); err != nil || resp.StatusCode != 404 {
		t.Errorf("the peer's metrics are public: %v %v", resp, err)
	}
}
