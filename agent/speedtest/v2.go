package speedtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/internal/clock"
	"github.com/neubot/neubot/internal/goodput"
	"github.com/neubot/neubot/internal/tcpinfo"
	"github.com/neubot/neubot/proto/negotiate"
	spec "github.com/neubot/neubot/proto/speedtest"
	"github.com/neubot/neubot/schemas"
)

// V2Config tunes methodology 2 (spec/speedtest.md v2.0.0); zero fields
// take the defaults.
type V2Config struct {
	// SampleEvery is the receiver's sampling period (100 ms).
	SampleEvery time.Duration
	// InitialConnections per phase (1) and MaxConnections (8): between
	// them, the connections follow the measured bandwidth-delay product.
	// One at first: in the link emulator at 20 Mbit/s and 80 ms with a
	// queue of one BDP, two flows starting together overshot the queue in
	// their start-up and spent 2 s recovering from the losses (goodput
	// 15.5-18.7 in a 3 s phase); one flow reached a stable 18.6-19.3.
	InitialConnections, MaxConnections int
	// InitialConnectionsLongRTT replaces InitialConnections at RTT ≥
	// 200 ms (8) for the download; the upload's follow the download's
	// bandwidth-delay product (slowStartRTTs). Each connection's slow
	// start doubles from ten segments once per round trip: four needed
	// 8.5 round trips (2.5 s from the first byte at 300 ms) to fill
	// 200 Mbit/s × 300 ms in the link emulator, eight 7 (2.1 s), and the
	// phase has about 3.3 s; every doubling of the connections saves a
	// round trip.
	InitialConnectionsLongRTT int
	// MaxPhase caps a phase below 200 ms of RTT (3.5 s) and at or above
	// (4.2 s); the whole test, the collect included, is also kept within
	// Budget (7.6 s and 9.5 s, leaving room for the process around it:
	// with 9.7 s the whole test took up to 10.0 s in the link emulator at
	// 200 Mbit/s, 300 ms and 0.1 % loss; with 9.4 s, at most 9.2 s in
	// the whole matrix).
	MaxPhase, MaxPhaseLongRTT time.Duration
	Budget, BudgetLongRTT     time.Duration
	// Estimator: the stable window (StableRTTs round trips, at least
	// MinWindow) and the tolerance between its halves.
	StableRTTs float64
	MinWindow  time.Duration
	Tolerance  float64
	// PingEvery is the period of the latency-under-load pings (100 ms).
	PingEvery time.Duration
	// PerConnection overrides the bytes in flight allowed per connection
	// (0: from the socket buffer limits).
	PerConnection int
}

// maxPerConnection caps the bytes in flight of one connection (512 KiB,
// about 360 segments; 2 MiB before v2.8.0). A single flow carrying a
// larger bandwidth-delay product is exposed to its own start-up: BBR's
// start-up overflows a queue of one BDP (1.5 to 2 MB retransmitted at
// 200 Mbit/s and 20 ms), and with random loss after it the flow may then
// hold a rate below the link for about a second, neither window- nor
// buffer-limited, with no queue (RTT at its minimum), which looks like
// BBR's long-term bandwidth mode, kept for 48 round trips. In the link
// emulator at 200 Mbit/s, 20 ms and 0.1 % loss, 4 of 25 one-connection
// downloads read 155.8 to 164.8 for their whole window (iperf3 187.5);
// two connections, 14 of 14 between 179.8 and 192.9.
const maxPerConnection = 512 << 10

// longRTT is where the whole test may take 10 s instead of 8.
const longRTT = 200 * time.Millisecond

// A connection's slow start begins with initialWindow bytes (ten
// segments of 1448) and doubles them every round trip; at long round
// trips the upload opens enough connections to fill the download's
// bandwidth-delay product within slowStartRTTs round trips.
const (
	initialWindow = 10 * 1448
	slowStartRTTs = 5
)

