// Package collector receives measurement records, keeps them in a
// write-ahead spool and loads them into ClickHouse.
//
// The flow of one record: POST /api/v1/measurements (NDJSON, gzip allowed) →
// strict validation (schemas) → append to the spool, fsync → 202 → the loader
// annotates it (ASN, organisation, country, truncated prefix from the client
// address, which is then dropped) and batch-inserts it into its test's table.
// Nothing acknowledged is lost: the spool survives crashes and segments are
// deleted only after their insert succeeded; measurement_uid makes replays
// harmless.
package collector

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/collector/annotate"
	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/internal/ratelimit"
	"github.com/neubot/neubot/internal/spool"
	"github.com/neubot/neubot/proto/ingest"
	"github.com/neubot/neubot/proto/rendezvous"
)

// Config configures a collector.
type Config struct {
	// SpoolDir holds the write-ahead spool; it must not be shared.
	SpoolDir string
	Spool    spool.Options
	// ClickHouse says where to load records.
	ClickHouse chdb.Options
	// IPDB annotates client addresses; nil leaves records unannotated
	// (tests only: the server command always loads one).
	IPDB *annotate.DB
	// Body limits; defaults when 0.
	MaxBodyBytes    int64
	MaxDecodedBytes int64
	MaxLines        int
	// MaxConcurrent bounds the ingest requests decoded at once (default
	// 8); more get 503 with Retry-After, so that memory stays bounded.
	MaxConcurrent int
	// MaxPerAddress bounds the ingest requests in progress from one
	// address (an IPv6 /64), from the first byte of headers (default 2);
	// more get 429 with Retry-After.
	MaxPerAddress int
	// AddressBytesPerSecond and AddressBurstBytes are one address's budget
	// of decoded body bytes (a token bucket; defaults 1 MiB/s, about 400
	// speedtest records a second, and 64 MiB: a test server's forwarder
	// catching up after an outage sends 8 MiB bodies);
	// a body past it is refused whole with 429 and Retry-After.
	AddressBytesPerSecond int64
	AddressBurstBytes     int64
	// ReadTimeout bounds every read of a body (default 10 s) and is the
	// grace period before MinBodyRate applies; MinBodyRate is the least
	// average rate of a body, bytes a second (default 4096). A slower body
	// gets 408 and its connection is closed.
	ReadTimeout time.Duration
	MinBodyRate int64
	// PrereadBytes of a body are read before it takes an ingest slot
	// (default 1 MiB): a smaller body is read whole without one, however
	// slowly it comes; a larger one must then keep up MinBodyRate at once.
	PrereadBytes int64
	// SlotWait is how long a request waits for an ingest slot, in
	// arrival order, before it gets 503 (default 1 s).
	SlotWait time.Duration
	// MaxPartitionsPerInsert bounds the months (partitions) of one insert
	// (default 100, ClickHouse's max_partitions_per_insert_block).
	MaxPartitionsPerInsert int
	// MaxStartAge is the oldest start_time accepted, before the receive
	// time (default DefaultMaxStartAge, 400 days); older lines get 400.
	MaxStartAge time.Duration
	Logger      *slog.Logger
	// RegisterToken, when set, is the bearer token test servers must
	// present to register (Authorization: Bearer <token>).
	RegisterToken string
	// NoPeers turns peer-to-peer mode off: peer registrations get 403 and
	// rendezvous answers list no peers.
	NoPeers bool
	// PeerNetworks are networks peers may register from besides the
	// public Internet (loopback for a demo on one machine, a test's
	// namespaces); by default, private and special addresses are refused.
	PeerNetworks []netip.Prefix
	// TrustProxy takes a peer's address from X-Forwarded-For: only
	// behind the operator's own proxy or load balancer, which must set it.
	TrustProxy bool
	// Enrolled is the operator's allow-list of test servers
	// (spec/trust.md): only they may register, and only records signed by
	// one of them are verified (authoritative, published). nil admits
	// nobody.
	Enrolled *identity.AllowList
	// Key is the collector's own identity, published at
	// schemas.IdentityPath; nil: a new one for this process (tests).
	Key *identity.Key
	// PseudonymSecret keys the published agent pseudonyms
	// (HMAC-SHA256 per agent and month); nil: a random one for this
	// process (tests). Collectors of one platform share it.
	PseudonymSecret []byte
	// Limits is the abuse limits of ingest; zero values: no limit.
	Limits Limits
	// LatestAgentVersion, when set, is announced in every rendezvous
	// answer (rendezvous.RendezvousResponse.LatestAgentVersion), so that
	// older agents tell their volunteers a newer version exists.
	LatestAgentVersion string
}

// Collector is the ingest service. Create it with New, serve Handler, run
// Run, and Close it on shutdown.
type Collector struct {
	cfg     Config
	log     *slog.Logger
	spool   *spool.Spool
	ipdb    *annotate.DB
	metrics *metrics
	router  http.Handler
	rdv     registry // the rendezvous's live test servers (soft state)

	connMu            sync.Mutex
	ch                driver.Conn
	hasPartitionLimit bool          // the server knows max_partitions_per_insert_block
	slots             chan struct{} // ingest requests in progress

	peerSlots chan struct{}      // peers' reachability checks in progress
	peerRate  *ratelimit.Limiter // peers' registrations per address

	perAddr  *ratelimit.Concurrency   // ingest requests in progress per address (/64)
	volume   *ratelimit.Limiter       // ingest decoded bytes per address (/64)
	requests *identity.Verifier       // signed requests of enrolled servers
	records  *identity.RecordVerifier // signed records
	limits   *limiter                 // ingest rate limits
}

