// Package peer is the serving side of peer-to-peer mode (section II-B of
// the Neubot paper): a volunteer's agent that opted in embeds a test server
// (testserver/service: the negotiator and the providers of the speedtest
// and ndt7), accepts other agents' tests on its own port, and registers
// with the collector's rendezvous as a peer. The collector connects back
// before listing it, and the acknowledgement says whether agents are sent
// here, or why not.
//
// The volunteer's caps hold whatever the load: the negotiator runs at most
// MaxTests tests at once (others queue or are refused), every byte of the
// listener's connections passes a token bucket per direction at MaxMbps,
// and a daily budget of DailyMB, both directions together, that cuts
// connections rather than go past it. Once the budget is gone, new tests
// are refused and the peer stops registering until 00:00 UTC.
package peer

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/neubot/neubot/internal/atomicfile"
	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/proto/ndt7"
	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/testserver"
	"github.com/neubot/neubot/testserver/service"
)

// DefaultCaps are a new volunteer's caps: one test at a time, 10 Mbit/s,
// 500 MB a day (about 30 speedtests at that rate).
var DefaultCaps = rendezvous.PeerCaps{MaxTests: 1, MaxMbps: 10, DailyMB: 500}

// Options configure a peer server.
type Options struct {
	// Listen is the address other agents' tests arrive on, e.g. ":9777".
	Listen string
	// PublicPort is the port other agents reach, when a router forwards
	// another one (0: the port of Listen).
	PublicPort int
	// CollectorURL is where the peer registers ("": nowhere; tests).
	// It forwards no records: the tester uploads the one copy of each
	// test, with its own consent, as "peer" (see schemas.PeerServerID).
	CollectorURL string
	// StateDir holds peer-usage.json (today's bytes, across restarts).
	StateDir string
	// ID is the peer's registration ID ("peer-" and random): not the
	// agent_id, so that nothing links what a volunteer serves to what
	// it measures.
	ID      string
	Version string
	// NDT7Duration is the length of each ndt7 subtest (default 10 s).
	NDT7Duration time.Duration
	Logger       *slog.Logger

	now func() time.Time // tests move the day
}

// Status is what the volunteer sees of serving peers.
type Status struct {
	// Listen is the bound address; Port the one registered.
	Listen string `json:"listen"`
	Port   int    `json:"port"`
	// Listed is true when the collector hands this agent to others.
	Listed bool `json:"listed"`
	// URL is where the collector reached (or tried to reach) the agent.
	URL string `json:"url,omitempty"`
	// Reason says why the agent is not listed.
	Reason    string `json:"reason,omitempty"`
	CheckedAt string `json:"checked_at,omitempty"`
	// Caps are the volunteer's limits.
	Caps rendezvous.PeerCaps `json:"caps"`
	// ActiveTests and QueuedTests are other agents' tests now.
	ActiveTests int `json:"active_tests"`
	QueuedTests int `json:"queued_tests"`
	// TodayBytes is today's (UTC) volume of tests, both directions;
	// DailyBytes the cap; CapReached is true when what is left has no
	// room for another test.
	// RefusedBytes counts what refusing tests past the cap cost (at most
	// 8 KiB a connection and 1 MiB a day).
	TodayBytes   int64 `json:"today_bytes"`
	RefusedBytes int64 `json:"refused_bytes"`
	DailyBytes   int64 `json:"daily_bytes"`
	CapReached   bool  `json:"cap_reached"`
}

// Server serves tests to other agents. Start it with Start, stop it with
// Close.
type Server struct {
	opts  Options
	log   *slog.Logger
	meter *meter
	svc   *service.Service
	http  *httpx.Server
	ln    *listener
	port  int

	mu        sync.Mutex
	caps      rendezvous.PeerCaps
	peer      *rendezvous.PeerStatus // the last ack's
	regErr    string                 // the last failed registration's
	regCancel context.CancelFunc     // the registrar's, while it runs
	regDone   chan struct{}

	cancel  context.CancelFunc
	closing atomic.Bool
	wg      sync.WaitGroup
}

// Seconds of transfer at the capped rate that a test of each kind may take,
// both directions together: a new test is admitted only while today's
// volume has room for it, so that the volume goes to tests that finish.
const (
	speedtestSeconds = 8  // two phases of at most 3.4 s, and latency
	ndt7Seconds      = 22 // two subtests of at most 10 s, and 10% more
)

// usageFile is today's volume, kept across restarts.
type usageFile struct {
	Day   string `json:"day"`
	Bytes int64  `json:"bytes"`
}

