// Package bittorrent is the client side of the BitTorrent differential test
// (spec/bittorrent.md): negotiate a slot, tell the server the flows'
// parameters, then run repetitions of three kinds of flow, interleaved, in
// both directions: BitTorrent peer wire on the BitTorrent port, random bytes
// of the same sizes and timing on the same port, and the same peer wire on a
// neutral port. The receiver samples each flow's throughput; the server,
// receiver of the upload flows, merges its samples at collect and decides:
// a two-sample Kolmogorov–Smirnov test plus a threshold on the medians, per
// direction and control.
package bittorrent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/session"
	spec "github.com/neubot/neubot/proto/bittorrent"
	"github.com/neubot/neubot/proto/bittorrent/wire"
	"github.com/neubot/neubot/proto/negotiate"
	"github.com/neubot/neubot/schemas"
)

// Config tunes the test; the zero value is the default methodology: 18
// flows of 2 s, about 45 s in all (bench/bittorrent).
type Config struct {
	// Repetitions of each kind of flow per direction (default 3).
	Repetitions int
	// FlowDuration is how long each flow requests blocks (2 s).
	FlowDuration time.Duration
	// SampleEvery is the throughput sampling period (250 ms).
	SampleEvery time.Duration
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
		c.Repetitions = 3
	}
	if c.FlowDuration <= 0 {
		c.FlowDuration = 2 * time.Second
	}
	if c.SampleEvery <= 0 {
		c.SampleEvery = 250 * time.Millisecond
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
	u, err := url.Parse(env.ServerURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("bittorrent: bad server URL %q: want http://host:port", env.ServerURL)
	}
	r := &run{cfg: m.cfg, base: strings.TrimRight(env.ServerURL, "/"), host: u.Hostname(), progress: env.Progress}
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
	keys := &schemas.BitTorrent{
		BitTorrentPort: uint16(ports.BitTorrentPort), NeutralPort: uint16(ports.NeutralPort),
		FlowDurationS: m.cfg.FlowDuration.Seconds(), SampleEveryS: m.cfg.SampleEvery.Seconds(), WarmupS: m.cfg.Warmup.Seconds(),
	}
	kinds := []string{schemas.FlowBitTorrent, schemas.FlowRandom, schemas.FlowNeutral}
	total := m.cfg.Repetitions * 2 * len(kinds)
	peerID := wire.PeerID() // one per test, as a client keeps its own
	for rep := 0; rep < m.cfg.Repetitions; rep++ {
		for _, dir := range []string{schemas.DirDownload, schemas.DirUpload} {
			// The order of the kinds rotates with the repetition, so that
			// no kind always follows the same one.
			for i := range kinds {
				kind := kinds[(rep+i)%len(kinds)]
				port := ports.BitTorrentPort
				if kind == schemas.FlowNeutral {
					port = ports.NeutralPort
				}
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				f := schemas.BitTorrentFlow{Index: uint16(len(keys.Flows)), Kind: kind, Direction: dir, Port: uint16(port), StartS: round3(time.Since(start).Seconds())}
				r.progress(plugin.Progress{Phase: dir, Message: fmt.Sprintf("%s flow %d of %d", kind, len(keys.Flows)+1, total)})
				r.flow(ctx, &f, peerID, keys.WarmupS)
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

// flow runs one flow; what goes wrong is recorded in f.Error (a measured
// failure, e.g. a reset, not a failure of the test).
func (r *run) flow(ctx context.Context, f *schemas.BitTorrentFlow, peerID [20]byte, warmup float64) {
	key := wire.FlowKey(r.token, f.Kind, f.Direction, int(f.Index))
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(r.host, strconv.Itoa(int(f.Port))))
	if err != nil {
		f.Error = truncate(err.Error())
		return
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	c.SetDeadline(time.Now().Add(r.cfg.FlowDuration + 30*time.Second))
	random := f.Kind == schemas.FlowRandom
	hs := wire.Handshake(key, peerID)
	if random {
		hs = wire.RandomHandshake(key)
	}
	if _, err := c.Write(hs); err != nil {
		f.Error = truncate(err.Error())
		return
	}
	reply := make([]byte, spec.HandshakeLen)
	if _, err := io.ReadFull(c, reply); err != nil {
		f.Error = truncate("handshake: " + err.Error())
		return
	}
	if got, bt, _ := wire.ParseHandshake(reply); got != key || bt == random {
		f.Error = "the server's handshake does not match"
		return
	}
	fl := &wire.Flow{Conn: c, Random: random, Duration: r.cfg.FlowDuration, SampleEvery: r.cfg.SampleEvery, MaxBytes: r.cfg.MaxFlowBytes}
	if f.Direction == schemas.DirDownload {
		f.Samples, err = fl.Leech()
		if n := len(f.Samples); n > 0 {
			f.Bytes = f.Samples[n-1].Bytes
		}
		f.Mbps = wire.FlowMbps(f.Samples, warmup)
	} else {
		err = fl.Seed() // the server samples as receiver
	}
	if err != nil {
		f.Error = truncate(err.Error())
	}
}

func truncate(s string) string {
	if len(s) > 256 {
		return s[:256]
	}
	return s
}

// post sends a JSON request with the token and returns the body of a 200
// answer (at most limit bytes); other answers are errors.
func (r *run) post(ctx context.Context, op, path string, in any, limit int64) ([]byte, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if r.token != "" {
		req.Header.Set(negotiate.TokenHeader, negotiate.BearerPrefix+r.token)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bittorrent %s: cannot reach the test server: %w", op, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("bittorrent %s: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e negotiate.Error
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return nil, protoErr(op, resp.StatusCode, e.Error)
	}
	return b, nil
}

// postJSON is post with the answer decoded into out.
func (r *run) postJSON(ctx context.Context, op, path string, in, out any) error {
	b, err := r.post(ctx, op, path, in, 4096)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return protoErr(op, http.StatusOK, "bad answer: "+err.Error())
	}
	return nil
}

// negotiate waits for a slot with the speedtest's negotiation protocol at
// the BitTorrent test's path (long-polling, honouring Retry-After).
func (r *run) negotiate(ctx context.Context, uid string) (err error) {
	r.token, err = session.Slot(ctx, r.client, schemas.BitTorrentName, r.base+spec.NegotiatePath, uid, r.progress)
	return err
}

// collect posts the client's record and returns the server's merged one.
func (r *run) collect(ctx context.Context, rec *schemas.Record) (*schemas.Record, error) {
	b, err := r.post(ctx, "collect", spec.CollectPath, rec, spec.MaxCollectBody)
	if err != nil {
		return nil, err
	}
	merged, err := schemas.DecodeRecord(bytes.TrimSpace(b), time.Now())
	if err != nil {
		return nil, fmt.Errorf("bittorrent collect: the server's record is invalid: %w", err)
	}
	if merged.MeasurementUID != rec.MeasurementUID {
		return nil, protoErr("collect", http.StatusOK, "record of another measurement")
	}
	return merged, nil
}
