// Package speedtest is the client side of the speedtest (spec/speedtest.md):
// negotiate a slot, measure connect times and HEAD round trips, download
// over two connections with growing ranges, upload by POST over two
// connections, and collect the server's authoritative record.
//
// Each transfer phase samples throughput every 250 ms at the receiver (the
// client for the download, the server for the upload, which reports its
// receive counters in every upload answer) and stops when its estimate is
// stable, or at a hard cap. The estimate is the goodput over the last two thirds
// of the phase, after TCP's ramp-up and any token-bucket burst are over.
package speedtest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/session"
	"github.com/neubot/neubot/internal/goodput"
	"github.com/neubot/neubot/proto/negotiate"
	spec "github.com/neubot/neubot/proto/speedtest"
	"github.com/neubot/neubot/schemas"
)

// Config tunes the test; the zero value is the default methodology (2).
type Config struct {
	// Method is the methodology: 2 (default, spec/speedtest.md v2.0.0)
	// or 1 (the first one, kept for comparison).
	Method int

	// Methodology 1.
	// Connections per transfer phase (default 2).
	Connections int
	// MinPhase and MaxPhase bound each transfer phase (2 s and 3.4 s).
	// The stability check compares the two halves of the last MinPhase.
	MinPhase, MaxPhase time.Duration
	// SampleEvery is the throughput sampling period (250 ms).
	SampleEvery time.Duration
	// Stable is the largest relative difference between the goodput of
	// the last second and of the second before it for the phase to stop
	// early (default 0.02).
	Stable float64
	// LatencySamples is the number of HEAD round trips (methodology 1)
	// or pings (methodology 2) of the latency phase (default 10).
	LatencySamples int

	// Methodology 2 (see v2.go for the defaults).
	V2 V2Config
}

func (c *Config) defaults() {
	setDefault(&c.Connections, 2)
	if c.Method == 0 {
		c.Method = 2
	}
	setDefault(&c.MinPhase, 2*time.Second)
	setDefault(&c.MaxPhase, 3400*time.Millisecond)
	setDefault(&c.SampleEvery, 250*time.Millisecond)
	setDefault(&c.Stable, 0.02)
	setDefault(&c.LatencySamples, 10)
	c.V2.defaults()
}

// setDefault sets *p to v when it is zero or negative.
func setDefault[T int | float64 | time.Duration](p *T, v T) {
	if *p <= 0 {
		*p = v
	}
}

// Measurer runs speedtests.
type Measurer struct{ cfg Config }

// NewMeasurer returns a speedtest measurer.
func NewMeasurer(cfg Config) *Measurer {
	cfg.defaults()
	return &Measurer{cfg: cfg}
}

// Method is the methodology this measurer runs (1 or 2).
func (m *Measurer) Method() int { return m.cfg.Method }

// Name implements plugin.Measurer.
func (m *Measurer) Name() string { return schemas.SpeedtestName }

// ProtocolError is the plug-ins' error for a refused request or an answer
// the protocol does not allow.
type ProtocolError = plugin.ProtocolError

// run is the state of one test.
type run struct {
	cfg      Config
	env      plugin.Env
	base     string
	token    string
	client   *http.Client
	progress func(plugin.Progress)

	connMu    sync.Mutex
	connectMS []float64

	// The server's address, resolved once before anything is timed, so
	// that connect_ms never includes name resolution.
	u    *url.URL
	addr string
	// pingPre: methodology 2's ping connection, dialed during negotiation.
	pingPre <-chan dialed
	// drain: how long the record waits before it is sent, for the queue
	// the upload left in the bottleneck to drain (methodology 2, drainOf).
	drain time.Duration
}

