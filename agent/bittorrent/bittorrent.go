// Package bittorrent is the client side of the BitTorrent differential test
// (spec/bittorrent.md): negotiate a slot, tell the server the flows'
// parameters, then run repetitions of six kinds of flow, interleaved in
// rotated order, in both directions: BitTorrent peer wire and random bytes
// of the same sizes and timing (payload), each on BitTorrent's port, a
// neutral port and 443 (port), each flow to one of the server's addresses
// (host); or, with Config.Duels, the same kinds two at a time (wire.Plan).
// The server measures every flow (as receiver in upload, as sender in
// download), merges its samples at collect and decides per direction and
// factor with a sign test over pairs of flows, then what a difference is
// attributed to; flows that fail in most repetitions while others run say
// blocked.
package bittorrent

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/session"
	spec "github.com/neubot/neubot/proto/bittorrent"
	"github.com/neubot/neubot/proto/bittorrent/wire"
	"github.com/neubot/neubot/schemas"
)

// Config tunes the test; the zero value is the default methodology 2: 48
// flows of 1.25 s, one after the other, about 65 s in all; with Duels,
// methodology 3 (bench/bittorrent).
type Config struct {
	// Repetitions of each kind of flow per direction (default 4: 8 to 12
	// pairs of flows per comparison); with Duels, of the duels of Plan
	// (default 6: 12 pairs for the payload and for the port comparisons).
	Repetitions int
	// Duels runs methodology 3: the flows two at a time, a tested flow
	// with its control (wire.Plan), in both directions at once (6 repetitions
	// of 5 duels of 1.75 s by default: 120 flows, about 70 s).
	Duels bool
	// FlowDuration is how long each flow requests blocks (1.25 s; 1.75 s
	// with Duels). Longer
	// flows (up to 10 s, with MaxFlowBytes as "until N bytes") see
	// throttling that starts after a byte count or a delay; with fewer
	// Kinds or Directions they keep within the test's 90 s.
	FlowDuration time.Duration
	// SampleEvery is the throughput sampling period (125 ms).
	SampleEvery time.Duration
	// Kinds are the kinds of flow to run (default schemas.FlowKinds, less
	// the web-port ones when the server has no web port).
	Kinds []string
	// Directions to run (default download and upload).
	Directions []string
	// Warmup: samples of a flow's first Warmup are left out (500 ms).
	Warmup time.Duration
	// KneeBytes, when above 0, makes every flow run until its receiver
	// has this many bytes and then as long again, FlowDuration at most
	// (wire.Flow.KneeBytes): its tail then follows the first KneeBytes.
	// The flows' lengths then depend on the link: the flow budget, not
	// FlowDuration times the flows, keeps the test within its 90 s.
	KneeBytes int64
	// MaxFlowBytes ends a flow once its receiver has this many bytes
	// (default 32 MiB), bounding the data of a test on fast links: 2 s
	// flows run their course up to about 130 Mbit/s; above, they end
	// early, and with fewer than 8 samples after the warm-up a comparison
	// is inconclusive.
	MaxFlowBytes int64
}

// Triggered is the configuration for throttling that starts after a byte
// count (spec/bittorrent.md, "Longer flows"): methodology 2's flows one
// after the other, download only, the four kinds of BitTorrent's and the
// neutral port (both factors), 3 repetitions (6 pairs per factor), each
// flow running until it has carried TriggerKnee and then as long again
// (8 s at most), so that its tail, the second half, follows the first
// TriggerKnee bytes: a trigger of up to TriggerKnee throttles all of it.
// About 5 s a flow at 10 to 20 Mbit/s, 60 to 75 s in all.
func Triggered() Config {
	return Config{Repetitions: 3, FlowDuration: 8 * time.Second, KneeBytes: TriggerKnee, Directions: []string{schemas.DirDownload},
		Kinds: []string{schemas.FlowBitTorrent, schemas.FlowRandom, schemas.FlowNeutral, schemas.FlowRandomNeutral}}
}

