package collector

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/neubot/neubot/internal/looptest"
	"github.com/neubot/neubot/internal/ratelimit"
	"github.com/neubot/neubot/internal/webtest"
	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/schemas"
)

// helloServer is a peer's listener on a real loopback socket: it answers
// the reachability check as id (or as claim, when set) and counts checks.
type helloServer struct {
	*httptest.Server
	checks atomic.Int64
	port   int
}

func newHelloServer(t *testing.T, id, claim string) *helloServer {
	t.Helper()
	h := &helloServer{}
	if claim == "" {
		claim = id
	}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != rendezvous.PeerHelloPath {
			http.NotFound(w, r)
			return
		}
		h.checks.Add(1)
		json.NewEncoder(w).Encode(rendezvous.PeerHello{ID: claim, Nonce: r.URL.Query().Get("nonce")})
	}))
	t.Cleanup(h.Close)
	h.port = h.Listener.Addr().(*net.TCPAddr).Port
	return h
}

// loopbackPeers lets peers register from loopback, as the tests' do.
var loopbackPeers = Config{PeerNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}

func peerRegistration(id string, port int) rendezvous.ServerRegistration {
	return rendezvous.ServerRegistration{
		ID: id, Tests: []string{schemas.SpeedtestName, schemas.NDT7Name}, Version: "1.0.0",
		Load: rendezvous.ServerLoad{Capacity: 1},
		Peer: &rendezvous.PeerOffer{Port: port, Caps: rendezvous.PeerCaps{MaxTests: 1, MaxMbps: 20, DailyMB: 500}},
	}
}

// registerPeer posts a peer registration and returns the status and ack.
func registerPeer(t *testing.T, url string, reg rendezvous.ServerRegistration) (int, rendezvous.RegistrationAck, string) {
	t.Helper()
	code, body := postJSON(t, url, rendezvous.PeerRegisterPath, reg)
	var ack rendezvous.RegistrationAck
	if code == http.StatusOK {
		if err := json.Unmarshal(body, &ack); err != nil {
			t.Fatalf("ack is not JSON: %v: %s", err, body)
		}
		if ack.Peer == nil {
			t.Fatalf("peer ack without peer status: %s", body)
		}
	}
	return code, ack, string(body)
}