// Run implements plugin.Measurer. A test that fails after it started
// still returns a record, with the error: test_keys.failure says what
// failed (schemas.FailureOf) and failure_phase where; it is the server's
// merged record when the server could still collect it, else the agent's
// own copy.
func (m *Measurer) Run(ctx context.Context, env plugin.Env) (*schemas.Record, error) {
	u, err := url.Parse(env.ServerURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("speedtest: bad server URL %q: want http://host:port", env.ServerURL)
	}
	r := &run{cfg: m.cfg, env: env, base: strings.TrimRight(env.ServerURL, "/"), progress: env.Progress, u: u}
	if r.progress == nil {
		r.progress = func(plugin.Progress) {}
	}
	r.client = &http.Client{Transport: r.transport()}
	defer r.client.CloseIdleConnections()

	uid := uuid.NewString()
	start := time.Now()
	version := schemas.SpeedtestVersion
	if m.cfg.Method == 1 {
		version = schemas.SpeedtestVersion1
	}
	keys := &schemas.Speedtest{}
	record := func() *schemas.Record {
		r.connMu.Lock()
		keys.ConnectMS = append([]float64(nil), r.connectMS...)
		r.connMu.Unlock()
		if len(keys.ConnectMS) > schemas.MaxLatencySamples {
			keys.ConnectMS = keys.ConnectMS[:schemas.MaxLatencySamples]
		}
		return &schemas.Record{
			Envelope: env.Envelope(schemas.SpeedtestName, version, uid, start),
			TestKeys: keys,
		}
	}
	failed := func(phase string, err error) (*schemas.Record, error) {
		keys.Failure, keys.FailurePhase = schemas.FailureOf(err), phase
		rec := record()
		if r.token != "" && phase != "collect" {
			// The server may still be there (a reset connection, a
			// stall): its merged record is the authoritative one.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if merged, cerr := session.Collect(cctx, r.client, schemas.SpeedtestName, r.base+spec.CollectPath, r.token, rec); cerr == nil {
				return merged, err
			}
		}
		return rec, err
	}
	if err := r.resolve(ctx); err != nil {
		return failed("negotiate", err)
	}
	if m.cfg.Method != 1 {
		r.pingPre = r.preDial(ctx)
	}
	if err := r.negotiate(ctx, uid); err != nil {
		discard(r.pingPre)
		return failed("negotiate", err)
	}
	if m.cfg.Method == 1 {
		if keys.RTTMS, err = r.latency(ctx); err != nil {
			return failed("latency", err)
		}
		keys.RTTMedianMS = schemas.Median(keys.RTTMS)
		if keys.Download, err = r.download(ctx); err != nil {
			return failed("download", err)
		}
		if keys.Upload, err = r.upload(ctx); err != nil {
			return failed("upload", err)
		}
	} else if phase, err := r.runV2(ctx, start, keys); err != nil {
		return failed(phase, err)
	}
	rec := record()
	r.progress(plugin.Progress{Phase: "collect"})
	if r.drain > 0 {
		t := time.NewTimer(r.drain)
		select {
		case <-ctx.Done():
			t.Stop()
			return failed("collect", ctx.Err())
		case <-t.C:
		}
	}
	merged, err := session.Collect(ctx, r.client, schemas.SpeedtestName, r.base+spec.CollectPath, r.token, rec)
	if err != nil {
		return failed("collect", err)
	}
	return merged, nil
}

// resolve finds the server's address once, before any timing.
func (r *run) resolve(ctx context.Context) error {
	host, port := r.u.Hostname(), r.u.Port()
	if port == "" {
		port = "80"
		if r.u.Scheme == "https" {
			port = "443"
		}
	}
	if ip := net.ParseIP(host); ip != nil {
		r.addr = net.JoinHostPort(host, port)
		return nil
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return fmt.Errorf("speedtest: cannot reach the test server: %w", err)
	}
	if len(ips) == 0 {
		return fmt.Errorf("speedtest: cannot reach the test server: %w", &net.DNSError{Err: "no address", Name: host, IsNotFound: true})
	}
	r.addr = net.JoinHostPort(ips[0].IP.String(), port)
	return nil
}

