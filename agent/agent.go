// Package agent is the volunteer's daemon: it tests at random times (or on
// a cron schedule), only after the volunteer was informed and chose, keeps
// every result in a local SQLite store, uploads results to the collector
// through a spool that survives restarts and outages, and serves a JSON API
// and the web UI on loopback (see API.md).
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/neubot/neubot/agent/peer"
	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/registry"
	"github.com/neubot/neubot/internal/token"
	"github.com/neubot/neubot/internal/version"
	"github.com/neubot/neubot/proto/ingest"
	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/schemas"
)

// Options configure an agent.
type Options struct {
	// StateDir holds config.json, state.json, results.db and the upload spool.
	StateDir string
	// CollectorURL receives results and answers rendezvous ("": local only).
	CollectorURL string
	// ServerURL is a fixed test server ("": ask the collector's rendezvous).
	ServerURL string
	// PublicAPIURL is Neubot's public query API, for the comparison with
	// the volunteer's provider ("": no comparison).
	PublicAPIURL string
	Logger       *slog.Logger
	// Rand drives the schedule (nil: seeded from the clock); Tests maps
	// test names to measurers (nil: every test of the registry). Runs
	// take the tests in turn: the speedtest, then the others by name.
	Rand  *mrand.Rand
	Tests map[string]plugin.Measurer
	// HTTPClient is used for rendezvous (nil: a default with timeouts).
	HTTPClient *http.Client
	// PeerListen is where other agents' tests arrive when the volunteer
	// serves peers (Config.ServePeers), e.g. ":9777"; "" disables serving.
	// PeerPort is the port other agents reach, if a router forwards
	// another one (0: PeerListen's).
	PeerListen string
	PeerPort   int
	// RemotePassword, when set, opens the local API to other machines
	// (neubot agent --allow-remote): every request must then carry it
	// (HTTP Basic authentication, any user name), from any address and for
	// any Host. At least MinRemotePassword characters.
	RemotePassword string
	// OnUpload, when set, hears each delivery attempt of the upload spool
	// (ingest.Forwarder.OnEvent: "forwarded", "retry", "refused",
	// "withheld" while consent is revoked), e.g. for tests to wait on.
	OnUpload func(event string, records int)
	// OnSchedule, when set, hears each time Run draws the next test's time
	// (the zero time: none is due: paused, no consent, cap reached), e.g.
	// for tests to wait on instead of sleeping.
	OnSchedule func(next time.Time)
}

// MinRemotePassword is the shortest RemotePassword accepted.
const MinRemotePassword = 12

// Agent is a running agent.
type Agent struct {
	opts  Options
	log   *slog.Logger
	store *Store
	fw    *ingest.Forwarder
	csrf  string
	http  *http.Client

	mu       sync.Mutex
	cfg      Config
	st       state
	running  bool
	progress *Progress
	nextTest time.Time
	lastErr  string
	latest   string // the newest agent release the collector announced ("": none)
	lastTest time.Time
	busyTill time.Time
	backoff  time.Duration
	turn     int // how many tests were started: the next test's turn
	rng      *mrand.Rand
	ctx      context.Context // tests started by the API run on it; Close ends it
	cancel   context.CancelFunc
	testStop context.CancelFunc // cancels the running test (consent revoked)
	wake     chan struct{}
	testDone chan struct{}
	wg       sync.WaitGroup

	peerMu  sync.Mutex                  // serialises starting and stopping peerSrv
	peerSrv atomic.Pointer[peer.Server] // serving peers; nil when not
	peerErr string                      // why serving peers failed to start
	daemon  bool                        // Run is running: serving peers is possible
}

// Progress is the live state of a running test, for the UI.
type Progress struct {
	Test     string  `json:"test"`
	Phase    string  `json:"phase"`
	Mbps     float64 `json:"mbps"`
	Elapsed  float64 `json:"elapsed"`
	QueuePos int     `json:"queue_pos"`
	Message  string  `json:"message"`
}