func (c *V2Config) defaults() {
	setDefault(&c.SampleEvery, 100*time.Millisecond)
	setDefault(&c.InitialConnections, 1)
	setDefault(&c.InitialConnectionsLongRTT, 8)
	setDefault(&c.MaxConnections, 8)
	c.MaxConnections = max(c.MaxConnections, c.InitialConnections, c.InitialConnectionsLongRTT)
	setDefault(&c.MaxPhase, 3500*time.Millisecond)
	setDefault(&c.MaxPhaseLongRTT, 4200*time.Millisecond)
	setDefault(&c.Budget, 7600*time.Millisecond)
	setDefault(&c.BudgetLongRTT, 9500*time.Millisecond)
	setDefault(&c.StableRTTs, goodput.DefaultStableRTTs)
	setDefault(&c.MinWindow, time.Second)
	setDefault(&c.Tolerance, goodput.DefaultTolerance)
	setDefault(&c.PingEvery, 100*time.Millisecond)
}

// runV2 runs the latency, download and upload phases of methodology 2
// into keys; on error it returns the phase that failed.
func (r *run) runV2(ctx context.Context, start time.Time, keys *schemas.Speedtest) (string, error) {
	cfg := r.cfg.V2
	r.progress(plugin.Progress{Phase: "latency"})
	// The download's first connections are dialed now, while the
	// latency is measured: as many as a long round trip starts with
	// (those the RTT does not need are closed), so that every one is
	// ready when the phase starts (at 300 ms, a handshake is 0.3 s of
	// the ramp-up).
	dlPre := make([]<-chan dialed, max(cfg.InitialConnections, cfg.InitialConnectionsLongRTT))
	for i := range dlPre {
		dlPre[i] = r.preDial(ctx)
	}
	pg, err := r.openPinger(ctx, r.pingPre, r.cfg.LatencySamples)
	if err != nil {
		discardAll(dlPre)
		return "latency", err
	}
	defer pg.close()
	if keys.RTTMS, err = pg.await(ctx, r.cfg.LatencySamples); err != nil {
		discardAll(dlPre)
		return "latency", err
	}
	keys.RTTMedianMS = schemas.Median(keys.RTTMS)
	keys.RTTMinMS = keys.RTTMS[0]
	for _, x := range keys.RTTMS {
		keys.RTTMinMS = math.Min(keys.RTTMinMS, x)
	}
	rtt := keys.RTTMinMS / 1000
	budget, maxPhase, initial := cfg.Budget, cfg.MaxPhase, cfg.InitialConnections
	if rtt >= longRTT.Seconds() {
		budget, maxPhase, initial = cfg.BudgetLongRTT, cfg.MaxPhaseLongRTT, cfg.InitialConnectionsLongRTT
	}
	discardAll(dlPre[initial:])
	dlPre = dlPre[:initial]
	deadline := start.Add(budget)
	rttDur := time.Duration(rtt * float64(time.Second))
	// The phase's cap: its share of what is left of the budget, keeping
	// reserve for the collect. The download leaves the upload a round
	// trip more than half: the upload's samples, the server's reports,
	// reach the agent a round trip after the data left it, so the last
	// round trip of its phase is never counted.
	capOf := func(phasesLeft int, reserve time.Duration) time.Duration {
		left := time.Until(deadline) - reserve
		if phasesLeft > 1 {
			left -= rttDur
		}
		return max(min(maxPhase, left/time.Duration(phasesLeft)), min(maxPhase, 1500*time.Millisecond))
	}
	go pg.loop(ctx, cfg.PingEvery)
	// The upload's first connections, dialed during the download.
	ulPre := make([]<-chan dialed, initial)
	for i := range ulPre {
		ulPre[i] = r.preDial(ctx)
	}
	if keys.Download, err = r.phaseV2(ctx, "download", rtt, capOf(2, priorReserve(rtt)), initial, pg, dlPre); err != nil {
		discardAll(ulPre)
		return "download", err
	}
	if rtt >= longRTT.Seconds() {
		// The upload starts with as many connections as its slow
		// starts need to fill the download's bandwidth-delay product
		// in slowStartRTTs round trips (fewer than the download's at
		// slow rates, where every connection more only adds losses).
		bdp := keys.Download.GoodputMbps * 1e6 / 8 * rtt
		want := int(math.Ceil(bdp / (initialWindow * (1 << slowStartRTTs))))
		initial = min(max(want, cfg.InitialConnections), initial)
		discardAll(ulPre[initial:])
		ulPre = ulPre[:initial]
	}
	// The upload's cap follows from the collect's reserve, now measured.
	reserve := collectReserve(rtt, queueOf(keys.Download, keys.RTTMinMS, rtt), keys.Download.GoodputMbps)
	if keys.Upload, err = r.phaseV2(ctx, "upload", rtt, capOf(1, reserve), initial, pg, ulPre); err != nil {
		return "upload", err
	}
	if keys.Upload.LoadedRTTMedianMS > 0 { // no loaded ping, no queue to wait for
		// Never past the budget: the collect's own round trips, bytes
		// and work stay (the reserve was computed from the download's
		// queue, and an uplink often queues longer).
		left := time.Until(deadline) - collectReserve(rtt, 0, keys.Upload.GoodputMbps)
		r.drain = max(min(drainOf(queueOf(keys.Upload, keys.RTTMinMS, rtt)), left), 0)
	}
	return "", nil
}