// dial opens a TCP connection to the resolved address and records its
// connect time.
func (r *run) dial(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	t0 := time.Now()
	c, err := d.DialContext(ctx, "tcp", r.addr)
	if err == nil {
		r.connMu.Lock()
		r.connectMS = append(r.connectMS, round3(float64(time.Since(t0))/float64(time.Millisecond)))
		r.connMu.Unlock()
	}
	return c, err
}

// transport connects to the resolved address (the request's host only
// names it, for TLS and Host) and records the connect time of every
// connection it makes.
func (r *run) transport() *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return r.dial(ctx)
		},
		MaxIdleConnsPerHost: 8,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		IdleConnTimeout:     30 * time.Second,
	}
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

func (r *run) request(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, body)
	if err != nil {
		return nil, err
	}
	if r.token != "" {
		req.Header.Set(negotiate.TokenHeader, negotiate.BearerPrefix+r.token)
	}
	return req, nil
}

// protoError reads the JSON error of a refused request.
func protoError(op string, resp *http.Response) error {
	return session.Refused(schemas.SpeedtestName, op, resp)
}

// negotiate waits for a slot.
func (r *run) negotiate(ctx context.Context, uid string) error {
	token, err := session.Slot(ctx, r.client, schemas.SpeedtestName, r.base+spec.NegotiatePath, uid, r.progress)
	r.token = token
	return err
}

// latency measures HEAD round trips on one warm connection.
func (r *run) latency(ctx context.Context) ([]float64, error) {
	r.progress(plugin.Progress{Phase: "latency"})
	var out []float64
	for i := 0; i <= r.cfg.LatencySamples; i++ {
		req, err := r.request(ctx, http.MethodHead, spec.LatencyPath, nil)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		resp, err := r.client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("speedtest latency: %w", err)
		}
		rtt := time.Since(t0)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return nil, &ProtocolError{Test: schemas.SpeedtestName, Op: "latency", Status: resp.StatusCode}
		}
		if i > 0 { // the first request also opened the connection
			out = append(out, round3(float64(rtt)/float64(time.Millisecond)))
		}
	}
	return out, nil
}

// series samples a cumulative byte counter and decides when to stop.
type series struct {
	cfg     Config
	samples []schemas.ThroughputSample
}

func (s *series) add(t float64, bytes uint64) {
	s.samples, _ = plugin.AppendSample(s.samples, t, bytes)
}

// rate is the goodput in Mbit/s between times a and b (goodput.Rate).
func (s *series) rate(a, b float64) float64 {
	gs := make([]goodput.Sample, len(s.samples))
	for i, x := range s.samples {
		gs[i] = goodput.Sample{T: x.TS, Bytes: x.Bytes}
	}
	return goodput.Rate(gs, a, b)
}

func (s *series) last() float64 {
	if len(s.samples) == 0 {
		return 0
	}
	return s.samples[len(s.samples)-1].TS
}

// done reports whether the phase may stop at time t (seconds): at
// MaxPhase, or when the goodput of the two halves of the last MinPhase
// differ by at most Stable.
func (s *series) done(t float64) bool {
	if t >= s.cfg.MaxPhase.Seconds() {
		return true
	}
	end, m := s.last(), s.cfg.MinPhase.Seconds()
	if end < m {
		return false
	}
	a, b := s.rate(end-m, end-m/2), s.rate(end-m/2, end)
	return a > 0 && math.Abs(b-a)/a <= s.cfg.Stable
}

// estimate is the goodput over the last two thirds of the phase: bytes
// received over time, once TCP's ramp-up and a shaper's initial burst are
// over. Measured alternatives (bench/speedtest at 1 Mbit/s, 14 runs): the
// second half only, or trimming the intervals disturbed by a loss, were more
// often thrown off by the burst of data released after a loss is repaired;
// a longer window averages stalls and their bursts together.
func (s *series) estimate() float64 {
	end := s.last()
	return s.rate(end/3, end)
}

