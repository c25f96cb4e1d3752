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
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	spec "github.com/neubot/neubot/proto/bittorrent"
	"github.com/neubot/neubot/proto/bittorrent/wire"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver"
)

// Provider serves the BitTorrent test.
type Provider struct {
	Negotiator *testserver.Negotiator
	ServerID   string
	Version    string
	// Forward takes the authoritative record for delivery to the
	// collector; it must be durable when it returns nil.
	Forward func(*schemas.Record) error
	Logger  *slog.Logger
	// OnBytes counts payload bytes sent and received, for metrics.
	OnBytes func(sent, received int64)

	st *state
}

// state is the provider's: the flow keys of live sessions and the
// listeners and connections to close.
type state struct {
	mu        sync.Mutex
	keys      map[wire.Key]*flowRef
	listeners map[net.Listener]bool
	conns     map[net.Conn]bool
	closed    bool
	wg        sync.WaitGroup
	btPort    int
	neutral   int
	peerID    [20]byte
}

// flowRef is what a flow key stands for.
type flowRef struct {
	session   *testserver.Session
	kind, dir string
	index     int
	used      bool
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
	samples   []schemas.ThroughputSample
	err       string
}

func viewOf(s *testserver.Session) *view {
	return s.View(func() any { return &view{flows: map[int]*serverFlow{}} }).(*view)
}

// NewProvider returns a provider; Listen starts its raw listeners.
func NewProvider(p Provider) *Provider {
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.OnBytes == nil {
		p.OnBytes = func(int64, int64) {}
	}
	p.st = &state{keys: map[wire.Key]*flowRef{}, listeners: map[net.Listener]bool{}, conns: map[net.Conn]bool{}, peerID: wire.PeerID()}
	return &p
}

// Listen binds the BitTorrent and the neutral listener and serves them
// in the background until Close.
func (p *Provider) Listen(bittorrentAddr, neutralAddr string) error {
	bl, err := net.Listen("tcp", bittorrentAddr)
	if err != nil {
		return fmt.Errorf("bittorrent: listen on %s: %w", bittorrentAddr, err)
	}
	nl, err := net.Listen("tcp", neutralAddr)
	if err != nil {
		bl.Close()
		return fmt.Errorf("bittorrent: listen on %s: %w", neutralAddr, err)
	}
	p.st.mu.Lock()
	p.st.btPort, p.st.neutral = bl.Addr().(*net.TCPAddr).Port, nl.Addr().(*net.TCPAddr).Port
	p.st.listeners[bl], p.st.listeners[nl] = true, true
	p.st.mu.Unlock()
	p.st.wg.Add(2)
	go p.serve(bl, false)
	go p.serve(nl, true)
	return nil
}

// Ports returns the bound ports (0 before Listen).
func (p *Provider) Ports() (bittorrent, neutral int) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	return p.st.btPort, p.st.neutral
}

// Close stops the listeners and ends the flows in progress.
func (p *Provider) Close() error {
	p.st.mu.Lock()
	p.st.closed = true
	for l := range p.st.listeners {
		l.Close()
	}
	for c := range p.st.conns {
		c.Close()
	}
	p.st.mu.Unlock()
	p.st.wg.Wait()
	return nil
}

// Routes registers the HTTP endpoints on mux.
func (p *Provider) Routes(mux interface {
	Handle(pattern string, h http.Handler)
}) {
	mux.Handle("POST "+spec.StartPath, http.HandlerFunc(p.start))
	mux.Handle("POST "+spec.CollectPath, http.HandlerFunc(p.collect))
}

