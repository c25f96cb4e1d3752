// Package bittorrent is the client side of the BitTorrent differential test
// (spec/bittorrent.md): negotiate a slot, tell the server the flows'
// parameters, then run repetitions of six kinds of flow, interleaved in
// rotated order, in both directions: BitTorrent peer wire and random bytes
// of the same sizes and timing (payload), each on BitTorrent's port, a
// neutral port and 443 (port), each flow to one of the server's addresses
// (host). The server measures every flow (as receiver in upload, as sender
// in download), merges its samples at collect and decides: two-sample
// Kolmogorov–Smirnov tests plus thresholds on the medians, per direction,
// for each factor, then what a difference is attributed to; flows that fail
// in most repetitions while others run say blocked.
package bittorrent

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/session"
	spec "github.com/neubot/neubot/proto/bittorrent"
	"github.com/neubot/neubot/proto/bittorrent/wire"
	"github.com/neubot/neubot/schemas"
)

// Config tunes the test; the zero value is the default methodology: 48
// flows of 1.25 s, about 65 s in all (bench/bittorrent).
type Config struct {
	// Repetitions of each kind of flow per direction (default 4: 8 to 12
	// pairs of flows per comparison).
	Repetitions int
	// FlowDuration is how long each flow requests blocks (1.25 s). Longer
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
	// MaxFlowBytes ends a flow once its receiver has this many bytes
	// (default 32 MiB), bounding the data of a test on fast links: 2 s
	// flows run their course up to about 130 Mbit/s; above, they end
	// early, and with fewer than 8 samples after the warm-up a comparison
	// is inconclusive.
	MaxFlowBytes int64
}

func (c *Config) defaults() {
	if c.Repetitions <= 0 {
		c.Repetitions = 4
	}
	if c.FlowDuration <= 0 {
		c.FlowDuration = 1250 * time.Millisecond
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

var _ plugin.Measurer = (*Measurer)(nil)

// NewMeasurer returns a measurer.
func NewMeasurer(cfg Config) *Measurer {
	cfg.defaults()
	return &Measurer{cfg: cfg}
}

// Name implements plugin.Measurer.
func (m *Measurer) Name() string { return schemas.BitTorrentName }

func protoErr(op string, status int, msg string) error {
	return &plugin.ProtocolError{Test: schemas.BitTorrentName, Op: op, Status: status, Msg: msg}
}

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
	r := &run{cfg: m.cfg, base: base, host: host, progress: env.Progress}
	if r.progress == nil {
		r.progress = func(plugin.Progress) {}
	}
	r.client = env.HTTPClient
	if r.client == nil {
		r.client = &http.Client{}
	}
	uid := uuid.NewString()
	start := time.Now()
	if err := r.negotiate(ctx, uid); err != nil {
		return nil, err
	}
	var ports spec.StartResponse
	err = r.postJSON(ctx, "start", spec.StartPath, spec.StartRequest{
		FlowDurationS: m.cfg.FlowDuration.Seconds(), SampleEveryS: m.cfg.SampleEvery.Seconds(), MaxFlowBytes: m.cfg.MaxFlowBytes,
	}, &ports)
	if err != nil {
		return nil, err
	}
	hosts, err := checkHosts(ports.Hosts, r.host)
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
	kinds = run
	total := m.cfg.Repetitions * len(m.cfg.Directions) * len(kinds)
	if total > spec.MaxFlows || time.Duration(total)*m.cfg.FlowDuration > 80*time.Second {
		return nil, fmt.Errorf("bittorrent: %d flows of %v do not fit the test's %v: fewer repetitions, kinds or directions", total, m.cfg.FlowDuration, spec.TestTimeout)
	}
	peerID := wire.PeerID() // one per test, as a client keeps its own
	for rep := 0; rep < m.cfg.Repetitions; rep++ {
		for _, dir := range m.cfg.Directions {
			// The order of the kinds rotates with the repetition, so that
			// no kind always follows the same one; kind j of repetition
			// rep goes to address (j + rep) mod hosts, a Latin square.
			for i := range kinds {
				j := (rep + i) % len(kinds)
				kind := kinds[j]
				payload, role := schemas.KindCell(kind)
				port := map[string]int{schemas.PortApplication: ports.BitTorrentPort, schemas.PortNeutral: ports.NeutralPort, schemas.PortWeb: ports.WebPort}[role]
				host := (j + rep) % len(hosts)
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				f := schemas.BitTorrentFlow{Index: uint16(len(keys.Flows)), Kind: kind, Direction: dir, Port: uint16(port), StartS: round3(time.Since(start).Seconds()),
					Payload: payload, PortRole: role, Host: uint8(host)}
				r.progress(plugin.Progress{Phase: dir, Message: fmt.Sprintf("%s flow %d of %d", kind, len(keys.Flows)+1, total)})
				r.flow(ctx, &f, hosts[host], peerID, keys.WarmupS)
				keys.Flows = append(keys.Flows, f)
			}
		}
	}
	wire.Analyze(keys) // the download part; the server redoes it with its upload samples
	rec := &schemas.Record{
		Envelope: env.Envelope(schemas.BitTorrentName, schemas.BitTorrentVersion, uid, start),
		TestKeys: keys,
	}
	r.progress(plugin.Progress{Phase: "collect"})
	return r.collect(ctx, rec)
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// checkHosts returns the addresses to spread flows over: the server's
// list, which must hold IP literals only (a server cannot make its clients
// resolve or reach names), or the HTTP host.
func checkHosts(hosts []string, httpHost string) ([]string, error) {
	if len(hosts) == 0 {
		return []string{httpHost}, nil
	}
	if len(hosts) > spec.MaxHosts {
		return nil, protoErr("start", http.StatusOK, fmt.Sprintf("%d hosts, at most %d", len(hosts), spec.MaxHosts))
	}
	for _, h := range hosts {
		if ip, err := netip.ParseAddr(h); err != nil || ip.IsUnspecified() || ip.IsMulticast() {
			return nil, protoErr("start", http.StatusOK, fmt.Sprintf("host %q is not an IP address", h))
		}
	}
	return hosts, nil
}

// flow runs one flow; what goes wrong is recorded in f.Error (a measured
// failure, e.g. a reset, not a failure of the test).
// flow runs one flow to host; what goes wrong is recorded in f.Error as a
// word of schemas/failure.go's vocabulary (a measured failure, e.g. a
// reset, not a failure of the test): never an error's text, which carries
// addresses.
func (r *run) flow(ctx context.Context, f *schemas.BitTorrentFlow, host string, peerID [20]byte, warmup float64) {
	key := wire.FlowKey(r.token, f.Kind, f.Direction, int(f.Index))
	d := net.Dialer{Timeout: spec.StallTimeout}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(f.Port))))
	if err != nil {
		f.Error = schemas.FailureOf(err)
		return
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	limit := time.AfterFunc(r.cfg.FlowDuration+30*time.Second, func() { c.Close() })
	defer limit.Stop()
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
	fl := &wire.Flow{Conn: c, Random: random, Duration: r.cfg.FlowDuration, SampleEvery: r.cfg.SampleEvery, MaxBytes: r.cfg.MaxFlowBytes}
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
