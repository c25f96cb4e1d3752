// Package rendezvous is the rendezvous protocol of spec/rendezvous.md (the
// Coordinator of the 2011 Neubot paper): test servers register with the
// collector and refresh their registration with heartbeats; agents ask the
// collector which live test servers serve which tests. Both ends share the
// types and limits below.
//
// The messages are JSON. Unlike records, they are not archival: they are
// soft state that the next heartbeat rebuilds, so unknown fields are
// ignored (an older collector accepts a newer server's registration) while
// the values of known fields are validated strictly.
package rendezvous

import (
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/neubot/neubot/schemas"
)

// Version of the protocol described in spec/rendezvous.md.
const Version = "v1.2.0"

// Endpoints of the collector's rendezvous API (both POST, JSON in and out).
const (
	// RendezvousPath is where agents send a RendezvousRequest and get a
	// RendezvousResponse.
	RendezvousPath = "/api/v1/rendezvous"
	// RegisterPath is where test servers send a ServerRegistration, at
	// once and then every RegistrationAck.HeartbeatS seconds, and get a
	// RegistrationAck.
	RegisterPath = "/api/v1/servers/register"
	// PeerRegisterPath is where volunteers' agents that serve peers send
	// a ServerRegistration with Peer set, and get a RegistrationAck with
	// Peer set.
	PeerRegisterPath = "/api/v1/peers/register"
)

// Limits of the rendezvous messages.
const (
	MaxIDBytes         = 128 // ServerRegistration.ID, RendezvousRequest.AgentID
	MaxURLBytes        = 512 // ServerRegistration.URL
	MaxRendezvousTests = 16  // entries of Tests in both messages
	MaxVersionBytes    = 32  // ServerRegistration.Version, RendezvousRequest.AgentVersion
	// MaxRendezvousBodyBytes bounds the body of a rendezvous message; a
	// valid one is far smaller.
	MaxRendezvousBodyBytes = 64 << 10
	// DefaultHeartbeatS is the heartbeat interval a test server uses when
	// the acknowledgement does not say.
	DefaultHeartbeatS = 10
	// MaxReasonBytes bounds PeerStatus.Reason.
	MaxReasonBytes = 512
)

// PeerHelloPath is where a volunteer's agent that serves peers answers the
// collector's reachability check: GET with ?nonce=N, answered with a
// PeerHello carrying the agent's registration ID and N.
const PeerHelloPath = "/api/v1/peer/hello"

// PeerIDPrefix starts the ID of every peer, and of nothing else: a peer
// can never register under a platform server's ID, nor a server under a
// peer's.
const PeerIDPrefix = "peer-"

// Caps a volunteer may set on the tests its agent serves to peers.
const (
	MinPeerPort    = 1024      // PeerOffer.Port at least: no well-known port
	MinPeerMbps    = 1         // PeerCaps.MaxMbps at least
	MaxPeerTests   = 8         // PeerCaps.MaxTests at most
	MaxPeerMbps    = 10_000    // PeerCaps.MaxMbps at most
	MaxPeerDailyMB = 1_000_000 // PeerCaps.DailyMB at most (1 TB)
)

// ServerRegistration is what a test server sends to RegisterPath: who it is,
// where agents reach it, what it serves and how busy it is. The collector
// keeps it, keyed by ID, until it is not refreshed for
// RegistrationAck.ExpiresS seconds.
//
// A volunteer's agent that serves tests to other agents (peer-to-peer mode)
// registers the same way with Peer set and URL empty: the collector makes
// the URL from the address the registration comes from and Peer.Port, and
// lists the peer only once it could connect back to it (PeerHelloPath).
type ServerRegistration struct {
	// ID names the server stably across restarts and heartbeats, e.g.
	// "mlab1.mil04" or a host name: 1 to 128 bytes of A-Z a-z 0-9 . _ : -.
	// A registration with the ID of a live one replaces it.
	ID string `json:"id"`
	// URL is the base URL agents use to reach the server: http or https,
	// with a host, without credentials, at most 512 bytes. Empty for a
	// peer (see Peer).
	URL string `json:"url"`
	// Tests are the names of the tests the server serves (1 to 16, each a
	// registered test of this package, no duplicates).
	Tests []string `json:"tests"`
	// Version is the version of the test server software, at most 32
	// bytes (may be empty).
	Version string `json:"version"`
	// Load is the server's occupancy when it sent this registration.
	Load ServerLoad `json:"load"`
	// Peer is set by a volunteer's agent that serves peers; nil for a
	// platform test server.
	Peer *PeerOffer `json:"peer,omitempty"`
}

