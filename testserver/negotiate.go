package testserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/neubot/neubot/internal/clock"
	"github.com/neubot/neubot/internal/ratelimit"
	"github.com/neubot/neubot/internal/token"
	"github.com/neubot/neubot/proto/negotiate"
)

// The negotiator is the white list of the Neubot paper. An agent asks for a
// slot; it gets a random token and either starts at once or waits its turn
// in FIFO order, long-polling. At most Capacity tests run at once. A per-test
// timer revokes a token whose test takes too long, and every test endpoint
// refuses a missing, unknown or expired token.

// Errors of Authorize, mapped to status codes by the handlers.
var (
	ErrNoToken      = errors.New("no token: negotiate first")
	ErrUnknownToken = errors.New("unknown or expired token")
	ErrNotYourTurn  = errors.New("token is queued: wait until unchoked")
)

// State of a session.
type State int

// States of a session.
const (
	Queued State = iota
	Active
	Done
	Revoked
)

// Session is one negotiated test: its token, its place, its client, and
// whatever the test's provider wants to keep about it (View).
type Session struct {
	Token          string
	ClientAddr     string
	MeasurementUID string
	// Test is the test negotiated.
	Test Test

	mu       sync.Mutex
	state    State
	lastSeen time.Time
	started  time.Time
	unchoked chan struct{}
	timer    clock.Timer
	deadline time.Time // when timer revokes an active session
	view     any
	refusal  error // why Admit refused the session

	site     string        // ratelimit.Key24 of ClientAddr
	ended    chan struct{} // closed when an active session ends
	inflight int           // transfers running (Begin)
	moved    int64         // bytes moved by its transfers (Count)
	stops    map[int]func()
	nextStop int
}

// Ended is closed when the session, once active, ends (its test collected,
// or its token revoked).
func (s *Session) Ended() <-chan struct{} { return s.ended }

// State returns the session's state.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// View returns the provider's data of this session, creating it with mk on
// first use.
func (s *Session) View(mk func() any) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.view == nil {
		s.view = mk()
	}
	return s.view
}

// NegotiatorConfig configures a Negotiator.
type NegotiatorConfig struct {
	// Capacity is how many tests may run at once (default 2).
	Capacity int
	// MaxQueue bounds the waiting agents (default 100); more get 503.
	MaxQueue int
	// TestTimeout, LongPoll and QueueGrace: see the spec (defaults there).
	TestTimeout, LongPoll, QueueGrace time.Duration
	// TestTimeouts overrides TestTimeout for the tests named (a longer
	// test needs a longer per-test timer).
	TestTimeouts map[Test]time.Duration
	// Rate and Burst limit negotiate requests per client address (default
	// 1 per second with a burst of 20).
	Rate  float64
	Burst int
	// Admit, when set, is asked before a session takes a slot, with the
	// session's test; an error refuses it instead (503 with the error's
	// text): a volunteer's peer whose day has no room left for a test.
	Admit func(test Test) error
	// MaxPerSite bounds the sessions queued or running from one site, an
	// IPv4 /24 or an IPv6 /64 (default 10): one host rotating addresses
	// cannot fill the queue. The rate limit is keyed by site too.
	MaxPerSite int
	// SessionMaxRequests bounds the transfers of one session running at
	// once (default 16); SessionMaxBytes the bytes they move in all
	// (default 256 GiB: a 20 s test at 100 Gbit/s, loopback included).
	// Checked inside transfers (Begin, Count).
	SessionMaxRequests int
	SessionMaxBytes    int64
	// Clock is the negotiator's time (default the wall clock): tests move
	// a clock.Manual instead of sleeping through the timeouts.
	Clock clock.Clock
}

// Negotiator hands out tokens and slots.
type Negotiator struct {
	cfg NegotiatorConfig

	mu      sync.Mutex
	byToken map[string]*Session
	queue   []*Session
	active  int
	limiter *ratelimit.Limiter
	onEvent func(event string) // metrics hook
	quit    chan struct{}      // closed by Close: long polls answer at once
	closed  bool
}

// NewNegotiator returns a negotiator.
func NewNegotiator(cfg NegotiatorConfig) *Negotiator {
	if cfg.Capacity <= 0 {
		cfg.Capacity = 2
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 100
	}
	if cfg.TestTimeout <= 0 {
		cfg.TestTimeout = negotiate.TestTimeout
	}
	if cfg.LongPoll <= 0 {
		cfg.LongPoll = negotiate.LongPoll
	}
	if cfg.QueueGrace <= 0 {
		cfg.QueueGrace = 2 * cfg.LongPoll
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 1
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 20
	}
	if cfg.MaxPerSite <= 0 {
		cfg.MaxPerSite = 10
	}
	if cfg.SessionMaxRequests <= 0 {
		cfg.SessionMaxRequests = 16
	}
	if cfg.SessionMaxBytes <= 0 {
		cfg.SessionMaxBytes = 256 << 30
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Wall{}
	}
	return &Negotiator{
		cfg:     cfg,
		byToken: map[string]*Session{},
		limiter: ratelimit.New(cfg.Rate, cfg.Burst),
		onEvent: func(string) {},
		quit:    make(chan struct{}),
	}
}