// TriggerKnee is the byte count of Triggered's flows: 4 MiB, the largest
// trigger they see in full.
const TriggerKnee = 4 << 20

func (c *Config) defaults() {
	if c.Repetitions <= 0 {
		c.Repetitions = 4
		if c.Duels {
			c.Repetitions = 6
		}
	}
	if c.FlowDuration <= 0 {
		c.FlowDuration = 1250 * time.Millisecond
		if c.Duels {
			c.FlowDuration = 1750 * time.Millisecond
		}
	}
	if c.SampleEvery <= 0 {
		c.SampleEvery = 125 * time.Millisecond
	}
	if len(c.Directions) == 0 {
		c.Directions = []string{schemas.DirDownload, schemas.DirUpload}
	}
	if c.Warmup <= 0 {
		c.Warmup = 500 * time.Millisecond
	}
	if c.MaxFlowBytes <= 0 {
		c.MaxFlowBytes = 32 << 20
	}
}

// Measurer runs BitTorrent differential tests.
type Measurer struct{ cfg Config }

// NewMeasurer returns a measurer.
func NewMeasurer(cfg Config) *Measurer {
	cfg.defaults()
	return &Measurer{cfg: cfg}
}

// Name implements plugin.Measurer.
func (m *Measurer) Name() string { return schemas.BitTorrentName }

// run is the state of one test.
type run struct {
	cfg      Config
	base     string
	host     string
	token    string
	client   *http.Client
	progress func(plugin.Progress)
}

// Run implements plugin.Measurer.
func (m *Measurer) Run(ctx context.Context, env plugin.Env) (*schemas.Record, error) {
	base, host, err := session.Base(schemas.BitTorrentName, env.ServerURL)
	if err != nil {
		return nil, err
	}
	r := &run{cfg: m.cfg, base: base, host: host, client: env.Client(), progress: env.Report}
	uid := uuid.NewString()
	start := time.Now()
	if err := r.negotiate(ctx, uid); err != nil {
		return nil, err
	}
	var ports spec.StartResponse
	err = r.postJSON(ctx, "start", spec.StartPath, spec.StartRequest{
		FlowDurationS: m.cfg.FlowDuration.Seconds(), SampleEveryS: m.cfg.SampleEvery.Seconds(), MaxFlowBytes: m.cfg.MaxFlowBytes, KneeBytes: m.cfg.KneeBytes,
	}, &ports)
	if err != nil {
		return nil, err
	}
	hosts, err := session.FlowHosts(schemas.BitTorrentName, ports.Hosts, r.host, spec.MaxHosts)
	if err != nil {
		return nil, err
	}
	keys := &schemas.BitTorrent{
		BitTorrentPort: uint16(ports.BitTorrentPort), NeutralPort: uint16(ports.NeutralPort), WebPort: uint16(ports.WebPort),
		FlowDurationS: m.cfg.FlowDuration.Seconds(), SampleEveryS: m.cfg.SampleEvery.Seconds(), WarmupS: m.cfg.Warmup.Seconds(),
		Hosts: uint8(len(hosts)), MaxFlowBytes: uint64(m.cfg.MaxFlowBytes),
	}
	kinds := m.cfg.Kinds
	if len(kinds) == 0 {
		kinds = schemas.FlowKinds
	}
	var run []string
	for _, kind := range kinds {
		if _, port := schemas.KindCell(kind); port == schemas.PortWeb && ports.WebPort == 0 {
			continue
		}
		run = append(run, kind)
	}
	portOf := func(role string) uint16 {
		return uint16(map[string]int{schemas.PortApplication: ports.BitTorrentPort, schemas.PortNeutral: ports.NeutralPort, schemas.PortWeb: ports.WebPort}[role])
	}
	version := schemas.BitTorrentVersion
	if m.cfg.Duels {
		if err := r.duels(ctx, keys, run, hosts, portOf, start); err != nil {
			return nil, err
		}
		version = schemas.BitTorrentVersionDuels
	} else if err := r.sequence(ctx, keys, run, hosts, portOf, start); err != nil {
		return nil, err
	}
	wire.Analyze(keys) // the download part; the server redoes it with its upload samples
	rec := &schemas.Record{
		Envelope: env.Envelope(schemas.BitTorrentName, version, uid, start),
		TestKeys: keys,
	}
	r.progress(plugin.Progress{Phase: "collect"})
	return r.collect(ctx, rec)
}