// New opens the agent's state (creating it on first start).
func New(opts Options) (*Agent, error) {
	if opts.StateDir == "" {
		return nil, errors.New("agent: no state directory")
	}
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Rand == nil {
		opts.Rand = mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 0x6e6575626f74))
	}
	if opts.Tests == nil {
		opts.Tests = map[string]plugin.Measurer{}
		for _, name := range registry.Defaults() {
			opts.Tests[name], _ = registry.New(name)
		}
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	a := &Agent{opts: opts, log: opts.Logger, cfg: DefaultConfig(), rng: opts.Rand, http: opts.HTTPClient,
		wake: make(chan struct{}, 1), testDone: make(chan struct{}, 1)}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	if err := readJSON(a.path("config.json"), &a.cfg); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := a.cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent: config.json: %w", err)
	}
	if err := readJSON(a.path("state.json"), &a.st); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if _, err := uuid.Parse(a.st.AgentID); err != nil || a.st.PeerID == "" {
		if err != nil {
			a.st.AgentID = uuid.NewString() // first start: a random identity, nothing personal
		}
		if a.st.PeerID == "" {
			a.st.PeerID = "peer-" + token.Hex(8)
		}
		if err := writeJSON(a.path("state.json"), &a.st); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	a.csrf = token.Hex(16)
	st, err := OpenStore(a.path("results.db"))
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.store = st
	fw, err := ingest.OpenForwarder(a.path("upload-spool"), opts.CollectorURL, opts.Logger)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	fw.Allow = a.mayUpload
	fw.Delivered = a.delivered
	if opts.OnUpload != nil {
		fw.OnEvent = opts.OnUpload
	}
	a.fw = fw
	if rs, err := st.Results(context.Background(), 1); err == nil && len(rs) > 0 {
		a.lastTest = rs[0].StartTime
	}
	return a, nil
}

func (a *Agent) path(name string) string { return filepath.Join(a.opts.StateDir, name) }

// AgentID is the agent's random identity.
func (a *Agent) AgentID() string { return a.st.AgentID }

// CSRFToken is the token state-changing API requests must carry.
func (a *Agent) CSRFToken() string { return a.csrf }

func (a *Agent) mayUpload() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st.Consent.Decided && a.st.Consent.Informed && a.st.Consent.CanCollect
}

func (a *Agent) delivered(records [][]byte) {
	var uids []string
	for _, r := range records {
		var env struct {
			UID string `json:"measurement_uid"`
		}
		if json.Unmarshal(r, &env) == nil {
			uids = append(uids, env.UID)
		}
	}
	if err := a.store.MarkUploaded(context.Background(), uids); err != nil {
		a.log.Warn("agent: cannot mark results uploaded", "err", err)
	}
}

// consentOK reports whether tests may run.
func (a *Agent) consentOK() bool { return a.mayUpload() }

// SetConsent records the volunteer's choice. Revoking collection stops
// tests and uploads at once.
func (a *Agent) SetConsent(informed, canCollect, canPublish bool) error {
	a.mu.Lock()
	a.st.Consent.Decided = true
	a.st.Consent.Informed = informed
	a.st.Consent.CanCollect = informed && canCollect
	a.st.Consent.CanPublish = informed && canCollect && canPublish
	a.st.Consent.At = time.Now().UTC()
	err := writeJSON(a.path("state.json"), &a.st)
	if !a.st.Consent.CanCollect && a.testStop != nil {
		a.testStop() // revoked: the running test stops too
	}
	a.mu.Unlock()
	a.applyPeers()
	a.poke()
	return err
}

// Config returns the current configuration.
func (a *Agent) Config() Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

// SetConfig validates, saves and applies a configuration.
func (a *Agent) SetConfig(c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	a.mu.Lock()
	err := writeJSON(a.path("config.json"), &c)
	if err == nil {
		a.cfg = c
	}
	a.mu.Unlock()
	a.applyPeers()
	a.poke()
	return err
}