// askWithPeers asks the rendezvous as an agent that allows peer tests.
func askWithPeers(t *testing.T, url string, peers bool) rendezvous.RendezvousResponse {
	t.Helper()
	code, body := postJSON(t, url, rendezvous.RendezvousPath, rendezvous.RendezvousRequest{
		AgentID: "123e4567-e89b-12d3-a456-426614174000", Tests: []string{schemas.SpeedtestName}, Peers: peers,
	})
	if code != http.StatusOK {
		t.Fatalf("rendezvous: %d %s", code, body)
	}
	var resp rendezvous.RendezvousResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestPeerReachable: a peer that answers the hello is listed, with the URL
// the collector made from the source address, to agents that allow peers
// only, by load among the servers.
func TestPeerReachable(t *testing.T) {
	_, srv, _ := rendezvousServer(t, loopbackPeers)
	h := newHelloServer(t, "peer-a", "")
	register(t, srv.URL, registration("busy-server", 2, 0, 2))
	register(t, srv.URL, registration("idle-server", 0, 0, 4))
	reg := peerRegistration("peer-a", h.port)
	reg.Load = rendezvous.ServerLoad{Active: 0, Queued: 0, Capacity: 1}
	code, ack, body := registerPeer(t, srv.URL, reg)
	want := fmt.Sprintf("http://127.0.0.1:%d", h.port)
	if code != http.StatusOK || !ack.Peer.Listed || ack.Peer.URL != want || ack.Peer.Reason != "" || ack.HeartbeatS != 10 {
		t.Fatalf("status %d, ack %+v (%s); want listed at %s", code, ack, body, want)
	}
	if h.checks.Load() != 1 {
		t.Fatalf("%d checks, want 1", h.checks.Load())
	}
	with := askWithPeers(t, srv.URL, true).Servers[schemas.SpeedtestName]
	var ids []string
	for _, s := range with {
		ids = append(ids, s.ID)
		if (s.ID == "peer-a") != s.Peer {
			t.Errorf("%s: peer=%v", s.ID, s.Peer)
		}
	}
	// Load ties at 0 between the idle server and the idle peer: in
	// random order, so that agents spread over them.
	slices.Sort(ids[:2])
	if !slices.Equal(ids, []string{"idle-server", "peer-a", "busy-server"}) {
		t.Fatalf("with peers: %v", ids)
	}
	for _, s := range with {
		if s.Peer && s.URL != want {
			t.Fatalf("peer listed at %s, want %s", s.URL, want)
		}
	}
	without := askWithPeers(t, srv.URL, false).Servers[schemas.SpeedtestName]
	if len(without) != 2 || slices.ContainsFunc(without, func(s rendezvous.ServerInfo) bool { return s.Peer }) {
		t.Fatalf("an agent that did not allow peers got %+v", without)
	}
	// Heartbeats do not connect back again within PeerRecheck.
	for range 3 {
		if code, ack, _ := registerPeer(t, srv.URL, reg); code != http.StatusOK || !ack.Peer.Listed {
			t.Fatalf("heartbeat: %d %+v", code, ack)
		}
	}
	if h.checks.Load() != 1 {
		t.Fatalf("%d checks after heartbeats, want 1", h.checks.Load())
	}
}

// TestPeerUnreachable: a peer the collector cannot connect back to, or
// that answers as someone else, is never listed, and told why; the answer
// is remembered for PeerRetry, then checked again.
func TestPeerUnreachable(t *testing.T) {
	_, srv, clock := rendezvousServer(t, loopbackPeers)
	closedPort := looptest.ClosedAddr(t).Port
	impostor := newHelloServer(t, "peer-c", "someone-else")
	notNeubot := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notNeubot.Close)
	for _, tt := range []struct {
		id, reason string
		port       int
	}{
		{"peer-b", "refused", closedPort},
		{"peer-c", "another agent", impostor.port},
		{"peer-d", "404", notNeubot.Listener.Addr().(*net.TCPAddr).Port},
	} {
		code, ack, body := registerPeer(t, srv.URL, peerRegistration(tt.id, tt.port))
		if code != http.StatusOK || ack.Peer.Listed || !strings.Contains(ack.Peer.Reason, tt.reason) || ack.Peer.CheckedAt == "" {
			t.Fatalf("%s: status %d, ack %+v (%s); want not listed because %q", tt.id, code, ack.Peer, body, tt.reason)
		}
	}
	if got := askWithPeers(t, srv.URL, true).Servers[schemas.SpeedtestName]; len(got) != 0 {
		t.Fatalf("unreachable peers listed: %+v", got)
	}
	registerPeer(t, srv.URL, peerRegistration("peer-c", impostor.port))
	if impostor.checks.Load() != 1 {
		t.Fatalf("%d checks within PeerRetry, want 1", impostor.checks.Load())
	}
	clock.Advance(PeerRetry)
	registerPeer(t, srv.URL, peerRegistration("peer-c", impostor.port))
	if impostor.checks.Load() != 2 {
		t.Fatalf("%d checks after PeerRetry, want 2", impostor.checks.Load())
	}
}

// TestPeerBecomesUnreachable: a listed peer that moves to a port nobody
// can reach is delisted at its next registration.
func TestPeerBecomesUnreachable(t *testing.T) {
	_, srv, _ := rendezvousServer(t, loopbackPeers)
	h := newHelloServer(t, "peer-a", "")
	if _, ack, _ := registerPeer(t, srv.URL, peerRegistration("peer-a", h.port)); !ack.Peer.Listed {
		t.Fatalf("not listed: %+v", ack.Peer)
	}
	port := looptest.ClosedAddr(t).Port
	if _, ack, _ := registerPeer(t, srv.URL, peerRegistration("peer-a", port)); ack.Peer.Listed {
		t.Fatalf("listed at a closed port: %+v", ack.Peer)
	}
	if got := askWithPeers(t, srv.URL, true).Servers[schemas.SpeedtestName]; len(got) != 0 {
		t.Fatalf("delisted peer still handed out: %+v", got)
	}
}