// maxDrain bounds the collect's wait for the upload's queue (drainOf).
const maxDrain = 2 * time.Second

// drainOf is how long the record waits for the queue the upload left in
// the bottleneck (queue, seconds: the median under load) to drain (since
// v2.13.0): sent at once, it met a full drop-tail queue, was lost and went
// again after a retransmission timeout. At 1 Mbit/s and 300 ms (a median
// queue of 0.28 s) the collect took 1.6 s in 7 runs of 9; waiting the
// median lost the record's last segment in 2 runs of 8 (the queue is full
// at the end, above its median): it waits half as much again. The caller
// keeps the wait within the budget, after the collect's own needs.
func drainOf(queue float64) time.Duration {
	return min(time.Duration(1.5*queue*float64(time.Second)), maxDrain)
}

// collectBytes bounds what each way of the collect carries: the record
// up (4.1 to 4.5 kB at 300 ms of RTT in the link emulator) and the merged
// record back, with the server's view (13.5 to 14.9 kB).
const collectBytes = 24 << 10

// collectReserve is the time kept at the end of the budget for the
// collect, from what the test measured (spec/speedtest.md v2.5.0): two
// round trips (the record up, the merged record back), the time to drain
// twice the queue the transfer left in the bottleneck (the record waits
// behind it), each record's bytes at the measured rate, and 400 ms for
// the server's work and the process around the test. queue is seconds,
// mbps the rate measured (0: unknown, that term left out).
func collectReserve(rtt, queue, mbps float64) time.Duration {
	s := 2*rtt + 2*queue + 0.4
	if mbps > 0 {
		s += 2 * collectBytes * 8 / (mbps * 1e6)
	}
	return time.Duration(s * float64(time.Second))
}

// priorReserve is the collect's reserve before anything was measured
// (for the download's share of the budget): v2.4.0's five round trips
// and 200 ms.
func priorReserve(rtt float64) time.Duration {
	return time.Duration((5*rtt + 0.2) * float64(time.Second))
}

// queueOf estimates, in seconds, the queue a transfer phase kept in the
// bottleneck: its median RTT under load less the unloaded minimum (both
// ms); without loaded pings, one round trip (a queue of one
// bandwidth-delay product).
func queueOf(ph schemas.SpeedtestPhase, minMS, rtt float64) float64 {
	if ph.LoadedRTTMedianMS <= 0 {
		return rtt
	}
	return max(ph.LoadedRTTMedianMS-minMS, 0) / 1000
}

// openStream connects to the server, asks for path with an upgrade to
// spec.Upgrade and returns the raw stream once the server answered 101.
// pre, when not nil, gives a connection dialed in advance (preDial); when
// that one fails (e.g. the server closed it while the agent waited in the
// queue), a new one is dialed. during, when not nil, starts right after
// the request is sent, without waiting for the answer (the upload sends
// its data behind the request, saving a round trip); the channel it gets
// says whether the upgrade succeeded.
func (r *run) openStream(ctx context.Context, path string, pre <-chan dialed, tail func() []byte, during func(net.Conn, <-chan bool)) (net.Conn, *bufio.Reader, error) {
	c, br, err := r.openStreamOn(ctx, path, pre, tail, during)
	var pe *ProtocolError
	if err != nil && pre != nil && ctx.Err() == nil && !errors.As(err, &pe) {
		return r.openStreamOn(ctx, path, nil, tail, during)
	}
	return c, br, err
}

