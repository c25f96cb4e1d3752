package collector

// The rendezvous (the Coordinator of the 2011 Neubot paper): test servers
// register at rendezvous.RegisterPath and heartbeat; agents ask
// rendezvous.RendezvousPath which live servers serve which tests.
//
// The registry is soft state, in memory only: a restarted collector forgets
// every server and relearns them within one heartbeat interval, so the
// collector keeps no state but its spool. An entry not refreshed within
// RegistrationExpiry disappears: lookups skip it at once, and a sweep (on
// requests, and on a timer while the registry is not empty) deletes it and
// updates the neubot_collector_test_servers gauge.

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/internal/token"
	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/schemas"
)

// Parameters of the rendezvous.
const (
	// RegistrationHeartbeat is how often test servers are told to
	// register again (RegistrationAck.HeartbeatS).
	RegistrationHeartbeat = 10 * time.Second
	// RegistrationExpiry is how long a registration lasts without a
	// heartbeat (RegistrationAck.ExpiresS): three heartbeats, so that one
	// or two lost ones do not delist a server.
	RegistrationExpiry = 30 * time.Second
	// RendezvousTTL is how long agents may reuse an answer
	// (RendezvousResponse.TTLS).
	RendezvousTTL = 60 * time.Second
	// MaxServersPerTest bounds the servers listed for one test.
	MaxServersPerTest = 8
	// MaxRegisteredServers bounds the registry, so that registrations
	// under ever new IDs cannot exhaust memory; past it, registrations of
	// new IDs get 429 until some entry expires.
	MaxRegisteredServers = 4096
	// MaxRegisteredPeers bounds the peers of the registry apart, so that
	// volunteers' agents cannot crowd the platform's servers out.
	MaxRegisteredPeers = 16384
)

// RendezvousError is the JSON body of every refused request of the
// rendezvous endpoints: the reason, and for invalid messages each problem
// with the JSON path of its field.
type RendezvousError struct {
	Error  string               `json:"error"`
	Fields []schemas.FieldError `json:"fields,omitempty"`
}

// errRegistryFull is returned by upsert for a new ID when the registry
// holds MaxRegisteredServers live entries.
var errRegistryFull = errors.New("the registry of test servers is full")

// errPeersFull and errAddressFull are returned by upsert for a new peer
// when MaxRegisteredPeers are listed, or MaxPeersPerAddress from its
// address.
var (
	errPeersFull   = errors.New("the registry of peers is full")
	errAddressFull = fmt.Errorf("%d peers are already listed from this address: at most %d", MaxPeersPerAddress, MaxPeersPerAddress)
)

// registry holds the live test servers by ID. Its zero value is ready; the
// collector binds its logger and gauge on first use.
type registry struct {
	once  sync.Once
	log   *slog.Logger
	gauge *prometheus.GaugeVec // live servers by test; nil: none

	mu sync.Mutex
	// now is the clock; nil means time.Now. Tests set it before use.
	now     func() time.Time
	servers map[string]*serverEntry
	counts  map[string]int       // servers by test, mirrored in gauge
	peers   int                  // entries of servers that are peers
	checks  map[string]peerCheck // peers' reachability checks by URL
	probing map[string]bool      // address keys with a check in progress
	// nextExpiry is at or before the earliest expiry of servers (zero
	// when empty): until then there is nothing to prune.
	nextExpiry time.Time
	sweep      *time.Timer // armed while servers is not empty
}

// serverEntry is one registered test server.
type serverEntry struct {
	info    rendezvous.ServerInfo
	tests   []string
	expires time.Time
	addr    string // a peer's source address (see addressKey); "" for servers
}

// rendezvous returns the collector's registry, bound to its logger and
// metrics.
func (c *Collector) rendezvous() *registry {
	r := &c.rdv
	r.once.Do(func() {
		r.log = c.log
		r.gauge = c.metrics.testServers
	})
	return r
}

func (r *registry) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

