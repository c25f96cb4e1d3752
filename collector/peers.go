package collector

// Peer-to-peer mode: a volunteer's agent that serves tests to other agents
// registers at PeerRegisterPath, like a test server but without the
// operators' token and without a URL. The collector makes the URL from the
// address the registration comes from and the offered port, so that a
// registration can point only at its sender, and lists the peer only after
// it connected back to that URL and the agent answered the hello with its
// ID and the collector's nonce. A peer behind a firewall or a NAT without a
// port forward is not listed, and its acknowledgement says why.
//
// A check is remembered: a listed peer is checked again every PeerRecheck
// (and whenever its URL changes), an unreachable one not before PeerRetry,
// so that heartbeats cost no connection. Checks run at most MaxPeerChecks
// at a time and each source address lists at most MaxPeersPerAddress peers.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/neubot/neubot/schemas"
)

// PeerRegisterPath is where volunteers' agents register as peers.
const PeerRegisterPath = schemas.PeerRegisterPath

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

// peerCheck is the remembered outcome of a check of one peer ID.
type peerCheck struct {
	url    string
	listed bool
	reason string
	at     time.Time
}

// fresh says whether the check still answers for url at now.
func (p peerCheck) fresh(url string, now time.Time) bool {
	if p.url != url {
		return false
	}
	if p.listed {
		return now.Sub(p.at) < PeerRecheck
	}
	return now.Sub(p.at) < PeerRetry
}

// peerURL makes a peer's URL from the address its registration came from.
func peerURL(remoteAddr string, port int) (string, netip.Addr, error) {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("cannot tell the address of the registration (%q)", remoteAddr)
	}
	ip = ip.Unmap().WithZone("")
	return "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(port)), ip, nil
}

