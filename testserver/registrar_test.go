package testserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/neubot/neubot/collector"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/schemas"
)

// tsKey is the identity of the test server "ts1" that collectorServer's
// collectors enroll.
var tsKey = identity.NewKey()

// collectorServer serves the real collector handler (no loader, so no
// ClickHouse) behind wrap, which may count or fail requests.
func collectorServer(t *testing.T, cfg collector.Config, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	cfg.SpoolDir = t.TempDir()
	if cfg.Enrolled == nil {
		cfg.Enrolled = identity.StaticAllowList(identity.Enrolled{Key: tsKey.PublicKey(), ID: "ts1"})
	}
	c, err := collector.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = c.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		c.Close()
	})
	return srv
}

// counting counts the registrations that reach next, and when fail > 0
// answers the first fail of them 503 itself.
type counting struct {
	next  http.Handler
	fail  int64
	count atomic.Int64 // registrations seen, failed ones included
	mu    sync.Mutex
	at    []time.Time // when each registration arrived
	// answered[i] is when the answer to registration i began to be
	// written: its registrar cannot have it, so cannot have started the
	// wait for the next one, before then. Gaps measured from it to the
	// next arrival are waits of the registrar, whatever delays the
	// requests on their way.
	answered []time.Time
}

// stampWriter records the time of the first write of an answer.
type stampWriter struct {
	http.ResponseWriter
	stamp func()
	once  sync.Once
}

func (w *stampWriter) WriteHeader(code int) { w.once.Do(w.stamp); w.ResponseWriter.WriteHeader(code) }
func (w *stampWriter) Write(b []byte) (int, error) {
	w.once.Do(w.stamp)
	return w.ResponseWriter.Write(b)
}

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == rendezvous.RegisterPath {
		n := c.count.Add(1)
		c.mu.Lock()
		c.at = append(c.at, time.Now())
		c.answered = append(c.answered, time.Time{})
		c.mu.Unlock()
		w = &stampWriter{ResponseWriter: w, stamp: func() {
			c.mu.Lock()
			c.answered[n-1] = time.Now()
			c.mu.Unlock()
		}}
		if n <= c.fail {
			http.Error(w, `{"error":"down for maintenance"}`, http.StatusServiceUnavailable)
			return
		}
	}
	c.next.ServeHTTP(w, r)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// listed asks the collector's rendezvous for the speedtest servers.
func listed(t *testing.T, url string) []rendezvous.ServerInfo {
	t.Helper()
	body, _ := json.Marshal(rendezvous.RendezvousRequest{AgentID: "agent-1", Tests: []string{schemas.SpeedtestName}})
	resp, err := http.Post(url+rendezvous.RendezvousPath, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out rendezvous.RendezvousResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("rendezvous: %d %v", resp.StatusCode, err)
	}
	return out.Servers[schemas.SpeedtestName]
}

