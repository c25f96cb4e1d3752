// Package service assembles a test server: the negotiator, the providers
// of each test (speedtest, ndt7), the forwarder to the collector, metrics and, when it has a
// collector, registration with the collector's rendezvous. `neubot-server
// testserver` and `up` run it; an agent that serves peers will embed it.
package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	btspec "github.com/neubot/neubot/proto/bittorrent"
	"github.com/neubot/neubot/proto/ingest"
	ndt7spec "github.com/neubot/neubot/proto/ndt7"
	"github.com/neubot/neubot/proto/negotiate"
	"github.com/neubot/neubot/proto/rendezvous"
	spec "github.com/neubot/neubot/proto/speedtest"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver"
	"github.com/neubot/neubot/testserver/bittorrent"
	"github.com/neubot/neubot/testserver/ndt7"
	"github.com/neubot/neubot/testserver/speedtest"
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
	reg       *prometheus.Registry
	bt        *bittorrent.Provider // nil when the test is not offered
}

// New builds the service; Run delivers records, Close releases the spool.
func New(cfg Config) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ID == "" {
		return nil, errors.New("testserver: an ID is required")
	}
	if cfg.Negotiator.TestTimeouts == nil {
		cfg.Negotiator.TestTimeouts = map[string]time.Duration{schemas.BitTorrentName: btspec.TestTimeout}
	}
	fw, err := ingest.OpenForwarder(cfg.SpoolDir, cfg.CollectorURL, cfg.Logger)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, neg: testserver.NewNegotiator(cfg.Negotiator), forwarder: fw, mux: http.NewServeMux(), reg: prometheus.NewRegistry()}

	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "neubot_testserver_negotiation_events_total",
		Help: "Negotiation events: negotiated, unchoked, done, revoked, queue_expired, rate_limited, queue_full.",
	}, []string{"event"})
	bytesTotal := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "neubot_testserver_payload_bytes_total",
		Help: "Test payload bytes by direction (sent = download, received = upload).",
	}, []string{"direction"})
	forwarded := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "neubot_testserver_forward_records_total",
		Help: "Records handed to the collector: forwarded, retry (per attempt), refused.",
	}, []string{"event"})
	subtests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "neubot_testserver_ndt7_subtests_total",
		Help: "ndt7 subtests finished, by test (download, upload), result (ok, failed) and access (token, untokened).",
	}, []string{"test", "result", "access"})
	s.reg.MustRegister(events, bytesTotal, forwarded, subtests,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "neubot_testserver_tests_active", Help: "Tests running now."},
			func() float64 { a, _, _ := s.neg.Load(); return float64(a) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "neubot_testserver_tests_queued", Help: "Agents waiting for a slot."},
			func() float64 { _, q, _ := s.neg.Load(); return float64(q) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "neubot_testserver_forward_pending_records", Help: "Records spooled, not yet accepted by the collector."},
			func() float64 { return float64(fw.Pending()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
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
	onBytes := func(s, r int64) {
		if s > 0 {
			sent.Add(float64(s))
		}
		if r > 0 {
			recv.Add(float64(r))
		}
	}
	st := speedtest.NewProvider(speedtest.Provider{
		Negotiator: s.neg,
		ServerID:   cfg.ID,
		Peer:       cfg.Peer,
		Version:    cfg.Version,
		Forward:    forward,
		Logger:     cfg.Logger,
		OnBytes:    onBytes,
	})
	nd := ndt7.NewProvider(ndt7.Provider{
		Negotiator: s.neg, ServerID: cfg.ID, Peer: cfg.Peer, Version: cfg.Version, Forward: forward, Logger: cfg.Logger,
		OnBytes: onBytes, Duration: cfg.NDT7Duration, AllowUntokened: cfg.NDT7AllowUntokened,
		OnSubtest: func(kind string, ok, tokened bool) {
			result, access := "ok", "token"
			if !ok {
				result = "failed"
			}
			if !tokened {
				access = "untokened"
			}
			subtests.WithLabelValues(kind, result, access).Inc()
		},
	})
	s.mux.HandleFunc("POST "+spec.NegotiatePath, s.negotiate(""))
	s.mux.HandleFunc("POST "+ndt7spec.NegotiatePath, s.negotiate(""))
	st.Routes(s.mux)
	nd.Routes(s.mux)
	if cfg.BitTorrentListen != "" || cfg.NeutralListen != "" {
		s.bt = bittorrent.NewProvider(bittorrent.Provider{
			Negotiator: s.neg, ServerID: cfg.ID, Version: cfg.Version, Forward: forward, Logger: cfg.Logger, OnBytes: onBytes,
		})
		if err := s.bt.Listen(cfg.BitTorrentListen, cfg.NeutralListen); err != nil {
			fw.Close()
			return nil, err
		}
		s.mux.HandleFunc("POST "+btspec.NegotiatePath, s.negotiate(schemas.BitTorrentName))
		s.bt.Routes(s.mux)
	}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
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
	tests := []string{schemas.SpeedtestName, schemas.NDT7Name}
	if s.bt != nil {
		tests = append(tests, schemas.BitTorrentName)
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
	if s.bt == nil {
		return 0, 0
	}
	return s.bt.Ports()
}

// Close stops the BitTorrent listeners and keeps undelivered records on
// disk for the next start.
func (s *Service) Close() error {
	if s.bt != nil {
		s.bt.Close()
	}
	return s.forwarder.Close()
}

// negotiate handles the negotiate requests of test (the speedtest's path
// serves the default, "").
func (s *Service) negotiate(test string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { s.negotiateTest(w, r, test) }
}

func (s *Service) negotiateTest(w http.ResponseWriter, r *http.Request, test string) {
	var req negotiate.Request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, negotiate.MaxBody))
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, negotiate.Error{Error: fmt.Sprintf("bad negotiate request: %v", err)})
		return
	}
	if len(req.Token) > negotiate.MaxTokenBytes || len(req.MeasurementUID) > negotiate.MaxUIDBytes {
		writeJSON(w, http.StatusBadRequest, negotiate.Error{Error: "token or measurement_uid too long"})
		return
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	n, err := s.neg.NegotiateTest(r.Context(), test, req.Token, req.MeasurementUID, host)
	if err != nil {
		code := testserver.StatusOf(err)
		if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", strconv.Itoa(5))
		}
		writeJSON(w, code, negotiate.Error{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, negotiate.Response{
		Token: n.Session.Token, Unchoked: n.Unchoked, QueuePos: n.QueuePos, TTLS: n.TTL.Seconds(),
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
