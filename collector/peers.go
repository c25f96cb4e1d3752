package collector

// Peer-to-peer mode: a volunteer's agent that serves tests to other agents
// registers at rendezvous.PeerRegisterPath, like a test server but without the
// operators' token and without a URL. The collector makes the URL from the
// address the registration comes from and the offered port, so that a
// registration can point only at its sender, and lists the peer only after
// it connected back to that URL and the agent answered the hello with its
// ID and the collector's nonce. A peer behind a firewall or a NAT without a
// port forward is not listed, and its acknowledgement says why.
//
// Peers register from public addresses only (unless the operator allows a
// network, Config.PeerNetworks), on ports from 1024, under IDs of their own
// ("peer-..."): a peer can point the collector at nothing but itself, and
// cannot take a server's place, nor another address's peer's.
//
// A check is remembered by URL: a listed peer is checked again every
// PeerRecheck (and whenever its URL changes), an unreachable URL not before
// PeerRetry whatever ID registers it, so that heartbeats and fresh IDs cost
// no connection. Each source address (an IPv4 address, an IPv6 /64) may
// register once a second, have one check in progress and list
// MaxPeersPerAddress peers; checks run at most MaxPeerChecks at a time.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/ratelimit"
	"github.com/neubot/neubot/internal/token"
	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/schemas"
)

// Parameters of the reachability check.
const (
	// PeerCheckTimeout bounds one connection back to a peer, answer
	// included.
	PeerCheckTimeout = 5 * time.Second
	// PeerRecheck is how long a successful check lasts.
	PeerRecheck = 10 * time.Minute
	// PeerRetry is how long a failed check is remembered: registrations
	// meanwhile get the same answer without a new connection.
	PeerRetry = time.Minute
	// MaxPeerChecks bounds the checks in progress; past it, registrations
	// get 429.
	MaxPeerChecks = 32
	// MaxPeersPerAddress bounds the peers listed from one address (an
	// IPv4 address, an IPv6 /64).
	MaxPeersPerAddress = 4
	// maxHelloBytes bounds the read of a peer's hello.
	maxHelloBytes = 4 << 10
)

// peerCheck is the remembered outcome of a check of one URL.
type peerCheck struct {
	id     string // who answered (or was expected to)
	listed bool
	reason string
	at     time.Time
}

// answers says whether the check still answers for id at now: a success
// for the same ID within PeerRecheck, a failure for any ID within
// PeerRetry (so that fresh IDs do not buy fresh connections).
func (p peerCheck) answers(id string, now time.Time) bool {
	if p.listed {
		return p.id == id && now.Sub(p.at) < PeerRecheck
	}
	return now.Sub(p.at) < PeerRetry
}

func (p peerCheck) stale(now time.Time) bool {
	return now.Sub(p.at) >= max(PeerRecheck, PeerRetry)
}

// Networks that are not the public Internet: a peer registering from one
// of them is refused unless the operator allows it (Config.PeerNetworks),
// so that the collector never connects back into its own network.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT (RFC 6598)
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking (RFC 2544)
	netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32"), // documentation
}

// peerSourceAllowed says whether a peer may register from ip.
func (c *Collector) peerSourceAllowed(ip netip.Addr) bool {
	for _, p := range c.cfg.PeerNetworks {
		if p.Contains(ip) {
			return true
		}
	}
	if !ip.IsGlobalUnicast() || ip.IsPrivate() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// sourceAddr is the address a registration came from: the connection's,
// or behind the operator's own proxy (Config.TrustProxy) the one it put in
// X-Forwarded-For.
func (c *Collector) sourceAddr(r *http.Request) string { return httpx.ClientAddr(r, c.cfg.TrustProxy) }

// peerURL makes a peer's URL from the address its registration came from.
func peerURL(host string, port int) (string, netip.Addr, error) {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("cannot tell the address of the registration (%.64q)", host)
	}
	ip = ip.Unmap().WithZone("")
	return "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(port)), ip, nil
}

