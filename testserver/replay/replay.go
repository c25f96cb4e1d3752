// Package replay is the server side of the replay differential test
// (spec/replay.md): the HTTP steps (start, collect) on the test server's
// HTTP port, and a raw TCP listener (443 in production) where the agent's
// flows arrive. A flow is let in only when its first packet is a TLS
// handshake record, as is or bit-inverted, whose ClientHello random starts
// with the key of a flow of a live session (trace.FlowKey), from the
// session's client address, in the shape its kind requires; anything else
// is closed without an answer. The server then plays the server's side of
// the trace and samples what the client acknowledged.
package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/neubot/neubot/proto/bittorrent/wire"
	spec "github.com/neubot/neubot/proto/replay"
	"github.com/neubot/neubot/proto/replay/trace"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver"
	"github.com/neubot/neubot/testserver/rawtcp"
)

// Provider serves the replay test.
type Provider struct {
	testserver.Env

	keys testserver.FlowKeys[trace.Key]
	mu   sync.Mutex // guards l
	l    net.Listener
	raw  rawtcp.Server
}

type view struct {
	// running counts the admitted flows not yet recorded: Merge waits for
	// them (a client may collect before the server has seen its last
	// flow's close).
	running        sync.WaitGroup
	mu             sync.Mutex
	params         *spec.StartRequest
	trace          *trace.Trace
	sent, received int64
	flows          map[int]*serverFlow
}

type serverFlow struct {
	kind    string
	samples []schemas.ThroughputSample
	failure string
}

func viewOf(s *testserver.Session) *view {
	return s.View(func() any { return &view{flows: map[int]*serverFlow{}} }).(*view)
}

var name = testserver.Test(schemas.ReplayName)

// New is the provider of the test server's registry: offered only with a
// raw listener (Settings.ReplayListen).
func New(env testserver.Env) (testserver.Provider, error) {
	if env.Settings.ReplayListen == "" {
		return nil, testserver.ErrNotOffered
	}
	p := NewProvider(&Provider{Env: env})
	if err := p.Listen(env.Settings.ReplayListen); err != nil {
		return nil, err
	}
	return p, nil
}

// Spec says how the service negotiates and collects the test.
func (p *Provider) Spec() testserver.Spec {
	return testserver.Spec{Name: name, NegotiatePath: spec.NegotiatePath, CollectPath: spec.CollectPath,
		MaxCollectBody: spec.MaxCollectBody, TestTimeout: spec.TestTimeout}
}

// NewProvider returns a provider; Listen starts its listener.
func NewProvider(p *Provider) *Provider {
	p.Env = p.Env.WithDefaults()
	p.raw.Name, p.raw.Logger = schemas.ReplayName, p.Logger
	return p
}

// Listen binds the raw listener and serves it until Close.
func (p *Provider) Listen(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("replay: listen on %s: %w", addr, err)
	}
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	p.raw.Serve(l, p.flow)
	return nil
}

// Port returns the bound port.
func (p *Provider) Port() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l == nil {
		return 0
	}
	return p.l.Addr().(*net.TCPAddr).Port
}

// host is the listener's address to announce: empty for a wildcard.
func (p *Provider) host() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l == nil {
		return ""
	}
	ip := p.l.Addr().(*net.TCPAddr).IP
	if ip.IsUnspecified() {
		return ""
	}
	return ip.String()
}

// Close stops the listener and ends the flows in progress.
func (p *Provider) Close() error { return p.raw.Close() }

// Routes registers the HTTP endpoints on mux.
func (p *Provider) Routes(mux testserver.Mux) {
	mux.Handle("POST "+spec.StartPath, http.HandlerFunc(p.start))
}

