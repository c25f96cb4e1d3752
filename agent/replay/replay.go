// Package replay is the client side of the replay differential test
// (spec/spec.md): negotiate a slot, tell the server the trace and the
// flows' parameters, then run repetitions of two kinds of flow, interleaved
// in rotated order, each replaying the trace: original (opening with the
// application's real first bytes, for TLS a ClientHello carrying the chosen
// server name) and inverted (the same bytes with every bit inverted). The
// server measures what the client acknowledges and decides at collect.
package replay

import (
	"context"
	"fmt"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/session"
	"github.com/neubot/neubot/proto/bittorrent/wire"
	spec "github.com/neubot/neubot/proto/replay"
	"github.com/neubot/neubot/proto/replay/trace"
	"github.com/neubot/neubot/schemas"
)

// Config tunes the test; the zero value is the default: the tls-video
// trace with a video service's name, 8 repetitions of 2 s flows (8 pairs:
// the sign test needs 5 at least).
type Config struct {
	Trace        string // default tls-video
	TraceVersion int    // 0: the newest
	// SNI is the server name of the original flows' ClientHello (default
	// DefaultSNI).
	SNI          string
	Repetitions  int
	FlowDuration time.Duration
	SampleEvery  time.Duration
	Warmup       time.Duration
}

// DefaultSNI is a video service's name, as Wehe's replays carry.
const DefaultSNI = "googlevideo.com"

func (c *Config) defaults() {
	if c.Trace == "" {
		c.Trace = "tls-video"
	}
	if c.SNI == "" {
		c.SNI = DefaultSNI
	}
	if c.Repetitions <= 0 {
		c.Repetitions = 8
	}
	if c.FlowDuration <= 0 {
		c.FlowDuration = 2 * time.Second
	}
	if c.SampleEvery <= 0 {
		c.SampleEvery = 125 * time.Millisecond
	}
	if c.Warmup <= 0 {
		c.Warmup = 500 * time.Millisecond
	}
}

// Measurer runs replay tests.
type Measurer struct{ cfg Config }

// NewMeasurer returns a measurer.
func NewMeasurer(cfg Config) *Measurer {
	cfg.defaults()
	return &Measurer{cfg: cfg}
}

// Name implements plugin.Measurer.
func (m *Measurer) Name() string { return schemas.ReplayName }

// Run implements plugin.Measurer.
func (m *Measurer) Run(ctx context.Context, env plugin.Env) (*schemas.Record, error) {
	base, host, err := session.Base(schemas.ReplayName, env.ServerURL)
	if err != nil {
		return nil, err
	}
	if len(m.cfg.SNI) > 253 {
		return nil, fmt.Errorf("replay: server name of %d bytes", len(m.cfg.SNI))
	}
	tr, err := trace.Load(m.cfg.Trace, m.cfg.TraceVersion)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	if n := 2 * m.cfg.Repetitions; n > spec.MaxFlows || time.Duration(n)*m.cfg.FlowDuration > 80*time.Second {
		return nil, fmt.Errorf("replay: %d flows of %v do not fit the test's %v", n, m.cfg.FlowDuration, spec.TestTimeout)
	}
	progress, client := env.Report, env.Client()
	uid := uuid.NewString()
	start := time.Now()
	token, err := session.Slot(ctx, client, schemas.ReplayName, base+spec.NegotiatePath, uid, progress)
	if err != nil {
		return nil, err
	}
	var sr spec.StartResponse
	err = session.PostJSON(ctx, client, schemas.ReplayName, "start", base+spec.StartPath, token, spec.StartRequest{Trace: tr.Name, TraceVersion: tr.Version,
		FlowDurationS: m.cfg.FlowDuration.Seconds(), SampleEveryS: m.cfg.SampleEvery.Seconds()}, &sr, 4096)
	if err != nil {
		return nil, err
	}
	if sr.Port <= 0 || sr.Port > 65535 || sr.TraceVersion != tr.Version {
		return nil, session.BadAnswer(schemas.ReplayName, "start", "bad answer")
	}
	keys := &schemas.Replay{Trace: tr.Name, TraceVersion: uint16(tr.Version), SNI: m.cfg.SNI, Port: uint16(sr.Port),
		FlowDurationS: m.cfg.FlowDuration.Seconds(), SampleEveryS: m.cfg.SampleEvery.Seconds(), WarmupS: m.cfg.Warmup.Seconds()}
	kinds := []string{schemas.ReplayOriginal, schemas.ReplayInverted}
	var offered []string
	if sr.Host != "" {
		offered = []string{sr.Host}
	}
	hosts, err := session.FlowHosts(schemas.ReplayName, offered, host, 1)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(hosts[0], strconv.Itoa(sr.Port))
	for rep := 0; rep < m.cfg.Repetitions; rep++ {
		for i := range kinds {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			kind := kinds[(rep+i)%len(kinds)]
			f := schemas.ReplayFlow{Index: uint16(len(keys.Flows)), Kind: kind, StartS: math.Round(time.Since(start).Seconds()*1000) / 1000}
			progress(plugin.Progress{Phase: "download", Message: fmt.Sprintf("%s flow %d of %d", kind, len(keys.Flows)+1, 2*m.cfg.Repetitions)})
			m.flow(ctx, &f, addr, token, tr, keys.WarmupS)
			keys.Flows = append(keys.Flows, f)
		}
	}
	trace.Analyze(keys) // on the client's samples; the server decides again on its own
	for i := range keys.Flows {
		keys.Flows[i].Samples = nil // the server's replace them
	}
	rec := &schemas.Record{Envelope: env.Envelope(schemas.ReplayName, schemas.ReplayVersion, uid, start), TestKeys: keys}
	progress(plugin.Progress{Phase: "collect"})
	return session.Collect(ctx, client, schemas.ReplayName, base+spec.CollectPath, token, rec)
}

// flow runs one replayed flow; failures are recorded as words of
// schemas/failure.go's vocabulary.
func (m *Measurer) flow(ctx context.Context, f *schemas.ReplayFlow, addr, token string, tr *trace.Trace, warmup float64) {
	c, done, err := session.DialFlow(ctx, addr, spec.StallTimeout, m.cfg.FlowDuration+30*time.Second)
	if err != nil {
		f.Error = schemas.FailureOf(err)
		return
	}
	defer done()
	first := trace.ClientHello(m.cfg.SNI, trace.FlowKey(token, f.Kind, int(f.Index)))
	if f.Kind == schemas.ReplayInverted {
		first = trace.Invert(first)
	}
	c.SetWriteDeadline(time.Now().Add(spec.StallTimeout))
	if _, err := c.Write(first); err != nil {
		f.Error = schemas.FailureOf(err)
		return
	}
	fl := &trace.Flow{Conn: c, Trace: tr, Duration: m.cfg.FlowDuration, SampleEvery: m.cfg.SampleEvery, Stall: spec.StallTimeout}
	f.Samples, err = fl.Play()
	f.ClientMbps = wire.FlowMbps(f.Samples, warmup)
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	f.Error = schemas.FailureOf(err)
}