// Close ends the long polls in progress (they answer with the agent's
// place), so that a server shutting down is not held by waiting agents.
func (n *Negotiator) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.closed {
		n.closed = true
		close(n.quit)
	}
}

// OnEvent sets a hook called on every negotiation event (for metrics).
func (n *Negotiator) OnEvent(fn func(event string)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.onEvent = fn
}

// Load reports the running and waiting tests and the capacity.
func (n *Negotiator) Load() (active, queued, capacity int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.active, len(n.queue), n.cfg.Capacity
}

// ErrRateLimited and ErrQueueFull are returned by Negotiate.
var (
	ErrRateLimited = errors.New("too many negotiate requests from this address: slow down")
	ErrQueueFull   = errors.New("the queue is full: try again later")
	ErrSiteFull    = errors.New("too many tests queued or running from this network (IPv4 /24, IPv6 /64): try again later")
	// ErrSessionBusy and ErrSessionBytes stop a transfer past its
	// session's caps; ErrSessionEnded one whose session ended (revoked).
	ErrSessionBusy  = errors.New("too many transfers of this session at once")
	ErrSessionBytes = errors.New("this session moved all the bytes it may")
	ErrSessionEnded = errors.New("the session ended (its token was revoked)")
	// ErrRefused wraps the reason NegotiatorConfig.Admit gave.
	ErrRefused = errors.New("refused")
)

// Negotiation is the answer to a negotiate request.
type Negotiation struct {
	Session  *Session
	Unchoked bool
	QueuePos int
	TTL      time.Duration
}

func newToken() string { return token.Hex(16) }

// Negotiate is NegotiateTest for a session of the zero Test, which no
// provider serves: the negotiator's own tests use it.
func (n *Negotiator) Negotiate(ctx context.Context, token, uid, clientAddr string) (Negotiation, error) {
	return n.NegotiateTest(ctx, "", token, uid, clientAddr)
}

// NegotiateTest handles one negotiate request of test from clientAddr.
// With an empty token it enters a new session; with a known queued token
// it keeps its place. The first request answers at once; later ones, while
// the session may not start, wait up to LongPoll (or until ctx ends) for
// its turn. The session remembers the test and gets its per-test timer; a
// token of another test is unknown.
func (n *Negotiator) NegotiateTest(ctx context.Context, test Test, token, uid, clientAddr string) (Negotiation, error) {
	now := n.cfg.Clock.Now()
	site := ratelimit.Key24(clientAddr)
	if !n.limiter.Allow(site, now) {
		n.onEvent("rate_limited")
		return Negotiation{}, ErrRateLimited
	}
	n.mu.Lock()
	n.expireQueued(now)
	var s *Session
	if token != "" {
		s = n.byToken[token]
		if s == nil || s.ClientAddr != clientAddr || s.Test != test {
			n.mu.Unlock()
			return Negotiation{}, ErrUnknownToken
		}
	} else {
		if len(n.queue) >= n.cfg.MaxQueue {
			n.mu.Unlock()
			n.onEvent("queue_full")
			return Negotiation{}, ErrQueueFull
		}
		if n.siteSessions(site) >= n.cfg.MaxPerSite {
			n.mu.Unlock()
			n.onEvent("site_full")
			return Negotiation{}, ErrSiteFull
		}
		s = &Session{Token: newToken(), ClientAddr: clientAddr, MeasurementUID: uid, Test: test, unchoked: make(chan struct{}), lastSeen: now,
			site: site, ended: make(chan struct{})}
		n.byToken[s.Token] = s
		n.queue = append(n.queue, s)
		n.onEvent("negotiated")
		n.unchokeLocked()
	}
	s.mu.Lock()
	s.lastSeen = now
	s.mu.Unlock()
	n.mu.Unlock()

	// A new agent learns its place at once; later requests long-poll
	// until unchoked.
	if token != "" {
		timeout := make(chan struct{})
		t := n.cfg.Clock.AfterFunc(n.cfg.LongPoll, func() { close(timeout) })
		select {
		case <-s.unchoked:
		case <-timeout:
		case <-ctx.Done():
		case <-n.quit:
		}
		t.Stop()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	now = n.cfg.Clock.Now()
	s.lastSeen = now
	switch s.state {
	case Active:
		return Negotiation{Session: s, Unchoked: true, TTL: n.timeout(s.Test) - now.Sub(s.started)}, nil
	case Queued:
		pos := 0
		for i, q := range n.queue {
			if q == s {
				pos = i + 1
			}
		}
		return Negotiation{Session: s, QueuePos: pos, TTL: n.cfg.QueueGrace}, nil
	}
	if s.refusal != nil {
		return Negotiation{}, fmt.Errorf("%w: %w", ErrRefused, s.refusal)
	}
	return Negotiation{}, ErrUnknownToken
}

// siteSessions counts the sessions of site queued or running.
func (n *Negotiator) siteSessions(site string) int {
	k := 0
	for _, s := range n.queue {
		if s.site == site {
			k++
		}
	}
	for _, s := range n.byToken {
		if s.site == site && s.State() == Active {
			k++
		}
	}
	return k
}

// Begin takes a place for one transfer of an active session; call end when
// the transfer is over. It fails with ErrSessionBusy past
// SessionMaxRequests transfers at once, ErrSessionEnded once the session
// ended. stop, when not nil, is called once if the session ends while the
// transfer runs (its token revoked): it must make the transfer's blocked
// reads and writes return, e.g. by setting their deadlines in the past.
func (n *Negotiator) Begin(s *Session, stop func()) (end func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != Active {
		return nil, ErrSessionEnded
	}
	if s.inflight >= n.cfg.SessionMaxRequests {
		n.onEvent("session_busy")
		return nil, ErrSessionBusy
	}
	s.inflight++
	id := -1
	if stop != nil {
		if s.stops == nil {
			s.stops = map[int]func(){}
		}
		id = s.nextStop
		s.nextStop++
		s.stops[id] = stop
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.inflight--
			delete(s.stops, id)
			s.mu.Unlock()
		})
	}, nil
}