func (p *Provider) start(w http.ResponseWriter, r *http.Request) {
	s, err := p.Negotiator.AuthorizeTest(r, name)
	if err != nil {
		testserver.Fail(w, testserver.StatusOf(err), "%v", err)
		return
	}
	var req spec.StartRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, spec.MaxStartBody)).Decode(&req); err != nil {
		testserver.Fail(w, http.StatusBadRequest, "bad start request: %v", err)
		return
	}
	dur := time.Duration(req.FlowDurationS * float64(time.Second))
	every := time.Duration(req.SampleEveryS * float64(time.Second))
	if dur < spec.MinFlowDuration || dur > spec.MaxFlowDuration || every < spec.MinSampleEvery || every > spec.MaxSampleEvery {
		testserver.Fail(w, http.StatusBadRequest, "flow_duration_s must be in [%g, %g], sample_every_s in [%g, %g]",
			spec.MinFlowDuration.Seconds(), spec.MaxFlowDuration.Seconds(), spec.MinSampleEvery.Seconds(), spec.MaxSampleEvery.Seconds())
		return
	}
	tr, err := trace.Load(req.Trace, req.TraceVersion)
	if err != nil {
		testserver.Fail(w, http.StatusBadRequest, "unknown trace %q version %d", req.Trace, req.TraceVersion)
		return
	}
	v := viewOf(s)
	v.mu.Lock()
	again := v.params != nil
	if !again {
		v.params, v.trace = &req, tr
	}
	v.mu.Unlock()
	if again {
		testserver.Fail(w, http.StatusConflict, "the test has started already")
		return
	}
	refs := map[trace.Key]testserver.FlowRef{}
	for i := 0; i < spec.MaxFlows; i++ {
		for _, kind := range []string{schemas.ReplayOriginal, schemas.ReplayInverted} {
			refs[trace.FlowKey(s.Token, kind, i)] = testserver.FlowRef{Session: s, Kind: kind, Index: i}
		}
	}
	p.keys.Issue(refs)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(spec.StartResponse{Host: p.host(), Port: p.Port(), TraceVersion: tr.Version})
}

func (p *Provider) flow(c net.Conn) error {
	c.SetDeadline(time.Now().Add(spec.HandshakeTimeout))
	key, inverted, err := trace.ReadFirst(c)
	if err != nil {
		return err
	}
	ref, err := p.keys.Admit(key, c)
	if err != nil {
		return err
	}
	if inverted != (ref.Kind == schemas.ReplayInverted) {
		return errors.New("a flow in the wrong shape")
	}
	v := viewOf(ref.Session)
	v.running.Add(1)
	defer v.running.Done()
	v.mu.Lock()
	params, tr := *v.params, v.trace
	v.mu.Unlock()
	dur := time.Duration(params.FlowDurationS * float64(time.Second))
	c.SetDeadline(time.Time{})
	limit := time.AfterFunc(dur+30*time.Second, func() { c.Close() })
	defer limit.Stop()
	f := &trace.Flow{Conn: c, Trace: tr, Duration: dur, SampleEvery: time.Duration(params.SampleEveryS * float64(time.Second)), Stall: spec.StallTimeout}
	samples, err := f.Serve()
	p.OnBytes(f.Sent.Load(), f.Received.Load())
	v.mu.Lock()
	v.sent += f.Sent.Load()
	v.received += f.Received.Load()
	v.flows[ref.Index] = &serverFlow{kind: ref.Kind, samples: samples, failure: schemas.FailureOf(err)}
	v.mu.Unlock()
	return err
}

// Merge puts the server's samples of every flow, its failures and its view
// into the record, and recomputes the comparison.
func (p *Provider) Merge(rec *schemas.Record, s *testserver.Session) error {
	keys, err := testserver.KeysOf[*schemas.Replay](rec, schemas.ReplayName)
	if err != nil {
		return err
	}
	v := viewOf(s)
	done := make(chan struct{})
	go func() { v.running.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(spec.StallTimeout):
	}
	v.mu.Lock()
	for i := range keys.Flows {
		f := &keys.Flows[i]
		f.Samples, f.Bytes, f.Mbps, f.ServerError = nil, 0, 0, trace.Unseen
		sf := v.flows[int(f.Index)]
		if sf == nil || sf.kind != f.Kind {
			continue
		}
		f.Samples, f.ServerError = sf.samples, sf.failure
		if n := len(sf.samples); n > 0 {
			f.Bytes = sf.samples[n-1].Bytes
		}
		f.Mbps = wire.FlowMbps(sf.samples, keys.WarmupS)
	}
	keys.ServerView = &schemas.ReplayServer{BytesSent: uint64(v.sent), BytesReceived: uint64(v.received), Flows: uint16(len(v.flows))}
	v.mu.Unlock()
	trace.Analyze(keys)
	return nil
}