// Start listens and, with a collector, registers. caps must be valid.
func Start(opts Options, caps rendezvous.PeerCaps) (*Server, error) {
	if err := caps.Validate(); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(opts.ID, rendezvous.PeerIDPrefix) {
		return nil, fmt.Errorf("peer: the ID must start with %q", rendezvous.PeerIDPrefix)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	if opts.NDT7Duration == 0 {
		opts.NDT7Duration = 10 * time.Second
	}
	s := &Server{opts: opts, log: opts.Logger, caps: caps, meter: newMeter(caps, opts.now)}
	var u usageFile
	if b, err := os.ReadFile(s.usagePath()); err == nil && len(b) < 4096 && json.Unmarshal(b, &u) == nil {
		s.meter.restore(u.Day, u.Bytes)
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("peer: listen for other agents' tests on %s: %w", opts.Listen, err)
	}
	s.port = opts.PublicPort
	if s.port == 0 {
		s.port = ln.Addr().(*net.TCPAddr).Port
	}
	svc, err := service.New(service.Config{
		ID: opts.ID, Version: opts.Version, CollectorURL: opts.CollectorURL,
		SpoolDir: filepath.Join(opts.StateDir, "peer-spool"),
		// Admission is checked again when a waiting agent's turn comes:
		// the tests before it may have used the room it was admitted to.
		Negotiator: testserver.NegotiatorConfig{Capacity: caps.MaxTests, MaxQueue: maxQueue(caps),
			Admit: func(string) error {
				if s.exhausted() {
					return s.usedUp()
				}
				return nil
			}},
		NDT7Duration: opts.NDT7Duration, Peer: true, Logger: opts.Logger,
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	s.svc = svc
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+rendezvous.PeerHelloPath, s.hello)
	mux.Handle("/metrics", http.NotFoundHandler()) // the volunteer's, not the world's
	mux.Handle("/", s.admit(svc.Handler()))
	s.ln = &listener{Listener: ln, m: s.meter}
	s.http = httpx.Serve(s.ln, mux, opts.Logger)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go func() { defer s.wg.Done(); svc.Run(ctx) }()
	go func() { defer s.wg.Done(); s.loop(ctx) }()
	s.log.Info("peer: serving other agents' tests", "listen", s.http.Addr(), "port", s.port, "caps", caps)
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.http.Addr() }

func (s *Server) usagePath() string { return filepath.Join(s.opts.StateDir, "peer-usage.json") }

func maxQueue(c rendezvous.PeerCaps) int { return 4 * c.MaxTests }

// need is the volume a new test of the kind negotiated at path may take.
func (s *Server) need(path string) int64 {
	secs := speedtestSeconds
	if strings.HasPrefix(path, ndt7.PagePath) {
		secs = ndt7Seconds
	}
	return int64(s.meter.rate() * float64(secs))
}

// exhausted says whether today's volume has no room for another test.
func (s *Server) exhausted() bool { return s.meter.left() < s.need("") }

// admit refuses with 503 and the reason a new test that today's volume has
// no room for, and every request once the volume is used up: a short
// refusal instead of a test cut short.
func (s *Server) admit(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		left := s.meter.left()
		negotiate := r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/negotiate")
		if left > 0 && (!negotiate || left >= s.need(r.URL.Path)) {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "3600")
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(map[string]string{"error": s.usedUp().Error()})
	})
}

// usedUp is the reason of a refusal once the day has no room left.
func (s *Server) usedUp() error {
	return fmt.Errorf("this volunteer's daily volume for serving peers (%d MB) is used up until 00:00 UTC", s.Caps().DailyMB)
}

