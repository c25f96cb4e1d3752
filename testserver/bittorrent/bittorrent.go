// Package bittorrent is the server side of the BitTorrent differential test
// (spec/bittorrent.md): the HTTP steps (start, collect) next to the other
// tests' on the test server's HTTP port, and two raw TCP listeners, one on
// a BitTorrent port and one on a neutral port, where the agent's flows
// arrive. A flow is let in only when the 20 bytes at the info_hash offset of
// its first 68 bytes are the key of a flow of a live session, derived from
// the session's token (wire.FlowKey), from the session's client address,
// on the port and in the shape its kind requires; anything else is closed
// without an answer.
package bittorrent

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/neubot/neubot/internal/httpx"
	spec "github.com/neubot/neubot/proto/bittorrent"
	"github.com/neubot/neubot/proto/bittorrent/wire"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver"
	"github.com/neubot/neubot/testserver/rawtcp"
)

// Provider serves the BitTorrent test.
type Provider struct {
	testserver.Env

	st *state
}

// state is the provider's: the flow keys of live sessions and the
// listeners and connections to close.
type state struct {
	keys    testserver.FlowKeys[wire.Key]
	mu      sync.Mutex // guards the listeners' ports and hosts
	raw     rawtcp.Server
	btPort  int
	neutral int
	web     int
	hosts   []string // announced to clients; empty: the HTTP host
	peerID  [20]byte
}

// Addrs are the addresses of the raw listeners.
type Addrs struct {
	// BitTorrent, Neutral and Web are host:port of the application-port,
	// neutral-port and web-port listeners (Web empty: no web-port flows).
	BitTorrent, Neutral, Web string
	// Hosts are more addresses (IP literals) to listen on with the same
	// ports, announced to clients with the host of BitTorrent so that a
	// test spreads its flows over them (spec/bittorrent.md).
	Hosts []string
}

// view is the server's record of one session.
type view struct {
	mu             sync.Mutex
	params         *spec.StartRequest
	sent, received atomic.Int64
	flows          map[int]*serverFlow
}

// serverFlow is what the server measured of one flow.
type serverFlow struct {
	kind, dir string
	host      int
	samples   []schemas.ThroughputSample
	failure   string // schemas.FailureOf's word
	pipeline  int    // upload flows: the most requests outstanding
}

func viewOf(s *testserver.Session) *view {
	return s.View(func() any { return &view{flows: map[int]*serverFlow{}} }).(*view)
}

// name is the test's name, the class of its tokens.
var name = testserver.Test(schemas.BitTorrentName)

// New is the BitTorrent test's constructor in testserver/registry: the test
// is offered when the settings name its listeners, which it binds.
func New(env testserver.Env) (testserver.Provider, error) {
	set := env.Settings
	if set.BitTorrentListen == "" && set.NeutralListen == "" {
		return nil, testserver.ErrNotOffered
	}
	p := NewProvider(Provider{Env: env})
	if err := p.ListenAddrs(Addrs{BitTorrent: set.BitTorrentListen, Neutral: set.NeutralListen, Web: set.WebListen, Hosts: set.BitTorrentHosts}); err != nil {
		return nil, err
	}
	return p, nil
}

// Spec names the test and its negotiate and collect paths, with its longer
// per-test timer.
func (p *Provider) Spec() testserver.Spec {
	return testserver.Spec{Name: name, NegotiatePath: spec.NegotiatePath, CollectPath: spec.CollectPath,
		MaxCollectBody: spec.MaxCollectBody, TestTimeout: spec.TestTimeout}
}

// NewProvider returns a provider; Listen starts its raw listeners.
func NewProvider(p Provider) *Provider {
	p.Env = p.Env.WithDefaults()
	p.st = &state{peerID: wire.PeerID()}
	p.st.raw.Name, p.st.raw.Logger = schemas.BitTorrentName, p.Logger
	return &p
}

// Listen binds the BitTorrent and the neutral listener and serves them
// in the background until Close.
func (p *Provider) Listen(bittorrentAddr, neutralAddr string) error {
	return p.ListenAddrs(Addrs{BitTorrent: bittorrentAddr, Neutral: neutralAddr})
}

