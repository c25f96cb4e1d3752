package speedtest

import (
	"bufio"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/neubot/neubot/internal/clock"
	"github.com/neubot/neubot/internal/goodput"
	"github.com/neubot/neubot/internal/tcpinfo"
	spec "github.com/neubot/neubot/proto/speedtest"
	"github.com/neubot/neubot/schemas"
)

// Methodology 2 (spec/speedtest.md v2.0.0): each request is upgraded to a
// raw stream that lasts the whole phase, so that no connection is ever idle
// waiting for a request, whatever the round trip.

// upgrade authorizes r, takes its connection over and answers 101. It
// answers the error itself and returns nil when it cannot. The answer is
// sent at once, or with lazy, left in the returned writer for the
// caller's first write to carry.
func (p *Provider) upgrade(w http.ResponseWriter, r *http.Request, lazy bool) (*view, net.Conn, *bufio.ReadWriter) {
	s := p.authorize(w, r)
	if s == nil {
		return nil, nil, nil
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), spec.Upgrade) {
		w.Header().Set("Upgrade", spec.Upgrade)
		fail(w, http.StatusUpgradeRequired, "this endpoint needs Connection: Upgrade and Upgrade: %s", spec.Upgrade)
		return nil, nil, nil
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		fail(w, http.StatusInternalServerError, "cannot upgrade this connection")
		return nil, nil, nil
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		p.Logger.Warn("speedtest: hijack", "err", err)
		return nil, nil, nil
	}
	_ = c.SetDeadline(time.Time{})
	_, err = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + spec.Upgrade + "\r\nCache-Control: no-store\r\n\r\n")
	if err == nil && !lazy {
		err = brw.Flush()
	}
	if err != nil {
		c.Close()
		return nil, nil, nil
	}
	return p.viewOf(s), c, brw
}

// downloadV2 sends incompressible data until the client closes the
// connection or spec.MaxStream has passed.
func (p *Provider) downloadV2(w http.ResponseWriter, r *http.Request) {
	v, c, _ := p.upgrade(w, r, false)
	if c == nil {
		return
	}
	defer c.Close()
	// BBR where the kernel allows it, as M-Lab's servers do: the sender's
	// congestion control is the server's to choose, and BBR neither
	// needs losses to find the rate nor fills deep queues for long.
	_ = tcpinfo.SetCongestion(c, "bbr")
	defer v.track("download", c)()
	_ = c.SetWriteDeadline(time.Now().Add(spec.MaxStream))
	_ = p.send(c, v, 0, -1, nil)
}

// uploadV2 reads and discards until the client closes or spec.MaxStream
// has passed, and sends a report line every spec.ReportEvery.
func (p *Provider) uploadV2(w http.ResponseWriter, r *http.Request) {
	v, c, brw := p.upgrade(w, r, false)
	if c == nil {
		return
	}
	br := brw.Reader
	defer c.Close()
	untrack := v.track("upload", c)
	defer untrack()
	v.mu.Lock()
	if v.ulStreamStart.IsZero() {
		v.ulStreamStart = time.Now()
	}
	start := v.ulStreamStart
	v.uploadConnections[c] = true
	st := &ulStream{arrival: goodput.NewArrival(c)}
	v.ulStreams = append(v.ulStreams, st)
	v.mu.Unlock()
	_ = c.SetDeadline(time.Now().Add(spec.MaxStream))
	report := func() bool {
		// Stamped when counted, not when the tick was due: a tick
		// served late under load carried the bytes of later, and the
		// next one read a hole (a 16 Mbit/s cap read 17.24 over a 0.7-s
		// window, reports 0 then 26.7).
		v.mu.Lock()
		now := time.Now()
		rep := spec.UploadReport{TS: math.Round(now.Sub(start).Seconds()*1e6) / 1e6, Bytes: v.received, Arrived: v.arrived()}
		v.report(rep)
		v.mu.Unlock()
		b, _ := json.Marshal(rep)
		_, err := c.Write(append(b, '\n'))
		return err == nil
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		clock.Every(done, spec.ReportEvery, report)
	}()
	defer func() {
		// The reporter ends before the handler (and before untrack
		// reads c's last TCP_INFO): a deadline now ends a write it is
		// blocked in.
		close(done)
		_ = c.SetWriteDeadline(time.Now())
		<-finished
	}()
	_ = p.receive(br, v, st, nil)
}

// ulStream is one v2 upload connection: the bytes read from it and what
// arrived at its TCP (goodput.Arrival). Guarded by the view's mutex.
type ulStream struct {
	read    uint64
	arrival *goodput.Arrival
}

// report keeps what rep said, as the client counts it (rep.Counted):
// every report of every stream, in the order sent, for the cross-check
// at collect (each of the client's upload samples must be one of them).
// The caller holds v.mu.
func (v *view) report(rep spec.UploadReport) {
	if len(v.ulReports) < maxReports {
		v.ulReports = append(v.ulReports, goodput.Sample{T: rep.TS, Bytes: rep.Counted()})
	}
}