// Goodput is the methodology 1 goodput estimator as a pure function: the
// goodput (Mbit/s, rounded to 0.001) that the client reports for a phase
// whose samples (time since the phase started, cumulative bytes) are these.
// The simulated fleet (analytics/simulate) gets its goodput from it.
func Goodput(samples []schemas.ThroughputSample) float64 {
	s := series{samples: samples}
	return round3(s.estimate())
}

func (s *series) phase(dur time.Duration, conns int) schemas.SpeedtestPhase {
	var total uint64
	if n := len(s.samples); n > 0 {
		total = s.samples[n-1].Bytes
	}
	end := s.last()
	reason := goodput.StopStable
	if dur >= s.cfg.MaxPhase {
		reason = goodput.StopTimeCap
	}
	return schemas.SpeedtestPhase{
		GoodputMbps:  round3(s.estimate()),
		Bytes:        total,
		DurationS:    round3(dur.Seconds()),
		Connections:  uint8(conns),
		Samples:      s.samples,
		StopReason:   reason,
		WindowStartS: round3(end / 3),
		WindowEndS:   round3(end),
	}
}

// download runs GETs with growing ranges on parallel connections and
// samples the bytes received.
func (r *run) download(ctx context.Context) (schemas.SpeedtestPhase, error) {
	var received atomic.Uint64
	start := time.Now()
	return r.phaseV1(ctx, "download", start, func(ctx context.Context, i int) error {
		return r.downloadLoop(ctx, &received, int64(i)*spec.MaxRange)
	}, func() (float64, uint64, bool) {
		return time.Since(start).Seconds(), received.Load(), true
	})
}

// phaseV1 runs a transfer phase of methodology 1: worker on each of the
// configured connections, sample every SampleEvery (the time and bytes of
// the series, and whether they are new) until the series is done.
func (r *run) phaseV1(ctx context.Context, dir string, start time.Time, worker func(ctx context.Context, i int) error, sample func() (float64, uint64, bool)) (schemas.SpeedtestPhase, error) {
	r.progress(plugin.Progress{Phase: dir})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, r.cfg.Connections)
	var wg sync.WaitGroup
	for i := 0; i < r.cfg.Connections; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errc <- worker(ctx, i)
		}(i)
	}
	s := &series{cfg: r.cfg}
	tick := time.NewTicker(r.cfg.SampleEvery)
	defer tick.Stop()
	var err error
	for {
		if ended, e := nextTick(ctx, errc, tick.C); ended {
			if err = ctx.Err(); err == nil {
				err = e
			}
			if err != nil {
				break
			}
			continue // a connection is done; the others go on
		}
		if t, b, fresh := sample(); fresh {
			s.add(t, b)
			r.progress(plugin.Progress{Phase: dir, Mbps: s.samples[len(s.samples)-1].Mbps, Elapsed: time.Since(start).Seconds()})
		}
		if s.done(time.Since(start).Seconds()) {
			break
		}
	}
	dur := time.Since(start)
	cancel()
	wg.Wait()
	if err != nil {
		return schemas.SpeedtestPhase{}, fmt.Errorf("speedtest %s: %w", dir, err)
	}
	if dir == "upload" && len(s.samples) < 2 {
		// The upload's samples are the server's answers, which may
		// not have come.
		return schemas.SpeedtestPhase{}, errors.New("speedtest upload: the server reported too little to measure")
	}
	return s.phase(dur, r.cfg.Connections), nil
}

// nextTick waits for the next tick of a phase's sampling loop, the loop of
// methodology 1 and 2 alike; ended is true when instead ctx ended (err is
// its error) or a connection's worker returned (err is its result).
func nextTick(ctx context.Context, errc <-chan error, tick <-chan time.Time) (ended bool, err error) {
	select {
	case <-ctx.Done():
		return true, ctx.Err()
	case err := <-errc:
		return true, err
	case <-tick:
		return false, nil
	}
}