// Port roles of a listener.
const (
	roleApp     = schemas.PortApplication
	roleNeutral = schemas.PortNeutral
	roleWeb     = schemas.PortWeb
)

// ListenAddrs binds every listener of a and serves them in the background
// until Close.
func (p *Provider) ListenAddrs(a Addrs) error {
	host, _, err := net.SplitHostPort(a.BitTorrent)
	if err != nil {
		return fmt.Errorf("bittorrent: listen address %q: %w", a.BitTorrent, err)
	}
	hosts := []string{host}
	for _, h := range a.Hosts {
		ip, err := netip.ParseAddr(h)
		if err != nil || ip.IsUnspecified() {
			return fmt.Errorf("bittorrent: host %q must be a specific IP address", h)
		}
		if !slicesContains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) > spec.MaxHosts {
		return fmt.Errorf("bittorrent: %d hosts, at most %d", len(hosts), spec.MaxHosts)
	}
	type bound struct {
		l    net.Listener
		role string
		host int
	}
	var all []bound
	fail := func(err error) error {
		for _, b := range all {
			b.l.Close()
		}
		return err
	}
	ports := map[string]int{}
	for i, h := range hosts {
		for _, r := range []struct{ role, addr string }{{roleApp, a.BitTorrent}, {roleNeutral, a.Neutral}, {roleWeb, a.Web}} {
			if r.addr == "" {
				continue
			}
			_, port, err := net.SplitHostPort(r.addr)
			if err != nil {
				return fail(fmt.Errorf("bittorrent: listen address %q: %w", r.addr, err))
			}
			if i == 0 {
				h, _, _ = net.SplitHostPort(r.addr) // each listener's own host
			}
			if n, ok := ports[r.role]; ok {
				port = strconv.Itoa(n)
			}
			l, err := net.Listen("tcp", net.JoinHostPort(h, port))
			if err != nil {
				return fail(fmt.Errorf("bittorrent: listen on %s: %w", net.JoinHostPort(h, port), err))
			}
			ports[r.role] = l.Addr().(*net.TCPAddr).Port
			all = append(all, bound{l, r.role, i})
		}
	}
	announce := hosts
	if ip, err := netip.ParseAddr(host); err != nil || ip.IsUnspecified() {
		announce = nil // a wildcard: clients use the HTTP host
	}
	p.st.mu.Lock()
	p.st.btPort, p.st.neutral, p.st.web = ports[roleApp], ports[roleNeutral], ports[roleWeb]
	p.st.hosts = announce
	p.st.mu.Unlock()
	for _, b := range all {
		p.st.raw.Serve(b.l, func(c net.Conn) error { return p.flow(c, b.role, b.host) })
	}
	return nil
}

func slicesContains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// Ports returns the bound ports (0 before Listen).
func (p *Provider) Ports() (bittorrent, neutral int) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	return p.st.btPort, p.st.neutral
}

// WebPort returns the bound web port (0: none).
func (p *Provider) WebPort() int {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	return p.st.web
}

// Close stops the listeners and ends the flows in progress.
func (p *Provider) Close() error { return p.st.raw.Close() }

// Routes registers the HTTP endpoints on mux.
func (p *Provider) Routes(mux testserver.Mux) {
	mux.Handle("POST "+spec.StartPath, http.HandlerFunc(p.start))
}

var fail = testserver.Fail

func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) *testserver.Session {
	s, err := p.Negotiator.AuthorizeTest(r, name)
	if err != nil {
		fail(w, testserver.StatusOf(err), "%v", err)
		return nil
	}
	return s
}