// applyPeers starts, adjusts or stops serving peers to match the
// configuration and consent: only while the daemon runs, with a listen
// address, after the volunteer opted in.
func (a *Agent) applyPeers() {
	a.peerMu.Lock()
	defer a.peerMu.Unlock()
	cfg := a.Config()
	a.mu.Lock()
	daemon := a.daemon
	a.mu.Unlock()
	// Pausing the agent pauses serving too.
	want := cfg.ServePeers && !cfg.Paused && daemon && a.consentOK() && a.opts.PeerListen != ""
	srv := a.peerSrv.Load()
	switch {
	case want && srv == nil:
		s, err := peer.Start(peer.Options{
			Listen: a.opts.PeerListen, PublicPort: a.opts.PeerPort, CollectorURL: a.opts.CollectorURL,
			StateDir: a.opts.StateDir, ID: a.st.PeerID, Version: version.Version, Logger: a.log,
		}, cfg.PeerCaps)
		if err != nil {
			a.log.Error("agent: cannot serve peers", "err", err)
			a.setPeerErr(err.Error())
			return
		}
		a.peerSrv.Store(s)
		a.setPeerErr("")
	case want:
		if err := srv.SetCaps(cfg.PeerCaps); err != nil {
			a.setPeerErr(err.Error())
		}
	case srv != nil:
		a.peerSrv.Store(nil) // the status stops showing it at once
		if err := srv.Close(); err != nil {
			a.log.Warn("agent: stopping serving peers", "err", err)
		}
		a.setPeerErr("")
	case cfg.ServePeers && a.opts.PeerListen == "":
		a.setPeerErr("this agent was started without a peer listen address (--peer-listen)")
	default:
		a.setPeerErr("")
	}
}

func (a *Agent) setPeerErr(s string) {
	a.mu.Lock()
	a.peerErr = s
	a.mu.Unlock()
}

// peerStatus is what the volunteer sees of serving peers (nil: not
// serving).
func (a *Agent) peerStatus() (*peer.Status, string) {
	srv := a.peerSrv.Load() // not under peerMu: stopping takes seconds
	a.mu.Lock()
	msg := a.peerErr
	a.mu.Unlock()
	if srv == nil {
		return nil, msg
	}
	st := srv.Status()
	return &st, msg
}

func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Errors of StartTest.
var (
	ErrNoConsent  = errors.New("consent required: the volunteer has not allowed tests")
	ErrRunning    = errors.New("a test is already running")
	ErrCapReached = errors.New("the monthly data cap is reached")
)

func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// capReached reports whether this month's tests used up the cap.
func (a *Agent) capReached(ctx context.Context) (bool, int64, int64) {
	capMB := a.Config().MonthlyCapMB
	used, err := a.store.BytesSince(ctx, monthStart(time.Now()))
	if err != nil {
		a.log.Warn("agent: cannot read data usage", "err", err)
	}
	return capMB > 0 && used >= capMB*1_000_000, used, capMB * 1_000_000
}

// StartTest starts a test in the background; done (if not nil) receives
// its outcome.
func (a *Agent) StartTest(ctx context.Context, done chan<- error) error {
	if !a.consentOK() {
		return ErrNoConsent
	}
	if reached, _, _ := a.capReached(ctx); reached {
		return ErrCapReached
	}
	a.mu.Lock()
	if a.running {
		a.mu.Unlock()
		return ErrRunning
	}
	a.running = true
	// The speedtest first, then the others by name.
	names := make([]string, 0, len(a.opts.Tests))
	for n := range a.opts.Tests {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == schemas.SpeedtestName) != (names[j] == schemas.SpeedtestName) {
			return names[i] == schemas.SpeedtestName
		}
		return names[i] < names[j]
	})
	test := names[a.turn%len(names)]
	a.turn++
	a.progress = &Progress{Test: test, Phase: "rendezvous"}
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		err := a.runTest(ctx, test)
		a.mu.Lock()
		a.running, a.progress = false, nil
		if err != nil {
			a.lastErr = err.Error()
		} else {
			a.lastErr = ""
		}
		a.mu.Unlock()
		if done != nil {
			done <- err
		}
		select {
		case a.testDone <- struct{}{}:
		default:
		}
	}()
	return nil
}

// rendezvous asks the collector for the test servers of test (and peers,
// if the volunteer allows them), least loaded first, itself excluded, and
// keeps what the answer says of the latest agent version.
func (a *Agent) rendezvous(ctx context.Context, test string) ([]rendezvous.ServerInfo, error) {
	if a.opts.ServerURL != "" {
		return []rendezvous.ServerInfo{{URL: a.opts.ServerURL}}, nil
	}
	rr, err := Rendezvous(ctx, a.http, a.opts.CollectorURL, rendezvous.RendezvousRequest{AgentID: a.st.AgentID, Tests: []string{test}, AgentVersion: version.Version, Peers: a.Config().TestWithPeers})
	if err != nil {
		return nil, err
	}
	latest := rr.LatestAgentVersion
	if !rendezvous.ValidVersion(latest) {
		latest = "" // nothing announced, or nothing to show the volunteer
	}
	a.mu.Lock()
	a.latest = latest
	a.mu.Unlock()
	return Candidates(rr, test, a.st.PeerID)
}