var fail = testserver.Fail

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) *testserver.Session {
	s, err := p.Negotiator.AuthorizeTest(r, schemas.BitTorrentName)
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
		req.MaxFlowBytes < 0 || req.MaxFlowBytes > spec.MaxFlowBytes {
		fail(w, http.StatusBadRequest, "flow_duration_s must be in [%g, %g], sample_every_s in [%g, %g], max_flow_bytes in [0, %d]",
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
	p.st.mu.Lock()
	p.forgetEnded()
	for i := 0; i < spec.MaxFlows; i++ {
		for _, kind := range []string{schemas.FlowBitTorrent, schemas.FlowRandom, schemas.FlowNeutral} {
			for _, dir := range []string{schemas.DirDownload, schemas.DirUpload} {
				p.st.keys[wire.FlowKey(s.Token, kind, dir, i)] = &flowRef{session: s, kind: kind, dir: dir, index: i}
			}
		}
	}
	bt, neutral := p.st.btPort, p.st.neutral
	p.st.mu.Unlock()
	writeJSON(w, http.StatusOK, spec.StartResponse{BitTorrentPort: bt, NeutralPort: neutral})
}

// forgetEnded drops the keys of sessions that are over.
func (p *Provider) forgetEnded() {
	for k, ref := range p.st.keys {
		if st := ref.session.State(); st == testserver.Done || st == testserver.Revoked {
			delete(p.st.keys, k)
		}
	}
}

func (p *Provider) serve(l net.Listener, neutral bool) {
	defer p.st.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		p.st.mu.Lock()
		if p.st.closed {
			p.st.mu.Unlock()
			c.Close()
			return
		}
		p.st.conns[c] = true
		p.st.wg.Add(1)
		p.st.mu.Unlock()
		go func() {
			defer p.st.wg.Done()
			if err := p.flow(c, neutral); err != nil {
				p.Logger.Debug("bittorrent: flow refused or failed", "remote", c.RemoteAddr().String(), "err", err)
			}
			c.Close()
			p.st.mu.Lock()
			delete(p.st.conns, c)
			p.st.mu.Unlock()
		}()
	}
}

// flow admits one connection and runs the server's side of its flow.
func (p *Provider) flow(c net.Conn, neutral bool) error {
	c.SetDeadline(time.Now().Add(spec.HandshakeTimeout))
	hs := make([]byte, spec.HandshakeLen)
	if _, err := io.ReadFull(c, hs); err != nil {
		return err
	}
	key, isBT, err := wire.ParseHandshake(hs)
	if err != nil {
		return err
	}
	p.st.mu.Lock()
	ref := p.st.keys[key]
	ok := ref != nil && !ref.used
	if ok {
		ref.used = true
	}
	p.st.mu.Unlock()
	if !ok {
		return errors.New("unknown or used flow key")
	}
	s := ref.session
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	switch {
	case s.State() != testserver.Active:
		return errors.New("the session is not active")
	case host != s.ClientAddr:
		return fmt.Errorf("flow from %s, session of %s", host, s.ClientAddr)
	case neutral != (ref.kind == schemas.FlowNeutral):
		return fmt.Errorf("a %s flow on the wrong port", ref.kind)
	case isBT != (ref.kind != schemas.FlowRandom):
		return fmt.Errorf("a %s flow in the wrong shape", ref.kind)
	}
	v := viewOf(s)
	v.mu.Lock()
	params := *v.params
	v.mu.Unlock()
	random := ref.kind == schemas.FlowRandom
	reply := wire.Handshake(key, p.st.peerID)
	if random {
		reply = wire.RandomHandshake(key)
	}
	dur := time.Duration(params.FlowDurationS * float64(time.Second))
	c.SetDeadline(time.Now().Add(dur + 30*time.Second))
	f := &wire.Flow{Conn: c, Random: random, Duration: dur, SampleEvery: time.Duration(params.SampleEveryS * float64(time.Second)),
		MaxBytes: params.MaxFlowBytes, Sent: new(atomic.Int64), Received: new(atomic.Int64)}
	if _, err := c.Write(reply); err != nil {
		return err
	}
	sf := &serverFlow{kind: ref.kind, dir: ref.dir}
	if ref.dir == schemas.DirDownload {
		err = f.Seed()
	} else {
		sf.samples, err = f.Leech()
	}
	if err != nil {
		sf.err = err.Error()
	}
	v.sent.Add(f.Sent.Load() + int64(len(reply)))
	v.received.Add(f.Received.Load() + int64(len(hs)))
	p.OnBytes(f.Sent.Load(), f.Received.Load())
	v.mu.Lock()
	v.flows[ref.index] = sf
	v.mu.Unlock()
	return err
}

// collect merges the client's record with the server's view, answers with
// the authoritative record, hands it to Forward and ends the session.
func (p *Provider) collect(w http.ResponseWriter, r *http.Request) {
	s, rec := p.Negotiator.Collected(w, r, schemas.BitTorrentName, spec.MaxCollectBody)
	if rec == nil {
		return
	}
	keys, ok := rec.TestKeys.(*schemas.BitTorrent)
	if !ok {
		fail(w, http.StatusBadRequest, "test_name must be %s", schemas.BitTorrentName)
		return
	}
	p.merge(rec, keys, s)
	p.Negotiator.Deliver(w, s, rec, p.Forward, p.Logger)
}

// merge puts the server's receiver samples into the upload flows (the
// client could only count what it wrote), the server's view and the
// client address into the record, and recomputes the comparisons.
func (p *Provider) merge(rec *schemas.Record, keys *schemas.BitTorrent, s *testserver.Session) {
	v := viewOf(s)
	v.mu.Lock()
	defer v.mu.Unlock()
	rec.Server.ID, rec.Server.Version, rec.Server.ClientAddress = p.ServerID, p.Version, s.ClientAddr
	for i := range keys.Flows {
		f := &keys.Flows[i]
		sf := v.flows[int(f.Index)]
		if f.Direction != schemas.DirUpload {
			continue
		}
		f.Samples, f.Bytes, f.Mbps = nil, 0, 0
		if sf == nil || sf.kind != f.Kind || sf.dir != f.Direction {
			if f.Error == "" {
				f.Error = "the server saw no such flow"
			}
			continue
		}
		f.Samples = sf.samples
		if n := len(sf.samples); n > 0 {
			f.Bytes = sf.samples[n-1].Bytes
		}
		f.Mbps = wire.FlowMbps(sf.samples, keys.WarmupS)
		if f.Error == "" && sf.err != "" {
			f.Error = truncate(sf.err, 256)
		}
	}
	keys.ServerView = &schemas.BitTorrentServer{BytesSent: uint64(v.sent.Load()), BytesReceived: uint64(v.received.Load()), Flows: uint16(len(v.flows))}
	wire.Analyze(keys)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