// Count adds k bytes moved by a transfer of s. An error means stop now:
// the session ended, or it moved SessionMaxBytes.
func (n *Negotiator) Count(s *Session, k int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.moved += k
	switch {
	case s.state != Active:
		return ErrSessionEnded
	case s.moved > n.cfg.SessionMaxBytes:
		n.onEvent("session_bytes")
		return fmt.Errorf("%w (%d bytes)", ErrSessionBytes, n.cfg.SessionMaxBytes)
	}
	return nil
}

// SetCapacity changes how many tests may run at once and how many agents
// may wait (each at least 1). Running tests keep their slots and waiting
// agents their place: lower limits take effect as they leave.
func (n *Negotiator) SetCapacity(capacity, maxQueue int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cfg.Capacity, n.cfg.MaxQueue = max(capacity, 1), max(maxQueue, 1)
	n.unchokeLocked()
}

// SetTestTimeout sets the per-test timer of test (d <= 0: the default).
func (n *Negotiator) SetTestTimeout(test Test, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cfg.TestTimeouts == nil {
		n.cfg.TestTimeouts = map[Test]time.Duration{}
	}
	n.cfg.TestTimeouts[test] = d
}

// timeout is the per-test timer of test.
func (n *Negotiator) timeout(test Test) time.Duration {
	if d, ok := n.cfg.TestTimeouts[test]; ok && d > 0 {
		return d
	}
	return n.cfg.TestTimeout
}

// unchokeLocked starts queued sessions while there is capacity.
func (n *Negotiator) unchokeLocked() {
	n.expireQueued(n.cfg.Clock.Now()) // never hand a slot to an agent that left
	for n.active < n.cfg.Capacity && len(n.queue) > 0 {
		s := n.queue[0]
		n.queue = n.queue[1:]
		if n.cfg.Admit != nil {
			if err := n.cfg.Admit(s.Test); err != nil {
				s.mu.Lock()
				s.state, s.refusal = Revoked, err
				close(s.unchoked)
				s.mu.Unlock()
				n.onEvent("refused")
				continue
			}
		}
		n.active++
		s.mu.Lock()
		s.state = Active
		s.started = n.cfg.Clock.Now()
		s.timer = n.cfg.Clock.AfterFunc(n.timeout(s.Test), func() { n.revoke(s) })
		s.deadline = s.started.Add(n.timeout(s.Test))
		close(s.unchoked)
		s.mu.Unlock()
		n.onEvent("unchoked")
	}
}