// addressKey groups the peers of one subscriber: an IPv4 address, an IPv6
// /64.
func addressKey(ip netip.Addr) string {
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// handlePeerRegister takes a peer's registration or heartbeat.
func (c *Collector) handlePeerRegister(w http.ResponseWriter, r *http.Request) {
	if c.cfg.NoPeers {
		rendezvousFail(w, http.StatusForbidden, nil, "this collector does not list peers: its operator turned peer-to-peer mode off")
		return
	}
	var reg schemas.ServerRegistration
	if !decodeRendezvous(w, r, &reg) {
		return
	}
	if reg.Peer == nil {
		fe := schemas.FieldError{Path: "peer", Reason: "is required here; test servers register at " + RegisterPath}
		rendezvousFail(w, http.StatusBadRequest, []schemas.FieldError{fe}, "%s", fe.Error())
		return
	}
	if err := reg.Validate(); err != nil {
		rendezvousInvalid(w, err)
		return
	}
	url, ip, err := peerURL(r.RemoteAddr, reg.Peer.Port)
	if err != nil {
		rendezvousFail(w, http.StatusBadRequest, nil, "%v", err)
		return
	}
	reg.URL = url
	rdv := c.rendezvous()
	if n := rdv.peersFrom(addressKey(ip), reg.ID); n >= MaxPeersPerAddress {
		w.Header().Set("Retry-After", strconv.Itoa(int(RegistrationExpiry/time.Second)))
		rendezvousFail(w, http.StatusTooManyRequests, nil, "%d peers are already listed from this address: at most %d", n, MaxPeersPerAddress)
		return
	}
	check, ok := rdv.peerCheckFor(reg.ID, url)
	if !ok {
		select {
		case c.peerSlots <- struct{}{}:
		default:
			w.Header().Set("Retry-After", "5")
			rendezvousFail(w, http.StatusTooManyRequests, nil, "too many reachability checks in progress: retry later")
			return
		}
		listed, reason := c.connectBack(r.Context(), reg.ID, url)
		<-c.peerSlots
		if r.Context().Err() != nil {
			return // the agent went away: it will register again
		}
		check = rdv.rememberCheck(reg.ID, peerCheck{url: url, listed: listed, reason: reason})
		result := "listed"
		if !listed {
			result = "unreachable"
			c.log.Info("peer not listed: unreachable", "id", reg.ID, "url", url, "reason", reason)
		}
		c.metrics.peerChecks.WithLabelValues(result).Inc()
	}
	status := &schemas.PeerStatus{Listed: check.listed, URL: url, Reason: check.reason, CheckedAt: check.at.UTC().Format(time.RFC3339)}
	ack := schemas.RegistrationAck{
		HeartbeatS: int(RegistrationHeartbeat / time.Second),
		ExpiresS:   int(RegistrationExpiry / time.Second),
	}
	if check.listed {
		ack, err = rdv.upsert(reg, addressKey(ip))
		if errors.Is(err, errRegistryFull) {
			w.Header().Set("Retry-After", strconv.Itoa(int(RegistrationExpiry/time.Second)))
			rendezvousFail(w, http.StatusTooManyRequests, nil, "%v (%d servers): retry later", err, MaxRegisteredServers)
			return
		}
	} else {
		rdv.remove(reg.ID)
	}
	ack.Peer = status
	writeJSON(w, http.StatusOK, ack)
}

// connectBack checks that the agent id answers at url: it connects, asks
// PeerHelloPath with a fresh nonce and wants both back. It returns why not
// in words for the volunteer.
func (c *Collector) connectBack(ctx context.Context, id, url string) (bool, string) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return false, "the collector could not make a nonce: " + err.Error()
	}
	nonce := hex.EncodeToString(b[:])
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+schemas.PeerHelloPath+"?nonce="+nonce, nil)
	if err != nil {
		return false, fmt.Sprintf("bad peer URL %s: %v", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, unreachableReason(url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHelloBytes+1))
	switch {
	case err != nil:
		return false, fmt.Sprintf("%s accepted the connection but its answer broke off: %v", url, err)
	case resp.StatusCode != http.StatusOK:
		return false, fmt.Sprintf("%s answered %s to the reachability check: something other than this Neubot agent listens on that port", url, resp.Status)
	case len(body) > maxHelloBytes:
		return false, fmt.Sprintf("%s answered the reachability check with more than %d bytes", url, maxHelloBytes)
	}
	var hello schemas.PeerHello
	if err := json.Unmarshal(body, &hello); err != nil {
		return false, fmt.Sprintf("%s did not answer the reachability check as a Neubot agent: %v", url, err)
	}
	if hello.ID != id || hello.Nonce != nonce {
		return false, fmt.Sprintf("%s answered as another agent (id %.64q): is another computer behind the same address using this port?", url, hello.ID)
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

// peerCheckFor returns the remembered check of id if it still answers for
// url.
func (r *registry) peerCheckFor(id, url string) (peerCheck, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.checks[id]
	if !ok || !p.fresh(url, r.clock()) {
		return peerCheck{}, false
	}
	return p, true
}

// rememberCheck stores the outcome of a check, stamped now, and returns it.
// The memory is bounded like the registry: stale outcomes go first.
func (r *registry) rememberCheck(id string, p peerCheck) peerCheck {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock()
	p.at = now
	if r.checks == nil {
		r.checks = map[string]peerCheck{}
	}
	if _, ok := r.checks[id]; !ok && len(r.checks) >= MaxRegisteredServers {
		for k, v := range r.checks {
			if !v.fresh(v.url, now) {
				delete(r.checks, k)
			}
		}
		if len(r.checks) >= MaxRegisteredServers {
			return p // answered, not remembered
		}
	}
	r.checks[id] = p
	return p
}

// peersFrom counts the live peers registered from addr, other than id.
func (r *registry) peersFrom(addr, id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock()
	n := 0
	for k, e := range r.servers {
		if e.info.Peer && e.addr == addr && k != id && now.Before(e.expires) {
			n++
		}
	}
	return n
}

// remove delists id at once (a peer that is no longer reachable).
func (r *registry) remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.servers[id]; ok {
		r.log.Info("peer delisted", "id", id, "url", e.info.URL)
		delete(r.servers, id)
		r.countLocked(e.tests, -1)
	}
}