// TestPeerCannotTakeAnotherPlace: a peer cannot delist or replace a
// platform server (its ID cannot be a server's), nor a peer registered from
// another address, even by failing its check on purpose.
func TestPeerCannotTakeAnotherPlace(t *testing.T) {
	c, srv, _ := rendezvousServer(t, loopbackPeers)
	register(t, srv.URL, registration("mlab1.mil04", 0, 0, 4))
	h := newHelloServer(t, "peer-a", "")
	if _, ack, _ := registerPeer(t, srv.URL, peerRegistration("peer-a", h.port)); !ack.Peer.Listed {
		t.Fatalf("not listed: %+v", ack.Peer)
	}
	// A server's ID in a peer registration is refused before any check.
	if code, body := postJSON(t, srv.URL, rendezvous.PeerRegisterPath, peerRegistration("mlab1.mil04", 9)); code != http.StatusBadRequest || !strings.Contains(string(body), "peer-") {
		t.Fatalf("a peer under a server's ID: %d %s", code, body)
	}
	// The same peer ID from another address: 409, and nothing changes.
	r := c.rendezvous()
	r.mu.Lock()
	r.servers["peer-a"].addr = "192.0.2.99" // as if registered from elsewhere
	r.mu.Unlock()
	port := looptest.ClosedAddr(t).Port
	if code, body := postJSON(t, srv.URL, rendezvous.PeerRegisterPath, peerRegistration("peer-a", port)); code != http.StatusConflict {
		t.Fatalf("another address's peer ID: %d %s", code, body)
	}
	ids, _ := askRendezvous(t, srv.URL, schemas.SpeedtestName)
	if !slices.Equal(ids[schemas.SpeedtestName], []string{"mlab1.mil04"}) {
		t.Fatalf("servers listed after the attempts: %v", ids)
	}
	if got := askWithPeers(t, srv.URL, true).Servers[schemas.SpeedtestName]; len(got) != 2 {
		t.Fatalf("after the attempts, with peers: %+v", got)
	}
}