// upsert adds or refreshes the registration of reg.ID, which must be valid
// (a peer's with its URL made and checked, and addr its source address).
func (r *registry) upsert(reg rendezvous.ServerRegistration, addr string) (rendezvous.RegistrationAck, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock()
	if r.servers == nil {
		r.servers = map[string]*serverEntry{}
		r.counts = map[string]int{}
	}
	r.pruneLocked(now)
	old, exists := r.servers[reg.ID]
	switch {
	case exists:
	case reg.Peer == nil && len(r.servers)-r.peers >= MaxRegisteredServers:
		return rendezvous.RegistrationAck{}, errRegistryFull
	case reg.Peer != nil && r.peers >= MaxRegisteredPeers:
		return rendezvous.RegistrationAck{}, errPeersFull
	case reg.Peer != nil && r.peersFromLocked(addr, reg.ID, now) >= MaxPeersPerAddress:
		return rendezvous.RegistrationAck{}, errAddressFull
	}
	e := &serverEntry{
		info: rendezvous.ServerInfo{
			ID:      reg.ID,
			URL:     reg.URL,
			Version: reg.Version,
			Load:    reg.Load.Ratio(),
			Peer:    reg.Peer != nil,
		},
		tests:   slices.Clone(reg.Tests),
		expires: now.Add(RegistrationExpiry),
		addr:    addr,
	}
	switch {
	case !exists:
		r.log.Info("test server registered", "id", reg.ID, "url", reg.URL, "tests", reg.Tests, "version", reg.Version, "peer", reg.Peer != nil)
	case old.info.URL != reg.URL || old.info.Version != reg.Version || !slices.Equal(old.tests, reg.Tests):
		r.log.Info("test server registration changed", "id", reg.ID, "url", reg.URL, "tests", reg.Tests, "version", reg.Version)
	default:
		r.log.Debug("test server heartbeat", "id", reg.ID, "load", e.info.Load)
	}
	if exists {
		r.countLocked(old.tests, -1)
	} else if e.info.Peer {
		r.peers++
	}
	r.servers[reg.ID] = e
	r.countLocked(e.tests, +1)
	if r.nextExpiry.IsZero() || e.expires.Before(r.nextExpiry) {
		r.nextExpiry = e.expires
	}
	if r.sweep == nil {
		r.sweep = time.AfterFunc(RegistrationHeartbeat, r.sweepNow)
	}
	return rendezvous.RegistrationAck{
		HeartbeatS: int(RegistrationHeartbeat / time.Second),
		ExpiresS:   int(RegistrationExpiry / time.Second),
	}, nil
}

// lookup returns, for each of tests, the live servers (and peers, when
// peers is true) that serve it, least loaded first (ties by ID), at most
// limit per test; a test no live server serves maps to an empty list.
func (r *registry) lookup(tests []string, limit int, peers bool) map[string][]rendezvous.ServerInfo {
	out := make(map[string][]rendezvous.ServerInfo, len(tests))
	for _, t := range tests {
		out[t] = []rendezvous.ServerInfo{}
	}
	r.mu.Lock()
	now := r.clock()
	r.pruneLocked(now)
	for _, e := range r.servers {
		if !now.Before(e.expires) || e.info.Peer && !peers {
			continue
		}
		for _, t := range e.tests {
			if list, ok := out[t]; ok {
				out[t] = append(list, e.info)
			}
		}
	}
	r.mu.Unlock()
	for t, list := range out {
		// Least loaded first; ties in random order, so that agents
		// spread over equally idle servers and peers (a peer often runs
		// one test at a time) instead of all taking the same one.
		rand.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
		slices.SortStableFunc(list, func(a, b rendezvous.ServerInfo) int { return cmp.Compare(a.Load, b.Load) })
		if len(list) > limit {
			// Peers never crowd the platform's servers out: when the
			// cut leaves none, the least loaded one takes the last place.
			if i := slices.IndexFunc(list, func(s rendezvous.ServerInfo) bool { return !s.Peer }); i >= limit {
				list[limit-1] = list[i]
			}
			out[t] = list[:limit:limit]
		}
	}
	return out
}

// pruneLocked deletes the expired entries. It scans the registry only once
// the earliest expiry is reached, so most calls cost nothing.
func (r *registry) pruneLocked(now time.Time) {
	if r.nextExpiry.IsZero() || now.Before(r.nextExpiry) {
		return
	}
	r.nextExpiry = time.Time{}
	for id, e := range r.servers {
		if now.Before(e.expires) {
			if r.nextExpiry.IsZero() || e.expires.Before(r.nextExpiry) {
				r.nextExpiry = e.expires
			}
			continue
		}
		r.log.Info("test server expired", "id", id, "url", e.info.URL,
			"silent_for", now.Sub(e.expires.Add(-RegistrationExpiry)).Round(time.Millisecond).String())
		r.deleteLocked(id, e)
	}
	for url, p := range r.checks {
		if p.stale(now) {
			delete(r.checks, url)
		}
	}
}