// start takes the flows' parameters, makes the session's flow keys known
// to the listeners and answers with their ports.
func (p *Provider) start(w http.ResponseWriter, r *http.Request) {
	s := p.authorize(w, r)
	if s == nil {
		return
	}
	var req spec.StartRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, spec.MaxStartBody)).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "bad start request: %v", err)
		return
	}
	dur := time.Duration(req.FlowDurationS * float64(time.Second))
	every := time.Duration(req.SampleEveryS * float64(time.Second))
	if dur < spec.MinFlowDuration || dur > spec.MaxFlowDuration || every < spec.MinSampleEvery || every > spec.MaxSampleEvery ||
		req.MaxFlowBytes < 0 || req.MaxFlowBytes > spec.MaxFlowBytes || req.KneeBytes < 0 || req.KneeBytes > spec.MaxFlowBytes {
		fail(w, http.StatusBadRequest, "flow_duration_s must be in [%g, %g], sample_every_s in [%g, %g], max_flow_bytes and knee_bytes in [0, %d]",
			spec.MinFlowDuration.Seconds(), spec.MaxFlowDuration.Seconds(), spec.MinSampleEvery.Seconds(), spec.MaxSampleEvery.Seconds(), spec.MaxFlowBytes)
		return
	}
	if req.MaxFlowBytes == 0 {
		req.MaxFlowBytes = spec.MaxFlowBytes
	}
	v := viewOf(s)
	v.mu.Lock()
	again := v.params != nil
	if !again {
		v.params = &req
	}
	v.mu.Unlock()
	if again {
		fail(w, http.StatusConflict, "the test has started already")
		return
	}
	refs := map[wire.Key]testserver.FlowRef{}
	for i := 0; i < spec.MaxFlows; i++ {
		for _, kind := range schemas.FlowKinds {
			for _, dir := range []string{schemas.DirDownload, schemas.DirUpload} {
				refs[wire.FlowKey(s.Token, kind, dir, i)] = testserver.FlowRef{Session: s, Kind: kind, Dir: dir, Index: i}
			}
		}
	}
	p.st.keys.Issue(refs)
	p.st.mu.Lock()
	resp := spec.StartResponse{BitTorrentPort: p.st.btPort, NeutralPort: p.st.neutral, WebPort: p.st.web, Hosts: p.st.hosts}
	p.st.mu.Unlock()
	httpx.WriteJSON(w, http.StatusOK, resp)
}

// flow admits one connection and runs the server's side of its flow.
func (p *Provider) flow(c net.Conn, role string, hostIndex int) error {
	c.SetDeadline(time.Now().Add(spec.HandshakeTimeout))
	hs := make([]byte, spec.HandshakeLen)
	if _, err := io.ReadFull(c, hs); err != nil {
		return err
	}
	key, isBT, err := wire.ParseHandshake(hs)
	if err != nil {
		return err
	}
	ref, err := p.st.keys.Admit(key, c)
	if err != nil {
		return err
	}
	s := ref.Session
	payload, port := schemas.KindCell(ref.Kind)
	switch {
	case port != role:
		return fmt.Errorf("a %s flow on the wrong port", ref.Kind)
	case isBT != (payload == schemas.PayloadBitTorrent):
		return fmt.Errorf("a %s flow in the wrong shape", ref.Kind)
	}
	done, err := p.Negotiator.Begin(s, func() { _ = c.SetDeadline(time.Now()) })
	if err != nil {
		return err
	}
	defer done()
	v := viewOf(s)
	v.mu.Lock()
	params := *v.params
	v.mu.Unlock()
	random := payload == schemas.PayloadRandom
	reply := wire.Handshake(key, p.st.peerID)
	if random {
		reply = wire.RandomHandshake(key)
	}
	dur := time.Duration(params.FlowDurationS * float64(time.Second))
	c.SetDeadline(time.Time{}) // the flow sets its own, per read and write (stalls)
	limit := time.AfterFunc(dur+30*time.Second, func() { c.Close() })
	defer limit.Stop()
	f := &wire.Flow{Conn: c, Random: random, Duration: dur, SampleEvery: time.Duration(params.SampleEveryS * float64(time.Second)),
		MaxBytes: params.MaxFlowBytes, KneeBytes: params.KneeBytes, Sent: new(atomic.Int64), Received: new(atomic.Int64)}
	if _, err := c.Write(reply); err != nil {
		return err
	}
	sf := &serverFlow{kind: ref.Kind, dir: ref.Dir, host: hostIndex}
	if ref.Dir == schemas.DirDownload {
		sf.samples, err = f.Seed()
	} else {
		sf.samples, err = f.Leech()
		sf.pipeline = f.MaxOutstanding
	}
	sf.failure = schemas.FailureOf(err)
	v.sent.Add(f.Sent.Load() + int64(len(reply)))
	v.received.Add(f.Received.Load() + int64(len(hs)))
	p.OnBytes(f.Sent.Load(), f.Received.Load())
	if cerr := p.Negotiator.Count(s, f.Sent.Load()+f.Received.Load()); cerr != nil && err == nil {
		err = cerr
	}
	v.mu.Lock()
	v.flows[ref.Index] = sf
	v.mu.Unlock()
	return err
}