// hello answers the collector's reachability check.
func (s *Server) hello(w http.ResponseWriter, r *http.Request) {
	nonce := r.URL.Query().Get("nonce")
	if len(nonce) == 0 || len(nonce) > 64 {
		http.Error(w, "nonce: 1 to 64 characters", http.StatusBadRequest)
		return
	}
	for i := 0; i < len(nonce); i++ {
		if c := nonce[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			http.Error(w, "nonce: lower-case hex only", http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(rendezvous.PeerHello{ID: s.opts.ID, Nonce: nonce})
}

// Caps returns the caps in force.
func (s *Server) Caps() rendezvous.PeerCaps {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.caps
}

// SetCaps applies new caps at once: to the tests running (rate), to the
// next ones (concurrency) and to today's budget.
func (s *Server) SetCaps(caps rendezvous.PeerCaps) error {
	if err := caps.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	s.caps = caps
	s.mu.Unlock()
	s.meter.setCaps(caps)
	s.svc.Negotiator().SetCapacity(caps.MaxTests, maxQueue(caps))
	return nil
}

// Status returns what the volunteer sees.
func (s *Server) Status() Status {
	a, q, _ := s.svc.Negotiator().Load()
	_, used, daily := s.meter.usage()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Listen: s.http.Addr(), Port: s.port, Caps: s.caps, ActiveTests: a, QueuedTests: q,
		TodayBytes: used, RefusedBytes: s.meter.overflow(), DailyBytes: daily, CapReached: s.exhausted()}
	if s.peer != nil {
		st.Listed, st.URL, st.Reason, st.CheckedAt = s.peer.Listed, s.peer.URL, s.peer.Reason, s.peer.CheckedAt
	}
	switch {
	case st.CapReached:
		st.Listed, st.Reason = false, fmt.Sprintf("today's volume cap (%d MB) is used up: not offered to other agents until 00:00 UTC", s.caps.DailyMB)
	case s.opts.CollectorURL == "":
		st.Listed, st.Reason = false, "no collector: other agents cannot find this one"
	case s.regErr != "":
		st.Listed, st.Reason = false, "cannot register with the collector: "+s.regErr
	case s.peer == nil:
		st.Reason = "registering with the collector"
	}
	return st
}

// loop keeps the registration in step with the daily budget and saves
// the day's volume.
func (s *Server) loop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	saved := time.Now()
	for {
		want := s.opts.CollectorURL != "" && !s.exhausted() && !s.closing.Load()
		s.mu.Lock()
		running := s.regCancel != nil
		s.mu.Unlock()
		switch {
		case want && !running:
			s.startRegistrar(ctx)
		case !want && running:
			if !s.closing.Load() {
				s.log.Info("peer: daily volume used up; not offered to other agents until 00:00 UTC")
			}
			s.stopRegistrar()
		}
		if time.Since(saved) >= 10*time.Second {
			s.saveUsage()
			saved = time.Now()
		}
		select {
		case <-ctx.Done():
			s.stopRegistrar()
			return
		case <-tick.C:
		}
	}
}

func (s *Server) startRegistrar(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	reg := &testserver.Registrar{
		CollectorURL: s.opts.CollectorURL,
		Path:         rendezvous.PeerRegisterPath,
		Logger:       s.log,
		Info: func() rendezvous.ServerRegistration {
			r := s.svc.Registration("")
			r.URL = ""
			r.Peer = &rendezvous.PeerOffer{Port: s.port, Caps: s.Caps()}
			return r
		},
		OnAck: func(ack rendezvous.RegistrationAck) {
			s.mu.Lock()
			prev := s.peer
			s.peer, s.regErr = ack.Peer, ""
			s.mu.Unlock()
			switch {
			case ack.Peer == nil:
			case ack.Peer.Listed && (prev == nil || !prev.Listed):
				s.log.Info("peer: listed by the collector: other agents may test with this one", "url", ack.Peer.URL)
			case !ack.Peer.Listed && (prev == nil || prev.Reason != ack.Peer.Reason):
				s.log.Warn("peer: not listed by the collector", "url", ack.Peer.URL, "reason", ack.Peer.Reason)
			}
		},
		OnError: func(err error) {
			s.mu.Lock()
			s.regErr = err.Error()
			s.mu.Unlock()
		},
	}
	s.mu.Lock()
	s.regCancel, s.regDone = cancel, done
	s.mu.Unlock()
	go func() {
		defer close(done)
		if err := reg.Run(ctx); err != nil {
			s.registrarFailed(err)
		}
	}()
}

// registrarFailed records a misconfigured registrar (a bad collector URL).
func (s *Server) registrarFailed(err error) {
	s.mu.Lock()
	s.regErr = err.Error()
	s.mu.Unlock()
	s.log.Error("peer: cannot register", "err", err)
}

func (s *Server) stopRegistrar() {
	s.mu.Lock()
	cancel, done := s.regCancel, s.regDone
	s.regCancel, s.regDone = nil, nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	s.mu.Lock()
	s.peer = nil // after done: no acknowledgement in flight brings it back
	s.mu.Unlock()
}

func (s *Server) saveUsage() {
	day, used, _ := s.meter.usage()
	s.meter.mu.Lock()
	dirty := s.meter.dirty
	s.meter.dirty = false
	s.meter.mu.Unlock()
	if !dirty {
		return
	}
	b, _ := json.Marshal(usageFile{Day: day, Bytes: used})
	if err := atomicfile.WriteFile(s.usagePath(), append(b, '\n')); err != nil {
		s.log.Warn("peer: cannot save today's volume", "err", err)
	}
}

// Close stops serving: it stops registering first, then waiting agents get
// their answer, tests running end (within 5 s), and today's volume is
// saved. The collector stops listing it within its expiry.
func (s *Server) Close() error {
	s.closing.Store(true)
	s.stopRegistrar()
	s.svc.Negotiator().Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.http.Shutdown(ctx)
	s.ln.closeConns() // hijacked ones (ndt7) and any left after the wait
	s.cancel()
	s.wg.Wait()
	s.saveUsage()
	return s.svc.Close()
}