// deleteLocked removes entry e of id.
func (r *registry) deleteLocked(id string, e *serverEntry) {
	delete(r.servers, id)
	r.countLocked(e.tests, -1)
	if e.info.Peer {
		r.peers--
	}
}

// sweepNow runs on the sweep timer: it prunes, so that the gauge falls when
// servers die even if nobody registers or asks, and rearms while entries
// are left.
func (r *registry) sweepNow() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pruneLocked(r.clock())
	if len(r.servers) == 0 {
		r.sweep = nil
		return
	}
	r.sweep.Reset(RegistrationHeartbeat)
}

func (r *registry) countLocked(tests []string, delta int) {
	for _, t := range tests {
		r.counts[t] += delta
		if r.gauge != nil {
			r.gauge.WithLabelValues(t).Set(float64(r.counts[t]))
		}
	}
}

// handleRegister takes a test server's registration or heartbeat.
func (c *Collector) handleRegister(w http.ResponseWriter, r *http.Request) {
	if tok := c.cfg.RegisterToken; tok != "" && !bearerMatches(r.Header.Get("Authorization"), tok) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="neubot-collector"`)
		rendezvousFail(w, http.StatusUnauthorized, nil, "registering requires the header Authorization: Bearer <token> with the collector's registration token")
		return
	}
	// Only enrolled servers register (spec/trust.md): the body is read
	// first, since the signature covers it.
	body, ok := readSigned(w, r)
	if !ok {
		return
	}
	enrolled, err := c.requests.VerifyRequest(r, body, time.Now())
	if err != nil {
		c.log.Warn("test server registration refused", "peer", r.RemoteAddr, "err", err, "key", r.Header.Get(rendezvous.HeaderKey))
		code := http.StatusForbidden
		if errors.Is(err, identity.ErrUnsigned) || errors.Is(err, identity.ErrBadSignature) || errors.Is(err, identity.ErrStale) || errors.Is(err, identity.ErrReplayed) {
			code = http.StatusUnauthorized
		}
		rendezvousFail(w, code, nil, "registration refused: %v (test servers register only once the operator enrolled their key: neubot-server enroll)", err)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var reg rendezvous.ServerRegistration
	if !decodeRendezvous(w, r, &reg) {
		return
	}
	if err := reg.Validate(); err != nil {
		c.log.Debug("test server registration refused", "peer", r.RemoteAddr, "err", err)
		rendezvousInvalid(w, err)
		return
	}
	if reg.Peer != nil {
		fe := schemas.FieldError{Path: "peer", Reason: "must be absent here; peers register at " + rendezvous.PeerRegisterPath}
		rendezvousFail(w, http.StatusBadRequest, []schemas.FieldError{fe}, "%s", fe.Error())
		return
	}
	if reg.ID != enrolled.ID {
		fe := schemas.FieldError{Path: "id", Reason: fmt.Sprintf("must be %s: the id this key is enrolled as", enrolled.ID)}
		rendezvousFail(w, http.StatusForbidden, []schemas.FieldError{fe}, "%s", fe.Error())
		return
	}
	ack, err := c.rendezvous().upsert(reg, "")
	if errors.Is(err, errRegistryFull) {
		w.Header().Set("Retry-After", strconv.Itoa(int(RegistrationExpiry/time.Second)))
		rendezvousFail(w, http.StatusTooManyRequests, nil, "%v (%d servers): retry later", err, MaxRegisteredServers)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, ack)
}

// readSigned reads the body of a rendezvous request (bounded) so that its
// signature can be checked; it answers the request itself on a problem.
func readSigned(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.ContentLength > rendezvous.MaxRendezvousBodyBytes {
		rendezvousFail(w, http.StatusRequestEntityTooLarge, nil, "body of %d bytes is over the limit of %d bytes", r.ContentLength, rendezvous.MaxRendezvousBodyBytes)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rendezvous.MaxRendezvousBodyBytes))
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			rendezvousFail(w, http.StatusRequestEntityTooLarge, nil, "body is over the limit of %d bytes", rendezvous.MaxRendezvousBodyBytes)
		} else {
			rendezvousFail(w, http.StatusBadRequest, nil, "cannot read body: %v", err)
		}
		return nil, false
	}
	return body, true
}

// handleRendezvous tells an agent which live test servers serve the tests
// it asks for.
func (c *Collector) handleRendezvous(w http.ResponseWriter, r *http.Request) {
	var req rendezvous.RendezvousRequest
	if !decodeRendezvous(w, r, &req) {
		return
	}
	if err := req.Validate(); err != nil {
		rendezvousInvalid(w, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, rendezvous.RendezvousResponse{
		Servers: c.rendezvous().lookup(req.Tests, MaxServersPerTest, req.Peers && !c.cfg.NoPeers),
		TTLS:    int(RendezvousTTL / time.Second),

		LatestAgentVersion: c.cfg.LatestAgentVersion,
	})
}

// bearerMatches says whether the Authorization header carries want as a
// bearer credential, compared in constant time (token.Equal).
func bearerMatches(header, want string) bool {
	scheme, cred, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return token.Equal(strings.TrimSpace(cred), want)
}

// decodeRendezvous decodes the JSON body of r into v: at most
// rendezvous.MaxRendezvousBodyBytes, one JSON value, unknown fields ignored.
// It answers the request itself and returns false when it cannot.
func decodeRendezvous(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		rendezvousFail(w, http.StatusUnsupportedMediaType, nil, "Content-Type must be application/json, got %.64q", r.Header.Get("Content-Type"))
		return false
	}
	if r.ContentLength > rendezvous.MaxRendezvousBodyBytes {
		rendezvousFail(w, http.StatusRequestEntityTooLarge, nil, "body of %d bytes is over the limit of %d bytes", r.ContentLength, rendezvous.MaxRendezvousBodyBytes)
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, rendezvous.MaxRendezvousBodyBytes))
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = terr
			if err == nil {
				err = errors.New("trailing data after the JSON object")
			}
		}
	}
	if err == nil {
		return true
	}
	var (
		maxErr    *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &maxErr):
		rendezvousFail(w, http.StatusRequestEntityTooLarge, nil, "body is over the limit of %d bytes", rendezvous.MaxRendezvousBodyBytes)
	case errors.As(err, &syntaxErr):
		rendezvousFail(w, http.StatusBadRequest, nil, "malformed JSON at byte %d: %s", syntaxErr.Offset, strings.TrimPrefix(err.Error(), "json: "))
	case errors.As(err, &typeErr):
		fe := schemas.FieldError{Path: typeErr.Field, Reason: fmt.Sprintf("must be a JSON %s, not %s", jsonType(typeErr.Type.String()), typeErr.Value)}
		rendezvousFail(w, http.StatusBadRequest, []schemas.FieldError{fe}, "%s", fe.Error())
	case errors.Is(err, io.EOF):
		rendezvousFail(w, http.StatusBadRequest, nil, "body is empty: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		rendezvousFail(w, http.StatusBadRequest, nil, "truncated JSON")
	default:
		rendezvousFail(w, http.StatusBadRequest, nil, "cannot decode body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return false
}

// jsonType names the JSON type a Go type decodes from.
func jsonType(goType string) string {
	switch {
	case goType == "string":
		return "string"
	case strings.HasPrefix(goType, "[]"):
		return "array"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "integer"
	case strings.HasPrefix(goType, "float"):
		return "number"
	case goType == "bool":
		return "boolean"
	default:
		return "object"
	}
}

func rendezvousInvalid(w http.ResponseWriter, err error) {
	var me *rendezvous.MessageError
	if errors.As(err, &me) {
		rendezvousFail(w, http.StatusBadRequest, me.Fields, "%s", me.Error())
		return
	}
	rendezvousFail(w, http.StatusBadRequest, nil, "%v", err)
}

func rendezvousFail(w http.ResponseWriter, code int, fields []schemas.FieldError, format string, args ...any) {
	httpx.WriteJSON(w, code, RendezvousError{Error: fmt.Sprintf(format, args...), Fields: fields})
}
