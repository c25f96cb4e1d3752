// Package service assembles a test server: the negotiator, the provider of
// every test of testserver/registry, the forwarder to the collector,
// metrics and, when it has a collector, registration with the collector's
// rendezvous. `neubot-server
// testserver` and `up` run it; an agent that serves peers will embed it.
package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/internal/metrics"
	"github.com/neubot/neubot/proto/ingest"
	"github.com/neubot/neubot/proto/negotiate"
	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver"
	"github.com/neubot/neubot/testserver/registry"
)

// Config configures a test server.
type Config struct {
	ID      string // identifier in the rendezvous and in records
	Version string
	// CollectorURL receives the authoritative records (and registration);
	// empty means records are only spooled.
	CollectorURL string
	// SpoolDir holds records waiting for the collector.
	SpoolDir   string
	Negotiator testserver.NegotiatorConfig
	// NDT7Duration is the length of each ndt7 subtest (default the
	// specification's 10 s); NDT7AllowUntokened lets stock ndt7 clients
	// test without a token (no record is made of their tests).
	NDT7Duration       time.Duration
	NDT7AllowUntokened bool
	Logger             *slog.Logger
	// BitTorrentListen and NeutralListen are the addresses of the
	// BitTorrent test's raw TCP listeners (e.g. 127.0.0.1:6881 and
	// 127.0.0.1:9776); both empty: the server does not offer the test.
	BitTorrentListen, NeutralListen string
	// Key is the server's enrolled identity: it signs the records it
	// forwards (spec/trust.md). nil: records go unsigned (and the
	// collector stores them as unverified).
	Key *identity.Key
	// WebListen is the address of the web-port listener (e.g. :443;
	// empty: the test runs no web-port flows), BitTorrentHosts more IP
	// addresses to listen on with the same ports, over which a test spreads
	// its flows (spec/bittorrent.md).
	WebListen       string
	BitTorrentHosts []string
	// ReplayListen is the address of the replay test's raw listener (e.g.
	// :443 on an address of its own; empty: the test is not offered).
	ReplayListen string
	// Peer says the server is a volunteer's agent serving other agents
	// (peer-to-peer mode): its records are marked server.peer, and it
	// forwards none: the tester's upload is the only copy (see agent/peer).
	Peer bool
}

// Service is a test server.
type Service struct {
	cfg       Config
	neg       *testserver.Negotiator
	forwarder *ingest.Forwarder
	mux       *http.ServeMux
	reg       metrics.Registry
	providers []testserver.Provider // every test offered, by name
}

// New builds the service; Run delivers records, Close releases the spool.
func New(cfg Config) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ID == "" {
		return nil, errors.New("testserver: an ID is required")
	}
	fw, err := ingest.OpenForwarder(cfg.SpoolDir, cfg.CollectorURL, cfg.Logger)
	if err != nil {
		return nil, err
	}
	fw.Key = cfg.Key
	s := &Service{cfg: cfg, neg: testserver.NewNegotiator(cfg.Negotiator), forwarder: fw, mux: http.NewServeMux(), reg: metrics.New()}

	events := s.reg.CounterVec("neubot_testserver_negotiation_events_total",
		"Negotiation events: negotiated, unchoked, done, revoked, queue_expired, rate_limited, queue_full.", "event")
	bytesTotal := s.reg.CounterVec("neubot_testserver_payload_bytes_total",
		"Test payload bytes by direction (sent = download, received = upload).", "direction")
	forwarded := s.reg.CounterVec("neubot_testserver_forward_records_total",
		"Records handed to the collector: forwarded, retry (per attempt), refused.", "event")
	s.reg.GaugeFunc("neubot_testserver_tests_active", "Tests running now.",
		func() float64 { a, _, _ := s.neg.Load(); return float64(a) })
	s.reg.GaugeFunc("neubot_testserver_tests_queued", "Agents waiting for a slot.",
		func() float64 { _, q, _ := s.neg.Load(); return float64(q) })
	s.reg.GaugeFunc("neubot_testserver_forward_pending_records", "Records spooled, not yet accepted by the collector.",
		func() float64 { return float64(fw.Pending()) })
	s.neg.OnEvent(func(e string) { events.WithLabelValues(e).Inc() })
	fw.OnEvent = func(e string, n int) { forwarded.WithLabelValues(e).Add(float64(n)) }
	sent, recv := bytesTotal.WithLabelValues("sent"), bytesTotal.WithLabelValues("received")

	forward := func(rec *schemas.Record) error {
		if cfg.Peer {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return fw.Enqueue(ctx, rec)
	}
	env := testserver.Env{
		Negotiator: s.neg, ServerID: cfg.ID, Version: cfg.Version, Peer: cfg.Peer, Logger: cfg.Logger, Metrics: s.reg,
		OnBytes: func(s, r int64) {
			if s > 0 {
				sent.Add(float64(s))
			}
			if r > 0 {
				recv.Add(float64(r))
			}
		},
		Settings: testserver.Settings{NDT7Duration: cfg.NDT7Duration, NDT7AllowUntokened: cfg.NDT7AllowUntokened,
			BitTorrentListen: cfg.BitTorrentListen, NeutralListen: cfg.NeutralListen,
			WebListen: cfg.WebListen, BitTorrentHosts: cfg.BitTorrentHosts, ReplayListen: cfg.ReplayListen},
	}
	for _, name := range registry.Names() {
		p, err := registry.New(name, env)
		if errors.Is(err, testserver.ErrNotOffered) {
			continue
		}
		if err != nil {
			s.Close()
			return nil, err
		}
		s.providers = append(s.providers, p)
		spec := p.Spec()
		if _, set := cfg.Negotiator.TestTimeouts[spec.Name]; spec.TestTimeout > 0 && !set {
			s.neg.SetTestTimeout(spec.Name, spec.TestTimeout)
		}
		s.mux.HandleFunc("POST "+spec.NegotiatePath, s.negotiate(spec.Name))
		s.mux.Handle("POST "+spec.CollectPath, testserver.CollectHandler(p, env, forward))
		p.Routes(s.mux)
	}
	s.mux.Handle("GET /metrics", s.reg.Handler())
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	return s, nil
}