// run starts r.Run and returns a function that stops it and returns its
// error; the test fails if Run does not return promptly.
func run(t *testing.T, r *Registrar) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after its context ended")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestRegistrarHeartbeats runs a Registrar against the real collector
// handler, with the registrar's second shortened to 10 ms (its 15-unit
// register timeout, 150 ms, is then long enough on a loaded machine: at
// 1 ms a slow answer timed out at the client and its retry looked like an
// early heartbeat): it
// registers at once, then heartbeats at the ack's interval, each heartbeat
// carrying the current load.
func TestRegistrarHeartbeats(t *testing.T) {
	var cnt *counting
	srv := collectorServer(t, collector.Config{RegisterToken: "tok"}, func(h http.Handler) http.Handler {
		cnt = &counting{next: h}
		return cnt
	})
	var active atomic.Int64
	const unit = 10 * time.Millisecond
	r := &Registrar{
		Key:          tsKey,
		CollectorURL: srv.URL + "/", // a trailing slash is fine
		Token:        "tok",
		Info: func() rendezvous.ServerRegistration {
			return rendezvous.ServerRegistration{
				ID: "ts1", URL: "http://127.0.0.1:9775", Tests: []string{schemas.SpeedtestName},
				Version: "test", Load: rendezvous.ServerLoad{Active: int(active.Load()), Capacity: 4},
			}
		},
		Client: srv.Client(),
		Logger: testLogger(t),
		unit:   unit,
	}
	start := time.Now()
	stop := run(t, r)
	waitFor(t, "the first registration", func() bool { return len(listed(t, srv.URL)) == 1 })
	cnt.mu.Lock()
	first := cnt.at[0].Sub(start)
	cnt.mu.Unlock()
	if first > time.Second {
		t.Errorf("first registration after %s, want at once", first)
	}
	got := listed(t, srv.URL)[0]
	if got.ID != "ts1" || got.URL != "http://127.0.0.1:9775" || got.Load != 0 {
		t.Fatalf("listed %+v", got)
	}

	// The load changes; the next heartbeats carry it.
	active.Store(2)
	waitFor(t, "a heartbeat with the new load", func() bool {
		l := listed(t, srv.URL)
		return len(l) == 1 && l[0].Load == 0.5
	})
	waitFor(t, "five heartbeats", func() bool { return cnt.count.Load() >= 5 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Heartbeats came at the ack's interval (10 units = 100 ms), not
	// faster: each arrived at least 10 units after the previous one was
	// answered (timers never fire early; load only makes gaps longer).
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	for i := 1; i < len(cnt.at); i++ {
		if d := cnt.at[i].Sub(cnt.answered[i-1]); d < 10*unit {
			t.Errorf("heartbeat %d arrived only %s after registration %d was answered, want at least %s", i, d, i-1, 10*unit)
		}
	}
}

// TestRegistrarRetries checks that failed attempts are retried with
// growing waits until the collector accepts the registration.
func TestRegistrarRetries(t *testing.T) {
	var cnt *counting
	srv := collectorServer(t, collector.Config{}, func(h http.Handler) http.Handler {
		cnt = &counting{next: h, fail: 5}
		return cnt
	})
	r := &Registrar{
		Key:          tsKey,
		CollectorURL: srv.URL,
		Info: func() rendezvous.ServerRegistration {
			return rendezvous.ServerRegistration{ID: "ts1", URL: "https://ts1.example.org", Tests: []string{schemas.SpeedtestName}, Load: rendezvous.ServerLoad{Capacity: 1}}
		},
		Logger: testLogger(t),
		unit:   time.Millisecond,
	}
	run(t, r)
	waitFor(t, "the registration after 5 failures", func() bool { return len(listed(t, srv.URL)) == 1 })
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	// Waits after the failures, from the answer to the next arrival: at
	// least half of 1, 2, 4, 8, 16 ms.
	for i := 1; i <= 5; i++ {
		floor := time.Duration(1<<(i-1)) * time.Millisecond / 2
		if d := cnt.at[i].Sub(cnt.answered[i-1]); d < floor {
			t.Errorf("wait after failure %d is %s, want at least %s", i, d, floor)
		}
	}
}

func TestRegistrarBackoffBounds(t *testing.T) {
	r := &Registrar{}
	for failures := 1; failures <= 40; failures++ {
		ceil := time.Duration(min(1<<min(failures-1, 10), backoffMax)) * time.Second
		for range 50 {
			if d := r.backoff(failures); d < ceil/2 || d > ceil {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", failures, d, ceil/2, ceil)
			}
		}
	}
}

func TestRegistrarHeartbeatFromAck(t *testing.T) {
	r := &Registrar{}
	for _, tt := range []struct {
		ack  rendezvous.RegistrationAck
		want time.Duration
	}{
		{rendezvous.RegistrationAck{HeartbeatS: 10, ExpiresS: 30}, 10 * time.Second},
		{rendezvous.RegistrationAck{}, 10 * time.Second}, // the default
		{rendezvous.RegistrationAck{HeartbeatS: -5}, 10 * time.Second},
		{rendezvous.RegistrationAck{HeartbeatS: 3}, 3 * time.Second},
		{rendezvous.RegistrationAck{HeartbeatS: 86400}, 600 * time.Second},           // capped
		{rendezvous.RegistrationAck{HeartbeatS: 60, ExpiresS: 30}, 15 * time.Second}, // kept below the expiry
		{rendezvous.RegistrationAck{HeartbeatS: 1, ExpiresS: 1}, 500 * time.Millisecond},
	} {
		if got := r.heartbeat(tt.ack); got != tt.want {
			t.Errorf("heartbeat(%+v) = %s, want %s", tt.ack, got, tt.want)
		}
	}
}

// TestRegisterRefused checks the errors of refused registrations: they
// carry the collector's status and reason.
func TestRegisterRefused(t *testing.T) {
	srv := collectorServer(t, collector.Config{RegisterToken: "right"}, nil)
	good := func() rendezvous.ServerRegistration {
		return rendezvous.ServerRegistration{ID: "ts1", URL: "http://ts1", Tests: []string{schemas.SpeedtestName}, Load: rendezvous.ServerLoad{Capacity: 1}}
	}
	for _, tt := range []struct {
		name   string
		token  string
		info   func() rendezvous.ServerRegistration
		code   int
		reason string
	}{
		{"no token", "", good, 401, "Bearer"},
		{"wrong token", "wrong", good, 401, "Bearer"},
		{"invalid registration", "right", func() rendezvous.ServerRegistration {
			r := good()
			r.URL = "ftp://ts1"
			return r
		}, 400, "url: must be an http or https URL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &Registrar{Key: tsKey, CollectorURL: srv.URL, Token: tt.token, Info: tt.info}
			_, err := r.Register(context.Background())
			var se *StatusError
			if !errors.As(err, &se) || se.Code != tt.code || !strings.Contains(se.Reason, tt.reason) {
				t.Fatalf("error %v, want a StatusError %d saying %q", err, tt.code, tt.reason)
			}
		})
	}
	r := &Registrar{Key: tsKey, CollectorURL: srv.URL, Token: "right", Info: good}
	ack, err := r.Register(context.Background())
	if err != nil || ack != (rendezvous.RegistrationAck{HeartbeatS: 10, ExpiresS: 30}) {
		t.Fatalf("Register: %+v, %v", ack, err)
	}
}

// TestRegisterBoundsTheAnswer checks that a collector answering endlessly
// cannot make the registrar read without bound.
func TestRegisterBoundsTheAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"heartbeat_s":10,"pad":"`))
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for range 1024 { // 32 MiB, unless the client hangs up
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	r := &Registrar{Key: tsKey, CollectorURL: srv.URL, Info: func() rendezvous.ServerRegistration { return rendezvous.ServerRegistration{} }}
	_, err := r.Register(context.Background())
	if err == nil || !strings.Contains(err.Error(), "over") {
		t.Fatalf("error %v, want one about the size of the answer", err)
	}
}

func TestRegistrarMisconfigured(t *testing.T) {
	info := func() rendezvous.ServerRegistration { return rendezvous.ServerRegistration{} }
	for _, r := range []*Registrar{
		{Info: info},
		{CollectorURL: "http://127.0.0.1:9773"},
		{CollectorURL: "http://[::1", Info: info},
	} {
		if err := r.Run(context.Background()); err == nil {
			t.Errorf("Run(%+v) = nil, want an error", r)
		}
	}
}