// handlePeerRegister takes a peer's registration or heartbeat.
func (c *Collector) handlePeerRegister(w http.ResponseWriter, r *http.Request) {
	if c.cfg.NoPeers {
		rendezvousFail(w, http.StatusForbidden, nil, "this collector does not list peers: its operator turned peer-to-peer mode off")
		return
	}
	rdv := c.rendezvous()
	host := c.sourceAddr(r)
	key := ratelimit.Key(host) // an IPv4 address, an IPv6 /64
	if !c.peerRate.Allow(key, rdv.clock()) {
		w.Header().Set("Retry-After", "10")
		rendezvousFail(w, http.StatusTooManyRequests, nil, "too many peer registrations from this address: at most one a second")
		return
	}
	var reg rendezvous.ServerRegistration
	if !decodeRendezvous(w, r, &reg) {
		return
	}
	if reg.Peer == nil {
		fe := schemas.FieldError{Path: "peer", Reason: "is required here; test servers register at " + rendezvous.RegisterPath}
		rendezvousFail(w, http.StatusBadRequest, []schemas.FieldError{fe}, "%s", fe.Error())
		return
	}
	if err := reg.Validate(); err != nil {
		rendezvousInvalid(w, err)
		return
	}
	url, ip, err := peerURL(host, reg.Peer.Port)
	if err != nil {
		rendezvousFail(w, http.StatusBadRequest, nil, "%v", err)
		return
	}
	if !c.peerSourceAllowed(ip) {
		rendezvousFail(w, http.StatusForbidden, nil, "peers must register from a public Internet address, and this collector sees %s: other agents could not reach it", ip)
		return
	}
	reg.URL = url
	switch owner := rdv.peerAddr(reg.ID); {
	case owner != "" && owner != key:
		rendezvousFail(w, http.StatusConflict, nil, "id %s is listed from another address: an agent keeps its own random peer ID", reg.ID)
		return
	case owner == "" && rdv.peersFrom(key, reg.ID) >= MaxPeersPerAddress:
		w.Header().Set("Retry-After", strconv.Itoa(int(RegistrationExpiry/time.Second)))
		rendezvousFail(w, http.StatusTooManyRequests, nil, "%v", errAddressFull)
		return
	}
	check, ok := rdv.peerCheckFor(url, reg.ID)
	if !ok {
		if !rdv.beginProbe(key) {
			w.Header().Set("Retry-After", "5")
			rendezvousFail(w, http.StatusTooManyRequests, nil, "a reachability check of this address is in progress: retry later")
			return
		}
		select {
		case c.peerSlots <- struct{}{}:
		default:
			rdv.endProbe(key)
			w.Header().Set("Retry-After", "5")
			rendezvousFail(w, http.StatusTooManyRequests, nil, "too many reachability checks in progress: retry later")
			return
		}
		listed, reason := c.connectBack(r.Context(), reg.ID, url)
		<-c.peerSlots
		rdv.endProbe(key)
		if r.Context().Err() != nil {
			return // the agent went away: it will register again
		}
		if check, ok = rdv.rememberCheck(url, peerCheck{id: reg.ID, listed: listed, reason: reason}); !ok {
			w.Header().Set("Retry-After", "30")
			rendezvousFail(w, http.StatusTooManyRequests, nil, "too many peers are being checked: retry later")
			return
		}
		result := "listed"
		if !listed {
			result = "unreachable"
			c.log.Info("peer not listed: unreachable", "id", reg.ID, "url", url, "reason", reason)
		}
		c.metrics.peerChecks.WithLabelValues(result).Inc()
	}
	status := &rendezvous.PeerStatus{Listed: check.listed, URL: url, Reason: check.reason, CheckedAt: check.at.UTC().Format(time.RFC3339)}
	ack := rendezvous.RegistrationAck{
		HeartbeatS: int(RegistrationHeartbeat / time.Second),
		ExpiresS:   int(RegistrationExpiry / time.Second),
	}
	if check.listed {
		ack, err = rdv.upsert(reg, key)
		if err != nil { // the registry, or this address's share, is full
			w.Header().Set("Retry-After", strconv.Itoa(int(RegistrationExpiry/time.Second)))
			rendezvousFail(w, http.StatusTooManyRequests, nil, "%v: retry later", err)
			return
		}
	} else {
		rdv.removePeer(reg.ID, key)
	}
	ack.Peer = status
	httpx.WriteJSON(w, http.StatusOK, ack)
}