// flowBudget is the time after the start of the test past which no flow
// starts: the flows end by then, and the test, collect included, within
// its 90 s even when cross traffic slows every flow's handshake.
const flowBudget = 80 * time.Second

// sequence runs the flows of methodology 2, one after the other.
func (r *run) sequence(ctx context.Context, keys *schemas.BitTorrent, kinds, hosts []string, portOf func(string) uint16, start time.Time) error {
	total := r.cfg.Repetitions * len(r.cfg.Directions) * len(kinds)
	// Flows that run to a knee and as long again last what the link makes
	// them: the flow budget below bounds the test.
	if total > spec.MaxFlows || r.cfg.KneeBytes <= 0 && time.Duration(total)*r.cfg.FlowDuration > 80*time.Second {
		return fmt.Errorf("bittorrent: %d flows of %v do not fit the test's %v: fewer repetitions, kinds or directions", total, r.cfg.FlowDuration, spec.TestTimeout)
	}
	peerID := wire.PeerID() // one per test, as a client keeps its own
	for rep := 0; rep < r.cfg.Repetitions; rep++ {
		for _, dir := range r.cfg.Directions {
			// The order of the kinds rotates with the repetition, so that
			// no kind always follows the same one; kind j of repetition
			// rep goes to address (j + rep) mod hosts, a Latin square.
			for i := range kinds {
				j := (rep + i) % len(kinds)
				kind := kinds[j]
				payload, role := schemas.KindCell(kind)
				host := (j + rep) % len(hosts)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if time.Since(start)+r.cfg.FlowDuration > flowBudget {
					return nil // the rest would not fit: the pairs run decide
				}
				f := schemas.BitTorrentFlow{Index: uint16(len(keys.Flows)), Kind: kind, Direction: dir, Port: portOf(role), StartS: round3(time.Since(start).Seconds()),
					Payload: payload, PortRole: role, Host: uint8(host)}
				r.progress(plugin.Progress{Phase: dir, Message: fmt.Sprintf("%s flow %d of %d", kind, len(keys.Flows)+1, total)})
				r.flow(ctx, &f, hosts[host], peerID, keys.WarmupS)
				keys.Flows = append(keys.Flows, f)
			}
		}
	}
	return nil
}