// PeerOffer is what a volunteer's agent offers as a peer.
type PeerOffer struct {
	// Port is the TCP port other agents reach it on at the address the
	// collector sees (1024 to 65535): the forwarded port, behind a NAT.
	Port int `json:"port"`
	// Caps are the volunteer's limits, which the agent enforces itself.
	Caps PeerCaps `json:"caps"`
}

// PeerCaps are the limits a volunteer sets on serving peers.
type PeerCaps struct {
	// MaxTests is how many tests run at once (1 to MaxPeerTests).
	MaxTests int `json:"max_tests"`
	// MaxMbps caps the rate of all tests together in each direction,
	// Mbit/s (MinPeerMbps to MaxPeerMbps).
	MaxMbps float64 `json:"max_mbps"`
	// DailyMB caps the bytes of a UTC day's tests, both directions
	// together, in MB of 10^6 bytes (1 to MaxPeerDailyMB).
	DailyMB int64 `json:"daily_mb"`
}

// PeerHello is a peer's answer to the collector's reachability check.
type PeerHello struct {
	ID    string `json:"id"`
	Nonce string `json:"nonce"`
}

// ServerLoad is how busy a test server is, counted in test slots.
type ServerLoad struct {
	// Active counts the tests running now (>= 0).
	Active int `json:"active"`
	// Queued counts the agents waiting for a slot (>= 0).
	Queued int `json:"queued"`
	// Capacity is how many tests the server runs at once (>= 1).
	Capacity int `json:"capacity"`
}

// Ratio is (Active+Queued)/Capacity: 0 when idle, 1 when every slot is
// taken, above 1 when agents queue. It is 0 for a zero Capacity, which
// validation refuses.
func (l ServerLoad) Ratio() float64 {
	if l.Capacity <= 0 {
		return 0
	}
	return (float64(l.Active) + float64(l.Queued)) / float64(l.Capacity)
}

// RegistrationAck is the collector's answer to a valid registration.
type RegistrationAck struct {
	// HeartbeatS is how often, in seconds, the server must register
	// again to stay listed.
	HeartbeatS int `json:"heartbeat_s"`
	// ExpiresS is how long, in seconds, the registration stays listed if
	// it is not refreshed.
	ExpiresS int `json:"expires_s"`
	// Peer is the outcome of a peer's registration (nil for a platform
	// test server).
	Peer *PeerStatus `json:"peer,omitempty"`
}

// PeerStatus tells a volunteer's agent whether agents are sent to it.
type PeerStatus struct {
	// Listed is true when the rendezvous hands the peer to agents.
	Listed bool `json:"listed"`
	// URL is the address the collector checked and lists.
	URL string `json:"url"`
	// Reason says, when Listed is false, why: what the collector's
	// connection back to URL met, and what the volunteer can do.
	Reason string `json:"reason,omitempty"`
	// CheckedAt is when the collector last connected back (RFC 3339).
	CheckedAt string `json:"checked_at"`
}

// RendezvousRequest is what an agent sends to RendezvousPath.
type RendezvousRequest struct {
	// AgentID is the agent's random identifier (the agent_id of its
	// records): 1 to 128 bytes of A-Z a-z 0-9 . _ : -.
	AgentID string `json:"agent_id"`
	// Tests are the names of the tests the agent wants to run (1 to 16,
	// each a registered test of this package, no duplicates).
	Tests []string `json:"tests"`
	// AgentVersion is the version of the agent software, at most 32
	// bytes (may be empty); the collector may steer agents by it.
	AgentVersion string `json:"agent_version"`
	// Peers is true when the volunteer allows tests against other
	// volunteers' agents (each side then sees the other's address); the
	// answer then lists reachable peers along with the platform's servers.
	Peers bool `json:"peers,omitempty"`
}