func (r *run) openStreamOn(ctx context.Context, path string, pre <-chan dialed, tail func() []byte, during func(net.Conn, <-chan bool)) (_ net.Conn, _ *bufio.Reader, err error) {
	var c net.Conn
	if pre != nil {
		select {
		case d := <-pre:
			c, err = d.c, d.err
		case <-ctx.Done():
			discard(pre)
			return nil, nil, ctx.Err()
		}
	} else {
		c, err = r.dial(ctx)
	}
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if r.u.Scheme == "https" {
		tc := tls.Client(c, &tls.Config{ServerName: r.u.Hostname(), NextProtos: []string{"http/1.1"}})
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, nil, err
		}
		c = tc
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: " + r.u.Host + "\r\n" +
		negotiate.TokenHeader + ": " + negotiate.BearerPrefix + r.token + "\r\nConnection: Upgrade\r\nUpgrade: " + spec.Upgrade +
		"\r\nUser-Agent: neubot/" + r.env.Version() + "\r\n\r\n"
	b := []byte(req)
	if tail != nil {
		b = append(b, tail()...)
	}
	if _, err := c.Write(b); err != nil {
		c.Close()
		return nil, nil, err
	}
	if during != nil {
		upgraded := make(chan bool, 1)
		defer func() { upgraded <- err == nil }()
		during(c, upgraded)
	}
	br := bufio.NewReaderSize(c, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		err := protoError(path, resp)
		resp.Body.Close()
		c.Close()
		return nil, nil, err
	}
	if ctx.Err() != nil {
		c.Close()
		return nil, nil, ctx.Err()
	}
	return c, br, nil
}

// dialed is the outcome of a connection dialed in advance.
type dialed struct {
	c   net.Conn
	err error
}

// preDial dials a connection in the background, so that its handshake
// overlaps what the test does meanwhile (at 300 ms of RTT each saves 0.3 s
// of the budget); connect_ms still gets its connect time.
func (r *run) preDial(ctx context.Context) <-chan dialed {
	ch := make(chan dialed, 1)
	go func() {
		c, err := r.dial(ctx)
		ch <- dialed{c, err}
	}()
	return ch
}

// discard closes a connection dialed in advance that will not be used.
func discard(ch <-chan dialed) {
	if ch == nil {
		return
	}
	go func() {
		if d := <-ch; d.c != nil {
			d.c.Close()
		}
	}()
}

// discardAll discards every connection of pres.
func discardAll(pres []<-chan dialed) {
	for _, pre := range pres {
		discard(pre)
	}
}

// pinger measures round trips with small messages on a connection of its
// own: a burst for the unloaded RTT, then one every PingEvery during the
// transfer phases (latency under load).
type pinger struct {
	c  net.Conn
	br *bufio.Reader

	mu   sync.Mutex
	seq  uint64
	sent map[uint64]time.Time
	got  []pingRTT
	err  error
	done chan struct{}
	news chan struct{}
}

type pingRTT struct {
	at  time.Time // when the ping was sent
	rtt float64   // ms
}

// openPinger opens the ping stream and sends n pings 5 ms apart right
// behind the request, the first in the request's own segment, without
// waiting for the server's answer (saving a round trip: 0.3 s of the
// budget at 300 ms); await collects their round trips. The request and
// ten pings fit the initial congestion window of ten segments, as the
// server's answer and ten echoes do (testserver/speedtest's pingV2): an
// eleventh segment would wait a round trip for an acknowledgment.
func (r *run) openPinger(ctx context.Context, pre <-chan dialed, n int) (*pinger, error) {
	p := &pinger{sent: map[uint64]time.Time{}, done: make(chan struct{}), news: make(chan struct{}, 1)}
	first := func() []byte {
		msg := p.next()
		return msg[:]
	}
	during := func(c net.Conn, upgraded <-chan bool) {
		go func() {
			for i := 1; i < n; i++ {
				time.Sleep(5 * time.Millisecond)
				if p.ping(c) != nil {
					return
				}
			}
		}()
	}
	c, br, err := r.openStream(ctx, spec.V2PingPath, pre, first, during)
	if err != nil {
		return nil, err
	}
	p.c, p.br = c, br
	go p.read()
	return p, nil
}