// duels runs the duels of methodology 3 (wire.Plan): two flows at once, in each
// direction, both directions at once.
func (r *run) duels(ctx context.Context, keys *schemas.BitTorrent, kinds, hosts []string, portOf func(string) uint16, start time.Time) error {
	slots := wire.Plan(kinds, r.cfg.Repetitions, len(hosts))
	if len(slots) == 0 {
		return fmt.Errorf("bittorrent: no duel of the design among the kinds %v", kinds)
	}
	if total := 2 * len(slots) * len(r.cfg.Directions); total > spec.MaxFlows || time.Duration(len(slots))*r.cfg.FlowDuration > 80*time.Second {
		return fmt.Errorf("bittorrent: %d duels of %v do not fit the test's %v: fewer repetitions or kinds", len(slots), r.cfg.FlowDuration, spec.TestTimeout)
	}
	peerID := wire.PeerID()
	for i, slot := range slots {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start)+r.cfg.FlowDuration > flowBudget {
			return nil
		}
		// The slot's duels, one per direction, start together: the two
		// flows of a duel meet the same cross traffic, and on an access
		// link the two directions do not compete.
		at := round3(time.Since(start).Seconds())
		first := len(keys.Flows)
		for _, dir := range r.cfg.Directions {
			for _, side := range slot {
				payload, role := schemas.KindCell(side.Kind)
				keys.Flows = append(keys.Flows, schemas.BitTorrentFlow{Index: uint16(len(keys.Flows)), Kind: side.Kind, Direction: dir, Port: portOf(role),
					StartS: at, Payload: payload, PortRole: role, Host: uint8(side.Host)})
			}
		}
		r.progress(plugin.Progress{Phase: "duels", Message: fmt.Sprintf("%s against %s, %d of %d", slot[0].Kind, slot[1].Kind, i+1, len(slots))})
		var wg sync.WaitGroup
		for j := first; j < len(keys.Flows); j++ {
			wg.Add(1)
			go func(f *schemas.BitTorrentFlow) {
				defer wg.Done()
				r.flow(ctx, f, hosts[f.Host], peerID, keys.WarmupS)
			}(&keys.Flows[j])
		}
		wg.Wait()
	}
	return nil
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// flow runs one flow; what goes wrong is recorded in f.Error (a measured
// failure, e.g. a reset, not a failure of the test).
// flow runs one flow to host; what goes wrong is recorded in f.Error as a
// word of schemas/failure.go's vocabulary (a measured failure, e.g. a
// reset, not a failure of the test): never an error's text, which carries
// addresses.
func (r *run) flow(ctx context.Context, f *schemas.BitTorrentFlow, host string, peerID [20]byte, warmup float64) {
	key := wire.FlowKey(r.token, f.Kind, f.Direction, int(f.Index))
	c, done, err := session.DialFlow(ctx, net.JoinHostPort(host, strconv.Itoa(int(f.Port))), spec.StallTimeout, r.cfg.FlowDuration+30*time.Second)
	if err != nil {
		f.Error = schemas.FailureOf(err)
		return
	}
	defer done()
	random := f.Payload == schemas.PayloadRandom
	hs := wire.Handshake(key, peerID)
	if random {
		hs = wire.RandomHandshake(key)
	}
	c.SetDeadline(time.Now().Add(spec.StallTimeout))
	if _, err := c.Write(hs); err != nil {
		f.Error = schemas.FailureOf(err)
		return
	}
	reply := make([]byte, spec.HandshakeLen)
	if _, err := io.ReadFull(c, reply); err != nil {
		f.Error = schemas.FailureOf(err)
		return
	}
	if got, bt, _ := wire.ParseHandshake(reply); got != key || bt == random {
		f.Error = schemas.FailureProtocol
		return
	}
	c.SetDeadline(time.Time{}) // the flow sets its own, per read and write (stalls)
	fl := &wire.Flow{Conn: c, Random: random, Duration: r.cfg.FlowDuration, SampleEvery: r.cfg.SampleEvery, MaxBytes: r.cfg.MaxFlowBytes, KneeBytes: r.cfg.KneeBytes}
	if f.Direction == schemas.DirDownload {
		f.Samples, err = fl.Leech()
		if n := len(f.Samples); n > 0 {
			f.Bytes = f.Samples[n-1].Bytes
		}
		f.Mbps = wire.FlowMbps(f.Samples, warmup)
		f.Pipeline = uint16(fl.MaxOutstanding)
	} else {
		_, err = fl.Seed() // the server samples as receiver
	}
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	f.Error = schemas.FailureOf(err)
}

// postJSON posts a step of the test with the token and decodes the answer.
func (r *run) postJSON(ctx context.Context, op, path string, in, out any) error {
	return session.PostJSON(ctx, r.client, schemas.BitTorrentName, op, r.base+path, r.token, in, out, 4096)
}

// negotiate waits for a slot with the speedtest's negotiation protocol at
// the BitTorrent test's path (long-polling, honouring Retry-After).
func (r *run) negotiate(ctx context.Context, uid string) (err error) {
	r.token, err = session.Slot(ctx, r.client, schemas.BitTorrentName, r.base+spec.NegotiatePath, uid, r.progress)
	return err
}

// collect posts the client's record and returns the server's merged one.
func (r *run) collect(ctx context.Context, rec *schemas.Record) (*schemas.Record, error) {
	return session.Collect(ctx, r.client, schemas.BitTorrentName, r.base+spec.CollectPath, r.token, rec)
}
