package testserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/neubot/neubot/schemas"
)

// Test names a test of the test server (its schemas name, e.g.
// schemas.SpeedtestName): the class of the tokens negotiated for it. A
// token negotiated at one test's negotiate path authorizes that test's
// requests only.
type Test string

// Mux is where a provider registers its endpoints, with method patterns
// ("GET /ndt/v7/download").
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Spec is what the service needs to know of a provider to serve it.
type Spec struct {
	// Name is the test's name (a registered test of schemas).
	Name Test
	// NegotiatePath is where agents negotiate the test (POST; the
	// negotiation of proto/negotiate); CollectPath is where they post
	// their record, which the provider's Merge completes.
	NegotiatePath, CollectPath string
	// MaxCollectBody bounds the record posted to CollectPath.
	MaxCollectBody int64
	// TestTimeout is the per-test timer (0: the negotiator's default).
	TestTimeout time.Duration
}

// Provider is the server side of one test. The service negotiates it, routes
// its requests, and collects it: the client's record posted to CollectPath
// gets the server's envelope (Merge's caller sets server.id, .version,
// .peer and .client_address), then the provider's own view (Merge), then is
// validated, spooled for the collector and sent back. Providers are made by
// the constructors of testserver/registry.
type Provider interface {
	Spec() Spec
	// Routes registers the test's own endpoints (not the negotiate and
	// collect paths, which the service serves).
	Routes(mux Mux)
	// Merge puts the server's view of session s into rec, the client's
	// record. An error refuses the record: a *Refusal says with which
	// status, any other error is a 400.
	Merge(rec *schemas.Record, s *Session) error
	// Close releases what the provider holds (listeners, goroutines).
	Close() error
}

// Env is what the service gives every provider's constructor.
type Env struct {
	Negotiator *Negotiator
	ServerID   string
	Version    string
	// Peer: the server is a volunteer's agent serving other agents.
	Peer    bool
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	// OnBytes counts payload bytes sent and received, for metrics.
	OnBytes func(sent, received int64)
	// Settings are the command line's settings of particular tests.
	Settings Settings
}

// WithDefaults returns e with what a provider may be given unset filled
// in: a logger that discards and a byte counter that counts nothing.
// Providers embed the Env they were made with, so their Negotiator, Logger
// and OnBytes are the service's.
func (e Env) WithDefaults() Env {
	if e.Logger == nil {
		e.Logger = slog.New(slog.DiscardHandler)
	}
	if e.OnBytes == nil {
		e.OnBytes = func(int64, int64) {}
	}
	return e
}

// Settings of particular tests, from the command line.
type Settings struct {
	// NDT7Duration is the length of each ndt7 subtest (0: the
	// specification's); NDT7AllowUntokened lets stock ndt7 clients test
	// without a token.
	NDT7Duration       time.Duration
	NDT7AllowUntokened bool
	// BitTorrentListen and NeutralListen are the addresses of the
	// BitTorrent test's raw listeners; both empty: the test is not offered.
	BitTorrentListen, NeutralListen string
	// WebListen is the BitTorrent test's web-port listener (e.g. :443;
	// empty: no web-port flows); BitTorrentHosts more IP addresses to
	// listen on with the same ports, over which a test spreads its flows.
	WebListen       string
	BitTorrentHosts []string
	// ReplayListen is the replay test's raw listener (empty: the replay
	// test is not offered).
	ReplayListen string
}

// ErrNotOffered is what a constructor returns when its test is not offered
// with the settings given (e.g. BitTorrent without listeners).
var ErrNotOffered = errors.New("test not offered")

// Refusal is a Merge error with its HTTP status.
type Refusal struct {
	Status int
	Msg    string
}

func (r *Refusal) Error() string { return r.Msg }

// Refuse returns a *Refusal.
func Refuse(status int, format string, args ...any) error {
	return &Refusal{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// CollectHandler is the collect endpoint of p, the same for every test:
// authorize the token for p's test, decode the client's record, set the
// server's envelope, merge p's view, then Deliver to forward.
func CollectHandler(p Provider, env Env, forward func(*schemas.Record) error) http.Handler {
	spec := p.Spec()
	n := env.Negotiator
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, rec := n.Collected(w, r, spec.Name, spec.MaxCollectBody)
		if rec == nil {
			return
		}
		rec.Server.ID, rec.Server.Version, rec.Server.Peer = env.ServerID, env.Version, env.Peer
		rec.Server.ClientAddress = s.ClientAddr
		if err := p.Merge(rec, s); err != nil {
			code := http.StatusBadRequest
			var refusal *Refusal
			if errors.As(err, &refusal) {
				code = refusal.Status
			}
			Fail(w, code, "%v", err)
			return
		}
		n.Deliver(w, r, s, rec, forward, env.Logger)
	})
}

// KeysOf is what a provider's Merge starts with: the record's test keys
// as the provider's type K, or the refusal (400) of a record of another
// test at its collect path, naming the tests the path takes.
func KeysOf[K any](rec *schemas.Record, names ...string) (K, error) {
	keys, ok := rec.TestKeys.(K)
	if !ok {
		return keys, Refuse(http.StatusBadRequest, "test_name must be %s", strings.Join(names, " or "))
	}
	return keys, nil
}