// New opens the spool (replaying what a previous run left) and builds the
// HTTP handler. It does not need ClickHouse to be up.
func New(cfg Config) (*Collector, error) {
	if cfg.SpoolDir == "" {
		return nil, errors.New("collector: no spool directory")
	}
	if cfg.LatestAgentVersion != "" && !rendezvous.ValidVersion(cfg.LatestAgentVersion) {
		return nil, fmt.Errorf("collector: latest agent version %q: want 1 to %d bytes of A-Z a-z 0-9 . + ~ -, starting with a digit", cfg.LatestAgentVersion, rendezvous.MaxVersionBytes)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxDecodedBytes == 0 {
		cfg.MaxDecodedBytes = DefaultMaxDecodedBytes
	}
	if cfg.MaxLines == 0 {
		cfg.MaxLines = DefaultMaxLines
	}
	if cfg.MaxConcurrent == 0 {
		cfg.MaxConcurrent = 8
	}
	if cfg.MaxPerAddress == 0 {
		cfg.MaxPerAddress = 2
	}
	if cfg.PrereadBytes == 0 {
		cfg.PrereadBytes = 1 << 20
	}
	if cfg.SlotWait == 0 {
		cfg.SlotWait = time.Second
	}
	if cfg.AddressBytesPerSecond == 0 {
		cfg.AddressBytesPerSecond = 1 << 20
	}
	if cfg.AddressBurstBytes == 0 {
		cfg.AddressBurstBytes = 64 << 20
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = 10 * time.Second
	}
	if cfg.MinBodyRate == 0 {
		cfg.MinBodyRate = 4096
	}
	if cfg.MaxPartitionsPerInsert == 0 {
		cfg.MaxPartitionsPerInsert = DefaultMaxPartitionsPerInsert
	}
	if cfg.MaxStartAge == 0 {
		cfg.MaxStartAge = DefaultMaxStartAge
	}
	if cfg.Key == nil {
		cfg.Key = identity.NewKey()
	}
	if len(cfg.PseudonymSecret) == 0 {
		cfg.PseudonymSecret = make([]byte, 32)
		_, _ = rand.Read(cfg.PseudonymSecret)
	}
	if cfg.Enrolled == nil {
		cfg.Enrolled = identity.StaticAllowList()
	}
	cfg.Spool.Logger = cfg.Logger
	sp, err := spool.Open(cfg.SpoolDir, cfg.Spool)
	if err != nil {
		return nil, err
	}
	c := &Collector{cfg: cfg, log: cfg.Logger, spool: sp, ipdb: cfg.IPDB, slots: make(chan struct{}, cfg.MaxConcurrent), peerSlots: make(chan struct{}, MaxPeerChecks),
		peerRate: ratelimit.New(1, 10), perAddr: ratelimit.NewConcurrency(cfg.MaxPerAddress),
		volume:   ratelimit.New(float64(cfg.AddressBytesPerSecond), int(cfg.AddressBurstBytes)),
		requests: &identity.Verifier{Allow: cfg.Enrolled}, records: &identity.RecordVerifier{Allow: cfg.Enrolled},
		limits: newLimiter(cfg.Limits)}
	c.metrics = newMetrics(sp)
	r := httpx.NewMux()
	r.HandleFunc("POST "+ingest.Path, c.limitIngest(c.handleIngest))
	r.HandleFunc("GET "+rendezvous.IdentityPath, func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, rendezvous.CollectorIdentity{Key: cfg.Key.Public()})
	})
	r.HandleFunc("POST "+rendezvous.RegisterPath, c.handleRegister)
	r.HandleFunc("POST "+rendezvous.RendezvousPath, c.handleRendezvous)
	r.HandleFunc("POST "+rendezvous.PeerRegisterPath, c.handlePeerRegister)
	r.Handle("GET /metrics", c.metrics.reg.Handler())
	r.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	c.router = r
	return c, nil
}

// Handler is the collector's HTTP API.
func (c *Collector) Handler() http.Handler { return c.router }

// Run loads the spool into ClickHouse until ctx ends.
func (c *Collector) Run(ctx context.Context) {
	c.runLoader(ctx)
}

// Drain seals the active segment and loads everything spooled, for at most
// until ctx ends; what is left stays in the spool for the next start. Call
// it after the HTTP server stopped accepting and Run returned.
func (c *Collector) Drain(ctx context.Context) {
	c.spool.Flush(ctx)
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		c.spool.WaitLoaded(dctx)
		cancel()
	}()
	c.runLoader(dctx)
}

// WaitLoaded seals the active segment and waits, while Run loads, until
// nothing spooled is left to load (everything acknowledged so far is in
// ClickHouse, or quarantined), the spool closed or ctx ended; it reports
// whether nothing is left.
func (c *Collector) WaitLoaded(ctx context.Context) bool {
	c.spool.Flush(ctx)
	return c.spool.WaitLoaded(ctx)
}

// Close closes the spool and the ClickHouse connection.
func (c *Collector) Close() error {
	err := c.spool.Close()
	c.dropConn()
	return err
}

// SpoolStats reports the spool's depth (for tests and status pages).
func (c *Collector) SpoolStats() (bytes int64, records int, oldest time.Time) {
	return c.spool.Stats()
}