// transfer sends one request of a transfer phase. It returns the response
// when the server answered want; otherwise no response and the error, which
// is nil when the request failed because the phase ended (ctx).
func (r *run) transfer(ctx context.Context, req *http.Request, want int, op string) (*http.Response, error) {
	resp, err := r.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, err
	}
	if resp.StatusCode != want {
		err := protoError(op, resp)
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

func (r *run) downloadLoop(ctx context.Context, received *atomic.Uint64, offset int64) error {
	size := int64(64 << 10)
	buf := make([]byte, 64<<10)
	for ctx.Err() == nil {
		req, err := r.request(ctx, http.MethodGet, spec.DownloadPath, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, offset+size-1))
		t0 := time.Now()
		resp, err := r.transfer(ctx, req, http.StatusPartialContent, "download")
		if resp == nil {
			return err // nil when the phase ended
		}
		for {
			n, err := resp.Body.Read(buf)
			received.Add(uint64(n))
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		// Grow the range until one request lasts at least ~250 ms, so
		// that request gaps do not count; the other connection covers them.
		if time.Since(t0) < 250*time.Millisecond && size < spec.MaxRange {
			size *= 2
		}
	}
	return nil
}

// random is incompressible upload payload, shared by all tests.
var random = func() []byte {
	b := make([]byte, 4<<20)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}()

// repeatReader yields n bytes of random, repeating it.
type repeatReader struct {
	n, off int64
}

func (rr *repeatReader) Read(p []byte) (int, error) {
	if rr.n <= 0 {
		return 0, io.EOF
	}
	k := copy(p, random[rr.off%int64(len(random)):])
	if int64(k) > rr.n {
		k = int(rr.n)
	}
	rr.n -= int64(k)
	rr.off += int64(k)
	return k, nil
}

// upload POSTs growing bodies on parallel connections; the server times
// them as receiver and reports its counters in every answer, which make the
// series: one sample per tick, the latest counters the server sent.
func (r *run) upload(ctx context.Context) (schemas.SpeedtestPhase, error) {
	var (
		mu     sync.Mutex
		lastT  float64
		lastB  uint64
		fresh  bool
		report = func(t float64, b uint64) {
			mu.Lock()
			defer mu.Unlock()
			// Answers of two connections may cross: keep the
			// series monotonic in the server's time.
			if t > lastT && b >= lastB {
				lastT, lastB, fresh = t, b, true
			}
		}
	)
	return r.phaseV1(ctx, "upload", time.Now(), func(ctx context.Context, _ int) error {
		return r.uploadLoop(ctx, report)
	}, func() (float64, uint64, bool) {
		mu.Lock()
		defer mu.Unlock()
		f := fresh
		fresh = false
		return lastT, lastB, f
	})
}

func (r *run) uploadLoop(ctx context.Context, report func(t float64, bytes uint64)) error {
	size := int64(64 << 10)
	for ctx.Err() == nil {
		req, err := r.request(ctx, http.MethodPost, spec.UploadPath, &repeatReader{n: size})
		if err != nil {
			return err
		}
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
		t0 := time.Now()
		resp, err := r.transfer(ctx, req, http.StatusOK, "upload")
		if resp == nil {
			return err // nil when the phase ended
		}
		var ur spec.UploadResponse
		err = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&ur)
		resp.Body.Close()
		if err != nil {
			return &ProtocolError{Test: schemas.SpeedtestName, Op: "upload", Status: resp.StatusCode, Msg: "bad answer: " + err.Error()}
		}
		report(ur.TS, uint64(ur.TotalBytes))
		// Upload requests grow until one lasts ~1 s: each request ends
		// with a round trip in which its connection sends nothing, and
		// the answers (the server's counters) need not be frequent.
		if time.Since(t0) < time.Second && size < spec.MaxUploadBody/2 {
			size *= 2
		}
	}
	return nil
}