// MaxTestTime bounds one test, queueing included.
const MaxTestTime = 2 * time.Minute

// runTest runs one test end to end: rendezvous, test, store, upload.
func (a *Agent) runTest(ctx context.Context, test string) error {
	ctx, cancel := context.WithTimeout(ctx, MaxTestTime)
	defer cancel()
	a.mu.Lock()
	a.testStop = cancel
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.testStop = nil
		a.mu.Unlock()
	}()
	stop := context.AfterFunc(a.ctx, cancel) // the agent is closing
	defer stop()
	m := a.opts.Tests[test]
	candidates, err := a.rendezvous(ctx, test)
	if err != nil {
		return err
	}
	a.mu.Lock()
	consent := schemas.Consent{Informed: a.st.Consent.Informed, CanCollect: a.st.Consent.CanCollect, CanPublish: a.st.Consent.CanPublish}
	a.mu.Unlock()
	var (
		rec    *schemas.Record
		server string
		peer   bool
	)
	for i, c := range candidates {
		server, peer = c.URL, c.Peer
		agentID := a.st.AgentID
		if c.Peer {
			// A peer is another volunteer: it gets a random ID for this
			// test, not this agent's, which links every published test
			// of this volunteer.
			agentID = uuid.NewString()
		}
		rec, err = m.Run(ctx, plugin.Env{
			ServerURL: c.URL, ServerPeer: c.Peer, AgentID: agentID, AgentVersion: version.Version, Consent: consent,
			Progress: func(p plugin.Progress) {
				a.mu.Lock()
				a.progress = &Progress{Test: test, Phase: p.Phase, Mbps: p.Mbps, Elapsed: p.Elapsed, QueuePos: p.QueuePos, Message: p.Message}
				a.mu.Unlock()
			},
		})
		if err == nil || !TryNext(err) || ctx.Err() != nil || i == len(candidates)-1 {
			break
		}
		a.log.Info("agent: server busy or unreachable; trying the next", "server", c.URL, "peer", c.Peer, "err", err)
	}
	// A failure record (the test failed after it started) is stored and
	// uploaded like any other, so that published figures can be read with
	// their failure rate; not when the server was only busy, nor when the
	// agent itself stopped the test.
	keepFailure := err != nil && rec != nil && !busy(err) && a.ctx.Err() == nil && schemas.FailureOf(err) != schemas.FailureCanceled
	if err != nil && !keepFailure {
		rec = nil
	}
	if rec != nil && peer {
		// The one copy of a peer test is this agent's upload (peers
		// forward none), and what identifies people in it is this
		// agent's to say, not the peer's: its own ID and consent, the
		// peer marked as such without its ID.
		rec.AgentID, rec.Consent = a.st.AgentID, consent
		rec.Server.ID, rec.Server.Peer = schemas.PeerServerID, true
	}
	if err != nil {
		var pe *plugin.ProtocolError
		if errors.As(err, &pe) && (pe.Status == http.StatusTooManyRequests || pe.Status == http.StatusServiceUnavailable) {
			a.mu.Lock()
			a.backoff = min(max(2*a.backoff, time.Minute), time.Hour)
			a.busyTill = time.Now().Add(a.backoff)
			a.mu.Unlock()
			a.log.Info("agent: test server busy; backing off", "for", a.backoff)
		}
		a.mu.Lock()
		if a.busyTill.Before(time.Now().Add(time.Minute)) {
			// Any failure waits a minute at least: a cron schedule must
			// not retry a failing test in a tight loop.
			a.busyTill = time.Now().Add(time.Minute)
		}
		a.mu.Unlock()
		a.log.Warn("agent: test failed", "server", server, "err", err)
		if rec != nil {
			if serr := a.keep(context.WithoutCancel(ctx), rec); serr != nil {
				a.log.Warn("agent: cannot keep the failure record", "err", serr)
			}
		}
		return err
	}
	a.mu.Lock()
	a.backoff, a.busyTill = 0, time.Time{}
	a.lastTest = rec.StartTime
	a.progress = &Progress{Test: test, Phase: "store"}
	a.mu.Unlock()
	if err := a.keep(ctx, rec); err != nil {
		return err
	}
	a.log.Info("agent: test done", "measurement_uid", rec.MeasurementUID, "server", rec.Server.ID, "url", server, "peer", rec.Server.Peer)
	return nil
}