// arrived is the payload that reached the server's TCP over the session's
// v2 upload streams; the caller holds v.mu.
func (v *view) arrived() int64 {
	var n uint64
	for _, st := range v.ulStreams {
		n += st.arrival.Count(st.read)
	}
	return int64(n)
}

// pingV2 echoes spec.PingSize-byte messages until the client closes. The
// 101 leaves with the first echo: the client sends its first pings right
// behind the request, and at long round trips the answer and their
// echoes all leave before the first acknowledgment comes back, within
// the initial congestion window of ten segments (the 101 on its own and
// ten echoes would hold the tenth back for a round trip).
func (p *Provider) pingV2(w http.ResponseWriter, r *http.Request) {
	_, c, brw := p.upgrade(w, r, true)
	if c == nil {
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(spec.MaxPingStream))
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	msg := make([]byte, spec.PingSize)
	for {
		if _, err := io.ReadFull(brw, msg); err != nil {
			return
		}
		if _, err := brw.Write(msg); err != nil {
			return
		}
		if err := brw.Flush(); err != nil {
			return
		}
	}
}

// phaseView is the server's TCP_INFO series of one phase: every connection
// of the phase is read every sampleEvery while it is open.
type phaseView struct {
	start   time.Time
	active  map[net.Conn]bool
	last    map[net.Conn]tcpinfo.Info
	samples []schemas.SpeedtestTCPSample
	running bool
}

// sampleEvery is the period of the server's TCP_INFO readings.
const sampleEvery = 100 * time.Millisecond

// track adds c to the phase's connections until the returned func is
// called, and starts the phase's sampler if it is not running.
func (v *view) track(phase string, c net.Conn) func() {
	if _, err := tcpinfo.Read(c); err != nil {
		return func() {} // no TCP_INFO here: no series
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	pv := v.phases[phase]
	if pv == nil {
		pv = &phaseView{start: time.Now(), active: map[net.Conn]bool{}, last: map[net.Conn]tcpinfo.Info{}}
		v.phases[phase] = pv
	}
	pv.active[c] = true
	if !pv.running {
		pv.running = v.bg.start(func(quit <-chan struct{}) { v.sample(pv, quit) })
	}
	return func() {
		info, err := tcpinfo.Read(c)
		v.mu.Lock()
		defer v.mu.Unlock()
		if err == nil {
			pv.last[c] = info
			if phase == "download" {
				v.tcp[c] = info
			}
		}
		delete(pv.active, c)
	}
}

// sample reads TCP_INFO of pv's open connections every sampleEvery; it
// stops after half a second without any, or when quit is closed.
func (v *view) sample(pv *phaseView, quit <-chan struct{}) {
	idle := 0
	clock.Every(quit, sampleEvery, func() bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		now := time.Now() // when TCP_INFO is read, not when the tick was due
		if len(pv.active) == 0 {
			idle++
			if idle >= 5 {
				pv.running = false
				return false
			}
			return true
		}
		idle = 0
		var smp schemas.SpeedtestTCPSample
		var rttSum float64
		open := 0
		for c := range pv.active {
			info, err := tcpinfo.Read(c)
			if err != nil {
				continue
			}
			pv.last[c] = info
			open++
			rttSum += ms(info.RTT)
			if m := ms(info.MinRTT); m > 0 && (smp.MinRTTMS == 0 || m < smp.MinRTTMS) {
				smp.MinRTTMS = m
			}
			smp.DeliveryRateMbps += float64(info.DeliveryRate) * 8 / 1e6
		}
		for _, info := range pv.last {
			smp.BytesAcked += info.BytesAcked
			smp.BytesReceived += info.BytesRecv
			smp.BytesRetrans += info.BytesRetrans
		}
		if open > 0 && len(pv.samples) < schemas.MaxThroughputSamples {
			smp.TS = round3(now.Sub(pv.start).Seconds())
			smp.RTTMS = round3(rttSum / float64(open))
			smp.MinRTTMS = round3(smp.MinRTTMS)
			smp.DeliveryRateMbps = round3(smp.DeliveryRateMbps)
			pv.samples = append(pv.samples, smp)
		}
		return true
	})
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// phaseRecord is the record of a phase's series; nil when none ran. The
// caller holds v.mu.
func (v *view) phaseRecord(phase string) *schemas.SpeedtestServerPhase {
	pv := v.phases[phase]
	if pv == nil || len(pv.last) == 0 {
		return nil
	}
	out := &schemas.SpeedtestServerPhase{Connections: uint8(min(len(pv.last), 64)), Samples: append([]schemas.SpeedtestTCPSample{}, pv.samples...)}
	for _, info := range pv.last {
		out.BytesAcked += info.BytesAcked
		out.BytesReceived += info.BytesRecv
	}
	var rtts []float64
	for _, s := range pv.samples {
		if s.RTTMS > 0 {
			rtts = append(rtts, s.RTTMS)
		}
	}
	out.RTTMedianMS = round3(schemas.Median(rtts))
	out.RTTP90MS = round3(schemas.P90(rtts))
	return out
}