// Handler is the test server's HTTP API.
func (s *Service) Handler() http.Handler { return s.mux }

// Negotiator exposes the negotiator (for load reports and tests).
func (s *Service) Negotiator() *testserver.Negotiator { return s.neg }

// Forwarder exposes the forwarder (for tests).
func (s *Service) Forwarder() *ingest.Forwarder { return s.forwarder }

// Registration describes this server for the rendezvous, reachable at url.
func (s *Service) Registration(url string) rendezvous.ServerRegistration {
	a, q, c := s.neg.Load()
	var tests []string
	for _, p := range s.providers {
		tests = append(tests, string(p.Spec().Name))
	}
	return rendezvous.ServerRegistration{
		ID: s.cfg.ID, URL: url, Tests: tests, Version: s.cfg.Version,
		Load: rendezvous.ServerLoad{Active: a, Queued: q, Capacity: c},
	}
}

// Run forwards records to the collector until ctx ends.
func (s *Service) Run(ctx context.Context) {
	if s.cfg.CollectorURL == "" || s.cfg.Peer {
		<-ctx.Done()
		return
	}
	s.forwarder.Run(ctx)
}

// BitTorrentPorts returns the ports of the BitTorrent test's listeners
// (0, 0 when the test is not offered).
func (s *Service) BitTorrentPorts() (bittorrent, neutral int) {
	for _, p := range s.providers {
		if bt, ok := p.(interface{ Ports() (int, int) }); ok {
			return bt.Ports()
		}
	}
	return 0, 0
}

// BitTorrentWebPort returns the port of the BitTorrent test's web-port
// listener (0: none).
func (s *Service) BitTorrentWebPort() int {
	for _, p := range s.providers {
		if bt, ok := p.(interface{ WebPort() int }); ok {
			return bt.WebPort()
		}
	}
	return 0
}

// ReplayPort returns the port of the replay test's listener (0: none).
func (s *Service) ReplayPort() int {
	for _, p := range s.providers {
		if p.Spec().Name == schemas.ReplayName {
			if r, ok := p.(interface{ Port() int }); ok {
				return r.Port()
			}
		}
	}
	return 0
}

// Close stops the providers (the BitTorrent listeners) and keeps
// undelivered records on disk for the next start.
func (s *Service) Close() error {
	for _, p := range s.providers {
		p.Close()
	}
	return s.forwarder.Close()
}

// negotiate handles the negotiate requests of test.
func (s *Service) negotiate(test testserver.Test) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { s.negotiateTest(w, r, test) }
}

func (s *Service) negotiateTest(w http.ResponseWriter, r *http.Request, test testserver.Test) {
	var req negotiate.Request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, negotiate.MaxBody))
	if err := dec.Decode(&req); err != nil {
		httpx.WriteJSON(w, http.StatusBadRequest, negotiate.Error{Error: fmt.Sprintf("bad negotiate request: %v", err)})
		return
	}
	if len(req.Token) > negotiate.MaxTokenBytes || len(req.MeasurementUID) > negotiate.MaxUIDBytes {
		httpx.WriteJSON(w, http.StatusBadRequest, negotiate.Error{Error: "token or measurement_uid too long"})
		return
	}
	n, err := s.neg.NegotiateTest(r.Context(), test, req.Token, req.MeasurementUID, httpx.ClientAddr(r, false))
	if err != nil {
		code := testserver.StatusOf(err)
		if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", strconv.Itoa(5))
		}
		httpx.WriteJSON(w, code, negotiate.Error{Error: err.Error()})
		return
	}
	httpx.WriteJSON(w, http.StatusOK, negotiate.Response{
		Token: n.Session.Token, Unchoked: n.Unchoked, QueuePos: n.QueuePos, TTLS: n.TTL.Seconds(),
	})
}