// Merge puts the server's receiver samples into the upload flows (the
// client could only count what it wrote) and the server's view into the
// record, and recomputes the comparisons.
func (p *Provider) Merge(rec *schemas.Record, s *testserver.Session) error {
	keys, err := testserver.KeysOf[*schemas.BitTorrent](rec, schemas.BitTorrentName)
	if err != nil {
		return err
	}
	p.merge(keys, s)
	rec.Server.Plausibility = testserver.BitTorrentPlausibility(keys)
	return nil
}

// merge puts the server's receiver samples into the upload flows (the
// client could only count what it wrote), the server's view into the record, and recomputes the comparisons. In a
// record of methodology version 2 it also puts the server's samples of
// every flow (sender's in download), the address each flow reached and
// the server's failures, reduces the client's failures to the vocabulary,
// and cross-checks the client's download samples.
func (p *Provider) merge(keys *schemas.BitTorrent, s *testserver.Session) {
	v := viewOf(s)
	v.mu.Lock()
	defer v.mu.Unlock()
	v2 := keys.Hosts > 0
	for i := range keys.Flows {
		f := &keys.Flows[i]
		sf := v.flows[int(f.Index)]
		if sf != nil && (sf.kind != f.Kind || sf.dir != f.Direction) {
			sf = nil
		}
		if v2 {
			f.Error = vocabulary(f.Error)
			f.ServerSamples, f.ServerMbps, f.ServerError, f.Host = nil, 0, wire.ServerUnseen, 0
			if sf != nil {
				f.ServerSamples, f.ServerError, f.Host = sf.samples, sf.failure, uint8(sf.host)
				f.ServerMbps = wire.FlowMbps(sf.samples, keys.WarmupS)
			}
		}
		if f.Direction != schemas.DirUpload {
			continue
		}
		f.Samples, f.Bytes, f.Mbps = nil, 0, 0
		if sf == nil {
			if f.Error == "" {
				f.Error = schemas.FailureProtocol // the server saw no such flow
			}
			continue
		}
		f.Samples = sf.samples
		if n := len(sf.samples); n > 0 {
			f.Bytes = sf.samples[n-1].Bytes
		}
		f.Mbps = wire.FlowMbps(sf.samples, keys.WarmupS)
		if v2 {
			f.Pipeline = uint16(sf.pipeline)
		} else if f.Error == "" && sf.failure != "" {
			f.Error = sf.failure
		}
	}
	if v2 {
		keys.Hosts = uint8(max(1, len(p.st.hosts)))
		cf, cd := wire.CrossCheck(keys)
		keys.ClientCheckFlows, keys.ClientCheckDisagree = uint16(cf), uint16(cd)
	}
	keys.ServerView = &schemas.BitTorrentServer{BytesSent: uint64(v.sent.Load()), BytesReceived: uint64(v.received.Load()), Flows: uint16(len(v.flows))}
	wire.Analyze(keys)
}

// vocabulary keeps a client's failure word if it is one of
// schemas/failure.go's, and makes anything else "other": no free text
// reaches the record.
func vocabulary(w string) string {
	switch w {
	case "", schemas.FailureTimeout, schemas.FailureConnectionReset, schemas.FailureConnectionRefused, schemas.FailureEOF,
		schemas.FailureClosedAbnormally, schemas.FailureCanceled, schemas.FailureProtocol, schemas.FailureOther:
		return w
	}
	return schemas.FailureOther
}