// RendezvousResponse is the collector's answer to a valid RendezvousRequest.
type RendezvousResponse struct {
	// Servers maps each requested test to the live servers that serve it,
	// least loaded first (ties by ID), at most a few per test; a test no
	// live server serves maps to an empty list.
	Servers map[string][]ServerInfo `json:"servers"`
	// TTLS is how long, in seconds, the agent may reuse this answer
	// before asking again.
	TTLS int `json:"ttl_s"`
	// LatestAgentVersion is the newest release of the agent that the
	// collector's operator announces (collector --latest-agent-version),
	// at most MaxVersionBytes of ValidVersion's characters; empty when
	// none is announced. An agent older than it tells its volunteer that
	// a newer version exists; it never updates itself.
	LatestAgentVersion string `json:"latest_agent_version,omitempty"`
}

// ValidVersion says whether v can be announced as LatestAgentVersion: 1 to
// MaxVersionBytes bytes of A-Z a-z 0-9 . + ~ -, starting with a digit.
func ValidVersion(v string) bool {
	if v == "" || len(v) > MaxVersionBytes || v[0] < '0' || v[0] > '9' {
		return false
	}
	for _, r := range v {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || strings.ContainsRune(".+~-", r)) {
			return false
		}
	}
	return true
}

// ServerInfo is one test server as the rendezvous hands it to agents.
type ServerInfo struct {
	// ID is the server's registered ID.
	ID string `json:"id"`
	// URL is the server's registered base URL.
	URL string `json:"url"`
	// Version is the server's registered software version.
	Version string `json:"version"`
	// Load is (active+queued)/capacity at its last heartbeat (see
	// ServerLoad.Ratio).
	Load float64 `json:"load"`
	// Peer is true for a volunteer's agent (peer-to-peer mode).
	Peer bool `json:"peer,omitempty"`
}

// MessageError is the error of a rendezvous message that failed validation:
// which message, and every problem found, each with the JSON path of its
// field (e.g. "url", "tests[2]", "load.capacity").
type MessageError struct {
	Message string
	Fields  []schemas.FieldError
}

func (e *MessageError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Error()
	}
	return "invalid " + e.Message + ": " + strings.Join(parts, "; ")
}

// msgChecker collects the problems of one message.
type msgChecker struct {
	msg  string
	errs []schemas.FieldError
}

func (c *msgChecker) add(path, format string, args ...any) {
	c.errs = append(c.errs, schemas.FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
}

func (c *msgChecker) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	return &MessageError{Message: c.msg, Fields: c.errs}
}

// Validate checks every field of r. The error is a *MessageError.
func (r *ServerRegistration) Validate() error {
	c := &msgChecker{msg: "server registration"}
	checkID(c, "id", r.ID)
	if r.Peer == nil {
		checkServerURL(c, "url", r.URL)
		if strings.HasPrefix(r.ID, PeerIDPrefix) {
			c.add("id", "must not start with %q: that prefix is for volunteers' agents serving peers", PeerIDPrefix)
		}
	} else {
		if r.ID != "" && !strings.HasPrefix(r.ID, PeerIDPrefix) {
			c.add("id", "must start with %q for a peer", PeerIDPrefix)
		}
		if r.URL != "" {
			c.add("url", "must be empty for a peer: the collector makes it from the address it sees and peer.port")
		}
		r.Peer.check(c)
	}
	checkTests(c, "tests", r.Tests)
	checkVersion(c, "version", r.Version)
	if r.Load.Active < 0 {
		c.add("load.active", "must not be negative (got %d)", r.Load.Active)
	}
	if r.Load.Queued < 0 {
		c.add("load.queued", "must not be negative (got %d)", r.Load.Queued)
	}
	if r.Load.Capacity < 1 {
		c.add("load.capacity", "must be at least 1 (got %d)", r.Load.Capacity)
	}
	return c.err()
}