func (p *pinger) close() { p.c.Close(); <-p.done }

func (p *pinger) read() {
	defer close(p.done)
	msg := make([]byte, spec.PingSize)
	for {
		if _, err := readFull(p.br, msg); err != nil {
			p.mu.Lock()
			p.err = err
			p.mu.Unlock()
			return
		}
		now := time.Now()
		seq := binary.BigEndian.Uint64(msg)
		p.mu.Lock()
		if t, ok := p.sent[seq]; ok {
			delete(p.sent, seq)
			p.got = append(p.got, pingRTT{at: t, rtt: round3(float64(now.Sub(t)) / float64(time.Millisecond))})
		}
		p.mu.Unlock()
		select {
		case p.news <- struct{}{}:
		default:
		}
	}
}

func readFull(br *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := br.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// next numbers a ping and records when it leaves.
func (p *pinger) next() [spec.PingSize]byte {
	p.mu.Lock()
	p.seq++
	seq := p.seq
	p.sent[seq] = time.Now()
	p.mu.Unlock()
	var msg [spec.PingSize]byte
	binary.BigEndian.PutUint64(msg[:], seq)
	return msg
}

func (p *pinger) ping(c net.Conn) error {
	msg := p.next()
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, err := c.Write(msg[:])
	return err
}

// await waits for the answers to the n pings openPinger sent (at most
// 3 s): the unloaded round trips.
func (p *pinger) await(ctx context.Context, n int) ([]float64, error) {
	timeout := time.After(3 * time.Second)
	for {
		p.mu.Lock()
		got, err := len(p.got), p.err
		p.mu.Unlock()
		if got >= n {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("speedtest latency: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout:
			return nil, fmt.Errorf("speedtest latency: %w", schemas.ErrStalled)
		case <-p.news:
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]float64, 0, n)
	for _, x := range p.got[:n] {
		out = append(out, x.rtt)
	}
	p.got = p.got[n:]
	return out, nil
}

// loop pings every period until ctx ends or the connection fails.
func (p *pinger) loop(ctx context.Context, every time.Duration) {
	clock.Every(ctx.Done(), every, func() bool { return p.ping(p.c) == nil })
}

// between returns the round trips of the pings sent in [a, b).
func (p *pinger) between(a, b time.Time) []float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []float64
	for _, x := range p.got {
		if !x.at.Before(a) && x.at.Before(b) && len(out) < 512 {
			out = append(out, x.rtt)
		}
	}
	return out
}

// perConnection is the number of bytes one connection may keep in flight
// in the phase's direction: half the socket buffer limit the kernel's
// autotuning reaches (the rest goes to its bookkeeping), capped at
// maxPerConnection. The test sets no SO_SNDBUF or SO_RCVBUF: on Linux
// either would switch autotuning off and cap the buffer at
// net.core.[rw]mem_max, lower than autotuning's limit; it opens more
// connections instead.
func (r *run) perConnection(dir string) int {
	if r.cfg.V2.PerConnection > 0 {
		return r.cfg.V2.PerConnection
	}
	limit := 4 << 20 // macOS and Windows autotune to a few MiB
	if runtime.GOOS == "linux" {
		file := "/proc/sys/net/ipv4/tcp_rmem"
		if dir == "upload" {
			file = "/proc/sys/net/ipv4/tcp_wmem"
		}
		if b, err := os.ReadFile(file); err == nil {
			if f := strings.Fields(string(b)); len(f) == 3 {
				if v, err := strconv.Atoi(f[2]); err == nil && v > 0 {
					limit = v
				}
			}
		}
	}
	return max(min(limit/2, maxPerConnection), 256<<10)
}

// phaseV2 runs one transfer phase of methodology 2: long streams on
// InitialConnections connections, more when the measured bandwidth-delay
// product needs them, the receiver sampled every SampleEvery, stopped by
// goodput.Estimate (stable window) or at maxPhase.
func (r *run) phaseV2(ctx context.Context, dir string, rtt float64, maxPhase time.Duration, initial int, pg *pinger, pre []<-chan dialed) (schemas.SpeedtestPhase, error) {
	cfg := r.cfg.V2
	r.progress(plugin.Progress{Phase: dir})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	perConn := r.perConnection(dir)
	params := goodput.Params{
		RTT:        rtt,
		Tolerance:  cfg.Tolerance,
		StableRTTs: cfg.StableRTTs,
		MinWindow:  cfg.MinWindow.Seconds(),
		MaxPhase:   maxPhase.Seconds(),
	}.WithDefaults()
	var (
		received atomic.Uint64 // download: bytes read by the client
		wg       sync.WaitGroup
		connMu   sync.Mutex
		conns    []net.Conn
		streams  []*dlStream // download: what arrived on each connection
		repMu    sync.Mutex
		lastRep  spec.UploadReport // upload: the latest server report
	)
	errc := make(chan error, cfg.MaxConnections*2)
	report := func(err error) {
		if err != nil && ctx.Err() == nil {
			errc <- err
		}
	}
	path := spec.V2DownloadPath
	if dir == "upload" {
		path = spec.V2UploadPath
	}
	open := func() {
		var first <-chan dialed
		if len(pre) > 0 {
			first, pre = pre[0], pre[1:]
		}
		wg.Add(1)
		var during func(net.Conn, <-chan bool)
		if dir == "upload" {
			// The data follows the request at once.
			during = func(c net.Conn, upgraded <-chan bool) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					off := 0
					for {
						_, err := c.Write(random[off : off+64<<10])
						if err != nil {
							if <-upgraded {
								report(err)
							}
							return
						}
						off = (off + 64<<10) % len(random)
					}
				}()
			}
		}
		go func() {
			defer wg.Done()
			c, br, err := r.openStream(ctx, path, first, nil, during)
			if err != nil {
				report(err)
				return
			}
			st := &dlStream{c: c, arrival: goodput.NewArrival(c)}
			connMu.Lock()
			conns = append(conns, c)
			if dir == "download" {
				streams = append(streams, st)
			}
			connMu.Unlock()
			if ctx.Err() != nil {
				c.Close()
				return
			}
			if dir == "download" {
				buf := make([]byte, 64<<10)
				for {
					n, err := br.Read(buf)
					received.Add(uint64(n))
					st.read.Add(uint64(n))
					if err != nil {
						if !st.cut.Load() {
							report(err)
						}
						return
					}
				}
			}
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					if errors.Is(err, bufio.ErrBufferFull) || len(line) > spec.MaxReportLine {
						err = &ProtocolError{Test: schemas.SpeedtestName, Op: "upload", Status: http.StatusSwitchingProtocols, Msg: "report line too long"}
					}
					report(err)
					return
				}
				rep, err := spec.ParseUploadReport(line)
				if err != nil {
					report(&ProtocolError{Test: schemas.SpeedtestName, Op: "upload", Status: http.StatusSwitchingProtocols, Msg: err.Error()})
					return
				}
				repMu.Lock()
				if rep.TS > lastRep.TS && rep.Bytes >= lastRep.Bytes {
					lastRep = rep
				}
				repMu.Unlock()
			}
		}()
	}
	n := initial
	for i := 0; i < n; i++ {
		open()
	}
	s := &series{cfg: r.cfg}
	var samples []goodput.Sample
	tick := time.NewTicker(cfg.SampleEvery)
	defer tick.Stop()
	start := time.Now()
	stall := math.Max(2, 4*rtt)
	var (
		res        goodput.Result
		err        error
		bdp        float64
		lastBytes  uint64
		acked      = map[net.Conn]uint64{} // upload: bytes each connection's server TCP acknowledged
		lastChange float64
		beforeData float64 // the last sample time before the first byte
		checked    = dir != "download" || initial <= cfg.InitialConnections
		floor      = initial // the fewest connections the BDP rule keeps
	)
	for {
		if ended, e := nextTick(ctx, errc, tick.C); ended {
			err = e
			break
		}
		now := time.Since(start).Seconds()
		var t float64
		var b uint64
		if dir == "download" {
			// What arrived at the client's TCP (goodput.Arrival).
			t = now
			connMu.Lock()
			for _, st := range streams {
				b += st.arrival.Count(st.read.Load())
			}
			connMu.Unlock()
		} else {
			// What arrived at the server's TCP, from its reports.
			repMu.Lock()
			t, b = lastRep.TS, lastRep.Counted()
			repMu.Unlock()
			// The reports come back on the reverse path: one lost
			// there waits for its retransmission (an RTO, a second or
			// more at long round trips behind the upload's full queue)
			// while the upload goes on. The data still moves when the
			// server's TCP acknowledges more: no stall.
			connMu.Lock()
			for _, c := range conns {
				if info, err := tcpinfo.Read(c); err == nil && info.BytesAcked > acked[c] {
					acked[c], lastChange = info.BytesAcked, now
				}
			}
			connMu.Unlock()
		}
		if b > lastBytes || lastChange == 0 && b == 0 {
			if b > lastBytes {
				lastChange = now
			}
			lastBytes = b
		}
		if b == 0 {
			beforeData = now
		} else if !checked && now >= beforeData+rtt {
			// One round trip after the first byte, the connections'
			// first flights (initialWindow each) have all arrived
			// unless the link is slower than they are: then it is
			// slow, the measured rate tells how slow, and the
			// connections its bandwidth-delay product does not need
			// only add losses (a 1 Mbit/s, 300 ms link has a queue of
			// 25 packets; 8 first flights are 80). Those are reset.
			checked = true
			if float64(b) < 0.75*float64(n*initialWindow) {
				rate := float64(b) / (now - beforeData)
				keep := min(max(int(math.Ceil(rate*rtt/(initialWindow*(1<<slowStartRTTs)))), cfg.InitialConnections), n)
				if kept := r.keepFastest(&connMu, &streams, keep); kept < n {
					n, floor = kept, kept
					// The losses of the first flights are repaired
					// in the next round trips.
					params.NotBefore = now + 2*rtt
				}
			}
		}
		if now-lastChange > stall {
			err = fmt.Errorf("speedtest %s: no data for %.1f s: %w", dir, now-lastChange, schemas.ErrStalled)
			break
		}
		if t > 0 && (len(samples) == 0 || t > samples[len(samples)-1].T) {
			samples = append(samples, goodput.Sample{T: t, Bytes: b})
			var mbps float64
			s.samples, mbps = plugin.AppendSample(s.samples, t, b)
			r.progress(plugin.Progress{Phase: dir, Mbps: mbps, Elapsed: now})
		}
		// More connections when the bandwidth-delay product measured
		// so far needs more than n can carry (with half again as much
		// for the queue a bottleneck builds).
		if smooth := math.Max(2*rtt, 0.2); t > smooth && len(samples) > 1 {
			bdp = math.Max(bdp, goodput.Rate(samples, t-smooth, t)*1e6/8*rtt)
			if want := min(max(int(math.Ceil(1.5*bdp/float64(perConn))), floor), cfg.MaxConnections); want > n {
				for ; n < want; n++ {
					open()
				}
				// Their ramp-up is not part of the estimate.
				params.NotBefore = t + 2*rtt
			}
		}
		if len(samples) > 1 {
			p := params
			if now >= p.MaxPhase {
				// The cap is on the client's clock: the upload's
				// samples, on the server's, lag by about a round trip.
				p.MaxPhase = math.Min(p.MaxPhase, samples[len(samples)-1].T)
			}
			res = goodput.Estimate(samples, p)
			if res.Stop {
				break
			}
		}
		if now > params.MaxPhase+0.5 { // no samples to stop on
			res.Stop, res.StopReason = true, goodput.StopTimeCap
			break
		}
	}
	dur := time.Since(start)
	end := time.Now()
	cancel()
	discardAll(pre) // dialed in advance, never used
	connMu.Lock()
	for _, c := range conns {
		abort(c)
	}
	connMu.Unlock()
	wg.Wait()
	// The bytes the receiver's application read.
	readBytes := received.Load()
	if dir == "upload" {
		repMu.Lock()
		readBytes = uint64(lastRep.Bytes)
		repMu.Unlock()
	}
	phase := schemas.SpeedtestPhase{
		GoodputMbps:  round3(res.Mbps),
		Bytes:        readBytes,
		DurationS:    round3(dur.Seconds()),
		Connections:  uint8(n),
		Samples:      s.samples,
		StopReason:   res.StopReason,
		WindowStartS: round3(res.Start),
		WindowEndS:   round3(res.End),
		Params: &schemas.SpeedtestParams{
			SampleMS:           float64(cfg.SampleEvery) / float64(time.Millisecond),
			MaxPhaseS:          round3(params.MaxPhase),
			MinWindowS:         round3(params.Window()),
			StableRTTs:         params.StableRTTs,
			Tolerance:          params.Tolerance,
			RTTMS:              round3(rtt * 1000),
			BDPBytes:           uint64(bdp),
			PerConnectionBytes: uint64(perConn),
			InitialConnections: uint8(initial),
			MaxConnections:     uint8(cfg.MaxConnections),
		},
	}
	if pg != nil {
		// Latency under load in the estimation window: after TCP's
		// start-up, whose overshoot fills the queue for a moment, as a
		// ping during a long iperf3 run sees it; the whole phase when
		// there is no window.
		a, b := start, end
		if res.End > res.Start {
			a, b = start.Add(time.Duration(res.Start*float64(time.Second))), start.Add(time.Duration(res.End*float64(time.Second)))
		}
		if dir == "upload" {
			// The upload's window is on the server's clock, which
			// starts about half a round trip after the client's.
			a, b = a.Add(-time.Duration(rtt/2*float64(time.Second))), b.Add(-time.Duration(rtt/2*float64(time.Second)))
		}
		phase.LoadedRTTMS = pg.between(a, b)
		phase.LoadedRTTMedianMS = round3(schemas.Median(phase.LoadedRTTMS))
		phase.LoadedRTTP90MS = round3(schemas.P90(phase.LoadedRTTMS))
	}
	if err != nil {
		phase.Failure, phase.StopReason = schemas.FailureOf(err), "failure"
		phase.GoodputMbps, phase.WindowStartS, phase.WindowEndS = 0, 0, 0
		return phase, fmt.Errorf("speedtest %s: %w", dir, err)
	}
	if res.StopReason == "" || res.Mbps <= 0 {
		err := fmt.Errorf("speedtest %s: the receiver counted too little to measure: %w", dir, schemas.ErrStalled)
		phase.Failure, phase.StopReason = schemas.FailureOf(err), "failure"
		return phase, err
	}
	return phase, nil
}