// expireQueued drops queued sessions whose agent stopped asking, and
// forgets finished ones after a while.
func (n *Negotiator) expireQueued(now time.Time) {
	kept := n.queue[:0]
	for _, s := range n.queue {
		s.mu.Lock()
		stale := now.Sub(s.lastSeen) > n.cfg.QueueGrace
		if stale {
			s.state = Revoked
		}
		s.mu.Unlock()
		if stale {
			n.onEvent("queue_expired")
			continue
		}
		kept = append(kept, s)
	}
	n.queue = kept
	for tok, s := range n.byToken {
		s.mu.Lock()
		old := (s.state == Done || s.state == Revoked) && now.Sub(s.lastSeen) > 10*time.Minute
		s.mu.Unlock()
		if old {
			delete(n.byToken, tok)
		}
	}
}

// revoke ends an active session whose test took too long.
func (n *Negotiator) revoke(s *Session) { n.end(s, Revoked, "revoked") }

// Release ends an active session normally (its test collected).
func (n *Negotiator) Release(s *Session) { n.end(s, Done, "done") }

// end moves an active session to state and gives its slot to the next agent.
func (n *Negotiator) end(s *Session, state State, event string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s.mu.Lock()
	if s.state != Active {
		s.mu.Unlock()
		return
	}
	s.state = state
	s.lastSeen = n.cfg.Clock.Now()
	if s.timer != nil {
		s.timer.Stop()
	}
	stops := s.stops
	s.stops = nil
	if s.ended != nil {
		close(s.ended)
	}
	s.mu.Unlock()
	n.active--
	n.onEvent(event)
	n.unchokeLocked()
	// Running transfers end now, not when they next write: a revoked
	// token moves no more bytes.
	for _, stop := range stops {
		go stop()
	}
}

// Revoke ends an active session at once, as its timer would: its running
// transfers stop (Begin's stop) and its token is refused from now on.
func (n *Negotiator) Revoke(s *Session) { n.revoke(s) }

// Withdraw takes a session that is still queued out of the queue (an
// agent that will not wait, e.g. a locate-style request answered "no
// capacity"); an active session ends as by Release.
func (n *Negotiator) Withdraw(s *Session) {
	n.mu.Lock()
	for i, q := range n.queue {
		if q == s {
			n.queue = append(n.queue[:i], n.queue[i+1:]...)
			s.mu.Lock()
			s.state = Revoked
			s.mu.Unlock()
			n.mu.Unlock()
			return
		}
	}
	n.mu.Unlock()
	n.Release(s)
}

// Extend makes the per-test timer of an active session fire no sooner
// than d from now. A test whose steps are long by design (ndt7: up to 13 s
// each) extends its session as each step starts, so that a slow link does
// not lose its token before collect.
func (n *Negotiator) Extend(s *Session, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := n.cfg.Clock.Now()
	if s.state != Active || s.timer == nil || s.deadline.Sub(now) >= d {
		return
	}
	s.deadline = now.Add(d)
	s.timer.Reset(d)
}

// Authorize returns the active session of the request's token.
func (n *Negotiator) Authorize(r *http.Request) (*Session, error) {
	h := r.Header.Get(negotiate.TokenHeader)
	tok, ok := strings.CutPrefix(h, negotiate.BearerPrefix)
	if !ok {
		return nil, ErrNoToken
	}
	return n.AuthorizeToken(tok)
}

// AuthorizeTest is Authorize for an endpoint of test: a token of another
// test is unknown here.
func (n *Negotiator) AuthorizeTest(r *http.Request, test Test) (*Session, error) {
	s, err := n.Authorize(r)
	if err == nil && s.Test != test {
		return nil, ErrUnknownToken
	}
	return s, err
}

// AuthorizeToken returns the active session of token tok, however the
// request carried it (a header, or ndt7's access_token parameter).
func (n *Negotiator) AuthorizeToken(tok string) (*Session, error) {
	if tok == "" {
		return nil, ErrNoToken
	}
	n.mu.Lock()
	s := n.byToken[tok]
	n.mu.Unlock()
	if s == nil || !token.Equal(tok, s.Token) {
		return nil, ErrUnknownToken
	}
	switch s.State() {
	case Active:
		return s, nil
	case Queued:
		return nil, ErrNotYourTurn
	}
	return nil, ErrUnknownToken
}

// StatusOf maps negotiator errors to HTTP status codes.
func StatusOf(err error) int {
	switch {
	case errors.Is(err, ErrNoToken):
		return http.StatusUnauthorized
	case errors.Is(err, ErrUnknownToken), errors.Is(err, ErrNotYourTurn):
		return http.StatusForbidden
	case errors.Is(err, ErrRateLimited), errors.Is(err, ErrSiteFull), errors.Is(err, ErrSessionBusy):
		return http.StatusTooManyRequests
	case errors.Is(err, ErrSessionBytes), errors.Is(err, ErrSessionEnded):
		return http.StatusForbidden
	case errors.Is(err, ErrQueueFull), errors.Is(err, ErrRefused):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