// TestRendezvousKeepsAServer: however many idle peers there are, an agent
// that allows peers still gets a platform server among its candidates.
func TestRendezvousKeepsAServer(t *testing.T) {
	c, srv, _ := rendezvousServer(t, loopbackPeers)
	register(t, srv.URL, registration("busy-server", 10, 5, 2))
	r := c.rendezvous()
	for i := range 2 * MaxServersPerTest {
		reg := peerRegistration(fmt.Sprintf("peer-%02d", i), 10000+i)
		reg.URL = fmt.Sprintf("http://192.0.2.%d:9777", i+1)
		if _, err := r.upsert(reg, fmt.Sprintf("192.0.2.%d", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	got := askWithPeers(t, srv.URL, true).Servers[schemas.SpeedtestName]
	if len(got) != MaxServersPerTest || got[len(got)-1].ID != "busy-server" {
		t.Fatalf("with %d idle peers: %+v", 2*MaxServersPerTest, got)
	}
	// Ties are broken at random: two answers list the idle peers in
	// different orders, almost surely.
	first, second := askWithPeers(t, srv.URL, true).Servers[schemas.SpeedtestName], askWithPeers(t, srv.URL, true).Servers[schemas.SpeedtestName]
	for range 20 {
		if first[0].ID != second[0].ID {
			return
		}
		second = askWithPeers(t, srv.URL, true).Servers[schemas.SpeedtestName]
	}
	t.Fatalf("21 answers all start with %s", first[0].ID)
}

// TestPeerBehindProxy: behind the operator's proxy (TrustProxy) a peer's
// address is the last X-Forwarded-For entry; otherwise the header is
// ignored. No connection is made to the forwarded address: it is private.
func TestPeerBehindProxy(t *testing.T) {
	h := newHelloServer(t, "peer-a", "")
	body, _ := json.Marshal(peerRegistration("peer-a", h.port))
	post := func(url string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, url+rendezvous.PeerRegisterPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Add("X-Forwarded-For", "127.0.0.1, 203.0.113.50")
		req.Header.Add("X-Forwarded-For", "192.0.2.1, 10.20.30.40")
		code, b := webtest.Do(t, req)
		return code, string(b)
	}
	_, proxied, _ := rendezvousServer(t, Config{TrustProxy: true, PeerNetworks: loopbackPeers.PeerNetworks})
	if code, b := post(proxied.URL); code != http.StatusForbidden || !strings.Contains(b, "10.20.30.40") {
		t.Fatalf("behind a trusted proxy: %d %s; want 403 naming 10.20.30.40", code, b)
	}
	_, direct, _ := rendezvousServer(t, loopbackPeers)
	if code, b := post(direct.URL); code != http.StatusOK || !strings.Contains(b, `"url":"http://127.0.0.1:`) {
		t.Fatalf("without trusting the header: %d %s; want the connection's address", code, b)
	}
}

// TestPeerRegistrationRefused: the two kinds of registration do not mix,
// an operator can turn peers off, and one address lists a bounded number.
func TestPeerRegistrationRefused(t *testing.T) {
	_, srv, clock := rendezvousServer(t, Config{RegisterToken: "tok", PeerNetworks: loopbackPeers.PeerNetworks})
	h := newHelloServer(t, "peer-x", "")
	if code, body := postJSON(t, srv.URL, rendezvous.RegisterPath, peerRegistration("peer-p", h.port), "Authorization", "Bearer tok"); code != http.StatusBadRequest || !strings.Contains(string(body), rendezvous.PeerRegisterPath) {
		t.Fatalf("peer at the servers' path: %d %s", code, body)
	}
	if code, body := postJSON(t, srv.URL, rendezvous.PeerRegisterPath, registration("s", 0, 0, 1)); code != http.StatusBadRequest || !strings.Contains(string(body), `"field":"peer"`) {
		t.Fatalf("server at the peers' path: %d %s", code, body)
	}
	withURL := peerRegistration("peer-p", h.port)
	withURL.URL = "http://192.0.2.1:9777"
	if code, body := postJSON(t, srv.URL, rendezvous.PeerRegisterPath, withURL); code != http.StatusBadRequest || !strings.Contains(string(body), `"field":"url"`) {
		t.Fatalf("peer naming its URL: %d %s", code, body)
	}
	// Peers need no token; each ID answers the hello as itself.
	var helloes []*helloServer
	for i := range MaxPeersPerAddress + 1 {
		id := fmt.Sprintf("peer-%d", i)
		hs := newHelloServer(t, id, "")
		helloes = append(helloes, hs)
		code, ack, body := registerPeer(t, srv.URL, peerRegistration(id, hs.port))
		if i < MaxPeersPerAddress && (code != http.StatusOK || !ack.Peer.Listed) {
			t.Fatalf("%s: %d %s", id, code, body)
		}
		if i == MaxPeersPerAddress && code != http.StatusTooManyRequests {
			t.Fatalf("peer %d from one address: %d %s; want 429", i+1, code, body)
		}
	}
	// A listed peer's heartbeat is not refused by the bound.
	if code, _, body := registerPeer(t, srv.URL, peerRegistration("peer-0", helloes[0].port)); code != http.StatusOK {
		t.Fatalf("heartbeat of a listed peer: %d %s", code, body)
	}

	_ = clock

	_, off, _ := rendezvousServer(t, Config{NoPeers: true})
	if code, body := postJSON(t, off.URL, rendezvous.PeerRegisterPath, peerRegistration("peer-p", h.port)); code != http.StatusForbidden {
		t.Fatalf("peers off: %d %s", code, body)
	}
	// By default, loopback and private sources are refused: the
	// collector never connects back into its own network.
	_, def, _ := rendezvousServer(t, Config{})
	if code, body := postJSON(t, def.URL, rendezvous.PeerRegisterPath, peerRegistration("peer-p", h.port)); code != http.StatusForbidden || !strings.Contains(string(body), "public") {
		t.Fatalf("a peer from loopback by default: %d %s", code, body)
	}
	if h.checks.Load() != 0 {
		t.Fatalf("the collector connected back %d times to refused sources", h.checks.Load())
	}
}

// FuzzPeerRegister posts arbitrary bytes as peers' registrations: never a
// 5xx nor a panic, always JSON, and a body that is one valid peer
// registration passes validation (it then meets the bound on checks in
// progress, set to none here, so that fuzzing makes no connection).
func FuzzPeerRegister(f *testing.F) {
	c, err := New(Config{SpoolDir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	c.peerSlots = make(chan struct{}) // every check is "in progress": 429
	c.peerRate = ratelimit.New(1e12, 1<<30)
	h := c.Handler()
	valid, _ := json.Marshal(peerRegistration("peer-1", 9777))
	c.cfg.PeerNetworks = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	for _, seed := range [][]byte{
		valid, nil, []byte("{}"), []byte(`{"peer":null}`), []byte(`{"peer":{"port":-1}}`),
		[]byte(`{"id":"p","tests":["speedtest"],"load":{"capacity":1},"peer":{"port":1,"caps":{"max_tests":1,"max_mbps":1e400,"daily_mb":1}}}`),
		[]byte(`{"id":"p","url":"http://x","tests":["ndt7"],"load":{"capacity":1},"peer":{"port":65535,"caps":{"max_tests":8,"max_mbps":0.001,"daily_mb":1000000}}}`),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, rendezvous.PeerRegisterPath, bytes.NewReader(body))
		w := serveFuzzed(t, h, r, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusTooManyRequests, http.StatusForbidden)
		var m rendezvous.ServerRegistration
		dec := json.NewDecoder(bytes.NewReader(body))
		ok := dec.Decode(&m) == nil && m.Peer != nil && m.Validate() == nil
		if _, err := dec.Token(); err != io.EOF {
			ok = false
		}
		if ok && len(body) <= rendezvous.MaxRendezvousBodyBytes && w.Code != http.StatusTooManyRequests {
			t.Fatalf("valid peer registration %q answered %d: %s", body, w.Code, w.Body.Bytes())
		}
	})
}