// connectBack checks that the agent id answers at url: it connects, asks
// PeerHelloPath with a fresh nonce and wants both back. It returns why not
// in words for the volunteer.
func (c *Collector) connectBack(ctx context.Context, id, url string) (bool, string) {
	nonce := token.Hex(16)
	ctx, cancel := context.WithTimeout(ctx, PeerCheckTimeout)
	defer cancel()
	client := &http.Client{
		Transport: &http.Transport{
			DialContext:            (&net.Dialer{Timeout: PeerCheckTimeout}).DialContext,
			DisableKeepAlives:      true,
			ResponseHeaderTimeout:  PeerCheckTimeout,
			MaxResponseHeaderBytes: 16 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+rendezvous.PeerHelloPath+"?nonce="+nonce, nil)
	if err != nil {
		return false, fmt.Sprintf("bad peer URL %s: %v", url, err)
	}
	a, err := httpx.Fetch(client, req, maxHelloBytes)
	switch {
	case a == nil:
		return false, unreachableReason(url, err)
	case err != nil:
		return false, fmt.Sprintf("%s accepted the connection but %v", url, err)
	case a.Status != http.StatusOK:
		return false, fmt.Sprintf("%s answered the reachability check with HTTP status %d: something other than this Neubot agent listens on that port", url, a.Status)
	case a.Truncated:
		return false, fmt.Sprintf("%s answered the reachability check with more than %d bytes", url, maxHelloBytes)
	}
	var hello rendezvous.PeerHello
	if err := json.Unmarshal(a.Body, &hello); err != nil {
		return false, fmt.Sprintf("%s did not answer the reachability check as a Neubot agent: %v", url, err)
	}
	if hello.ID != id || hello.Nonce != nonce {
		return false, fmt.Sprintf("%s answered as another agent: is another computer behind the same address using this port?", url)
	}
	return true, ""
}

// unreachableReason explains a failed connection back to a peer.
func unreachableReason(url string, err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("the collector's connection to %s was refused: nothing accepts connections on that port from outside (a router without a port forward to this computer, or the agent listens on another address)", url)
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("the collector got no answer from %s within %s: a firewall or a router drops connections to that port; open it, or forward it to this computer", url, PeerCheckTimeout)
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return fmt.Sprintf("the collector cannot route to %s: %v", url, err)
	default:
		return fmt.Sprintf("the collector could not connect to %s: %v", url, err)
	}
}

// peerCheckFor returns the remembered check of url if it still answers
// for id.
func (r *registry) peerCheckFor(url, id string) (peerCheck, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.checks[url]
	if !ok || !p.answers(id, r.clock()) {
		return peerCheck{}, false
	}
	return p, true
}

// rememberCheck stores the outcome of a check of url, stamped now, and
// returns it; false when the memory of checks is full of fresh ones.
func (r *registry) rememberCheck(url string, p peerCheck) (peerCheck, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock()
	p.at = now
	if r.checks == nil {
		r.checks = map[string]peerCheck{}
	}
	if _, ok := r.checks[url]; !ok && len(r.checks) >= MaxRegisteredPeers {
		for k, v := range r.checks {
			if v.stale(now) {
				delete(r.checks, k)
			}
		}
		if len(r.checks) >= MaxRegisteredPeers {
			return p, false
		}
	}
	r.checks[url] = p
	return p, true
}

// beginProbe claims the one check in progress of an address key.
func (r *registry) beginProbe(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.probing == nil {
		r.probing = map[string]bool{}
	}
	if r.probing[key] {
		return false
	}
	r.probing[key] = true
	return true
}

func (r *registry) endProbe(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.probing, key)
}

// peerAddr returns the address key a live peer id was registered from
// ("" when id is not a live peer).
func (r *registry) peerAddr(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.servers[id]; ok && e.info.Peer && r.clock().Before(e.expires) {
		return e.addr
	}
	return ""
}

// peersFrom counts the live peers registered from addr, other than id.
func (r *registry) peersFrom(addr, id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peersFromLocked(addr, id, r.clock())
}

func (r *registry) peersFromLocked(addr, id string, now time.Time) int {
	n := 0
	for k, e := range r.servers {
		if e.info.Peer && e.addr == addr && k != id && now.Before(e.expires) {
			n++
		}
	}
	return n
}

// removePeer delists the peer id registered from addr, at once (it is no
// longer reachable); it touches nothing else.
func (r *registry) removePeer(id, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.servers[id]; ok && e.info.Peer && e.addr == addr {
		r.log.Info("peer delisted", "id", id, "url", e.info.URL)
		r.deleteLocked(id, e)
	}
}