// abort closes c at once, dropping what its socket buffer still holds:
// an upload connection closed normally would go on sending its buffer
// (megabytes at long round trips) through the bottleneck, ahead of the
// next phase and of the collect (2 s at 10 Mbit/s and 300 ms).
func abort(c net.Conn) {
	nc := c
	if u, ok := c.(interface{ NetConn() net.Conn }); ok {
		nc = u.NetConn()
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
		_ = tc.Close()
		return
	}
	c.Close()
}

// dlStream is one download connection: the bytes read from it and what
// arrived at its TCP.
type dlStream struct {
	c       net.Conn
	read    atomic.Uint64
	arrival *goodput.Arrival
	cut     atomic.Bool // reset on purpose: its reader's error is no failure
}

// keepFastest resets all but the keep download streams that received the
// most so far and returns how many are left. What the reset ones received
// stays counted (goodput.Arrival keeps its last count).
func (r *run) keepFastest(mu *sync.Mutex, streams *[]*dlStream, keep int) int {
	mu.Lock()
	defer mu.Unlock()
	live := make([]*dlStream, 0, len(*streams))
	for _, st := range *streams {
		if !st.cut.Load() {
			live = append(live, st)
		}
	}
	if len(live) <= keep {
		return len(live)
	}
	sort.SliceStable(live, func(i, j int) bool { return live[i].read.Load() > live[j].read.Load() })
	for _, st := range live[keep:] {
		st.arrival.Count(st.read.Load()) // the last count, before the socket goes
		st.cut.Store(true)
		abort(st.c)
	}
	return keep
}