// keep stores rec and queues it for upload.
func (a *Agent) keep(ctx context.Context, rec *schemas.Record) error {
	if err := a.store.Add(ctx, rec); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if a.opts.CollectorURL != "" && a.mayUpload() {
		if err := a.fw.Enqueue(ctx, rec); err != nil {
			return fmt.Errorf("upload spool: %w", err)
		}
	}
	return nil
}

// busy says whether err is a server's "busy, come back later".
func busy(err error) bool {
	var pe *plugin.ProtocolError
	return errors.As(err, &pe) && (pe.Status == http.StatusTooManyRequests || pe.Status == http.StatusServiceUnavailable)
}

// Run schedules tests and uploads results until ctx ends.
func (a *Agent) Run(ctx context.Context) {
	a.mu.Lock()
	a.daemon = true
	a.mu.Unlock()
	a.applyPeers()
	defer func() {
		a.mu.Lock()
		a.daemon = false
		a.mu.Unlock()
		a.applyPeers()
	}()
	if a.opts.CollectorURL != "" {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.fw.Run(ctx) }()
	}
	prune := time.NewTicker(6 * time.Hour)
	defer prune.Stop()
	a.prune(ctx)
	for {
		next := a.schedule(ctx)
		if a.opts.OnSchedule != nil {
			a.opts.OnSchedule(next)
		}
		var timer <-chan time.Time
		var t *time.Timer
		if !next.IsZero() {
			t = time.NewTimer(time.Until(next))
			timer = t.C
		}
		select {
		case <-ctx.Done():
			a.wg.Wait()
			return
		case <-a.wake:
		case <-a.testDone:
		case <-prune.C:
			a.prune(ctx)
		case <-timer:
			if err := a.StartTest(ctx, nil); err != nil {
				if !errors.Is(err, ErrRunning) {
					a.log.Info("agent: scheduled test not run", "reason", err)
				}
			} else {
				// Wait for it before drawing the next time.
				select {
				case <-a.testDone:
				case <-ctx.Done():
				}
			}
		}
		if t != nil {
			t.Stop()
		}
	}
}

// schedule computes (and publishes) the time of the next test; zero when
// none is due (paused, no consent, cap reached).
func (a *Agent) schedule(ctx context.Context) time.Time {
	reached, _, _ := a.capReached(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	consent := a.st.Consent.Decided && a.st.Consent.CanCollect
	if a.cfg.Paused || !consent || reached {
		a.nextTest = time.Time{}
		return a.nextTest
	}
	now := time.Now()
	next := nextTestTime(a.cfg, now, a.lastTest, a.rng)
	if next.Before(a.busyTill) {
		next = a.busyTill
	}
	a.nextTest = next
	return next
}

func (a *Agent) prune(ctx context.Context) {
	days := a.Config().RetentionDays
	if n, err := a.store.Prune(ctx, time.Now().AddDate(0, 0, -days)); err != nil {
		a.log.Warn("agent: prune", "err", err)
	} else if n > 0 {
		a.log.Info("agent: old results deleted", "results", n, "retention_days", days)
	}
}

// RunOnce runs one test now and waits for it and, within wait, for its
// upload: `neubot agent --once`.
func (a *Agent) RunOnce(ctx context.Context, wait time.Duration) error {
	done := make(chan error, 1)
	if err := a.StartTest(ctx, done); err != nil {
		return err
	}
	if err := <-done; err != nil {
		return err
	}
	if a.opts.CollectorURL == "" || !a.mayUpload() {
		return nil
	}
	uctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	go a.fw.Run(uctx)
	a.fw.Drain(uctx)
	if n := a.fw.Pending(); n > 0 {
		a.log.Info("agent: results kept for upload at the next start", "records", n)
	}
	return nil
}

// Results returns the newest stored results first.
func (a *Agent) Results(ctx context.Context, limit int) ([]Result, error) {
	return a.store.Results(ctx, limit)
}

// Close waits for a running test and closes the store and the spool;
// pending uploads stay on disk.
func (a *Agent) Close() error {
	a.cancel()
	a.mu.Lock()
	a.daemon = false
	a.mu.Unlock()
	a.applyPeers() // stops serving peers
	a.wg.Wait()
	return errors.Join(a.fw.Close(), a.store.Close())
}