func (p *PeerOffer) check(c *msgChecker) {
	if p.Port < MinPeerPort || p.Port > 65535 {
		c.add("peer.port", "must be a TCP port from %d to 65535 (got %d)", MinPeerPort, p.Port)
	}
	if p.Caps.MaxTests < 1 || p.Caps.MaxTests > MaxPeerTests {
		c.add("peer.caps.max_tests", "must be from 1 to %d (got %d)", MaxPeerTests, p.Caps.MaxTests)
	}
	if !(p.Caps.MaxMbps >= MinPeerMbps && p.Caps.MaxMbps <= MaxPeerMbps) { // NaN fails too
		c.add("peer.caps.max_mbps", "must be from %d to %d (got %g)", MinPeerMbps, MaxPeerMbps, p.Caps.MaxMbps)
	}
	if p.Caps.DailyMB < 1 || p.Caps.DailyMB > MaxPeerDailyMB {
		c.add("peer.caps.daily_mb", "must be from 1 to %d (got %d)", MaxPeerDailyMB, p.Caps.DailyMB)
	}
}

// Validate checks every field of p (the caps the volunteer set).
func (p *PeerCaps) Validate() error {
	c := &msgChecker{msg: "peer caps"}
	(&PeerOffer{Port: MinPeerPort, Caps: *p}).check(c)
	for i := range c.errs {
		c.errs[i].Path = strings.TrimPrefix(c.errs[i].Path, "peer.caps.")
	}
	return c.err()
}

// Validate checks every field of r. The error is a *MessageError.
func (r *RendezvousRequest) Validate() error {
	c := &msgChecker{msg: "rendezvous request"}
	checkID(c, "agent_id", r.AgentID)
	checkTests(c, "tests", r.Tests)
	checkVersion(c, "agent_version", r.AgentVersion)
	return c.err()
}

func checkID(c *msgChecker, path, id string) {
	switch {
	case id == "":
		c.add(path, "is required")
	case len(id) > MaxIDBytes:
		c.add(path, "is %d bytes, more than %d", len(id), MaxIDBytes)
	default:
		for i := 0; i < len(id); i++ {
			if !idByte(id[i]) {
				c.add(path, "has %q at byte %d: only A-Z a-z 0-9 . _ : - are allowed", id[i], i)
				return
			}
		}
	}
}

func idByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
		b == '.' || b == '_' || b == ':' || b == '-'
}

func checkServerURL(c *msgChecker, path, s string) {
	if s == "" {
		c.add(path, "is required")
		return
	}
	if len(s) > MaxURLBytes {
		c.add(path, "is %d bytes, more than %d", len(s), MaxURLBytes)
		return
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		c.add(path, "is not a URL: %s", strings.TrimPrefix(err.Error(), "parse "))
	case u.Scheme != "http" && u.Scheme != "https":
		c.add(path, "must be an http or https URL, not %.16q", u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		c.add(path, "has no host")
	case u.User != nil:
		c.add(path, "must not hold credentials: agents receive it")
	}
}

func checkTests(c *msgChecker, path string, tests []string) {
	switch {
	case len(tests) == 0:
		c.add(path, "must name at least one test (known: %s)", strings.Join(schemas.TestNames(), ", "))
		return
	case len(tests) > MaxRendezvousTests:
		c.add(path, "has %d entries, more than %d", len(tests), MaxRendezvousTests)
		return
	}
	for i, name := range tests {
		p := fmt.Sprintf("%s[%d]", path, i)
		if _, ok := schemas.Lookup(name); !ok {
			c.add(p, "unknown test %.32q (known: %s)", name, strings.Join(schemas.TestNames(), ", "))
			continue
		}
		for j := range i {
			if tests[j] == name {
				c.add(p, "repeats %s[%d] (%s)", path, j, name)
				break
			}
		}
	}
}

func checkVersion(c *msgChecker, path, v string) {
	switch {
	case len(v) > MaxVersionBytes:
		c.add(path, "is %d bytes, more than %d", len(v), MaxVersionBytes)
	case !utf8.ValidString(v):
		c.add(path, "is not valid UTF-8")
	case strings.ContainsFunc(v, unicode.IsControl):
		c.add(path, "must not hold control characters")
	}
}
