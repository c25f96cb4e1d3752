package wire

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"sync/atomic"
	"time"

	"github.com/neubot/neubot/internal/clock"
	"github.com/neubot/neubot/internal/tcpinfo"
	spec "github.com/neubot/neubot/proto/bittorrent"
	"github.com/neubot/neubot/schemas"
)

// Flow is one connection after its handshake. The seeder sends its
// bitfield, the leecher says interested, the seeder unchokes, then the
// leecher keeps requests of one block outstanding (at least spec.Pipeline,
// more as throughput × round-trip time grows) and the seeder answers each
// with a piece. The leecher stops requesting after
// Duration (or MaxBytes read; or, with KneeBytes, at twice the time it
// took to read KneeBytes), receives what it still asked for, and
// closes; the seeder ends at that close. With Random set every message is
// replaced by random bytes of the same length, so the two shapes differ
// only in the bytes, never in sizes or timing.
type Flow struct {
	Conn        net.Conn
	Random      bool
	Duration    time.Duration
	SampleEvery time.Duration
	MaxBytes    int64 // 0: no limit
	// KneeBytes, when above 0, makes a leecher's flow run until it has
	// read KneeBytes and then as long again (Duration at most): the
	// second half of the flow, its tail (TailRate), is then all after
	// the first KneeBytes, where a throttle triggered by a byte count of
	// up to KneeBytes has begun.
	KneeBytes int64
	// Stall ends the flow when no byte moves for this long (default
	// spec.StallTimeout): the read or write fails with a timeout.
	Stall time.Duration
	// Sent and Received count every byte written and read (optional).
	Sent, Received *atomic.Int64
	// MaxOutstanding is, after Leech, the most requests it kept
	// outstanding.
	MaxOutstanding int
}

// Lengths of the messages, prefix included.
const (
	bitfieldLen = 4 + 1 + spec.Pieces/8
	shortLen    = 4 + 1 // interested, unchoke
	requestLen  = 4 + 1 + 12
	pieceLen    = 4 + 1 + 8 + spec.BlockSize
)

// counted counts the bytes of a connection.
type counted struct {
	net.Conn
	sent, received *atomic.Int64
	stall          time.Duration
	onIO           func() // after every read and write, if set
}

func (c *counted) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.stall))
	n, err := c.Conn.Read(p)
	return c.count(c.received, n, err)
}

func (c *counted) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.stall))
	n, err := c.Conn.Write(p)
	return c.count(c.sent, n, err)
}

// count adds the n bytes of a read or write to total and tells onIO.
func (c *counted) count(total *atomic.Int64, n int, err error) (int, error) {
	total.Add(int64(n))
	if c.onIO != nil {
		c.onIO()
	}
	return n, err
}

func (f *Flow) conn() *counted {
	if f.Sent == nil {
		f.Sent = new(atomic.Int64)
	}
	if f.Received == nil {
		f.Received = new(atomic.Int64)
	}
	if f.Stall <= 0 {
		f.Stall = spec.StallTimeout
	}
	return &counted{Conn: f.Conn, sent: f.Sent, received: f.Received, stall: f.Stall}
}

// send writes a message, or random bytes of its length.
func (f *Flow) send(w io.Writer, m Message, n int, scratch []byte) error {
	b := scratch[:0]
	if f.Random {
		b = b[:n]
		fill(b)
	} else {
		b = m.Append(b)
	}
	_, err := w.Write(b)
	return err
}

// expect reads the next message, which must have id (keep-alives and
// haves are skipped, as a real peer would); in a random flow it reads n
// bytes.
func (f *Flow) expect(r io.Reader, id byte, n int, buf []byte) (Message, error) {
	if f.Random {
		_, err := io.ReadFull(r, buf[:n])
		return Message{ID: id}, err
	}
	for {
		m, err := ReadMessage(r, buf)
		if err != nil {
			return m, err
		}
		if m.KeepAlive || m.ID == spec.MsgHave {
			continue
		}
		if m.ID != id || 4+1+len(m.Payload) != n {
			return m, fmt.Errorf("%w: got id %d of %d bytes, want id %d of %d", ErrMessage, m.ID, 5+len(m.Payload), id, n)
		}
		return m, nil
	}
}

// Seed runs the seeder's side until the leecher closes. It returns the
// throughput it measured as sender, sampled every SampleEvery from its
// unchoke: bytes the leecher acknowledged (TCP_INFO), or bytes written
// where the kernel does not say.
func (f *Flow) Seed() ([]schemas.ThroughputSample, error) {
	samples, err := f.seed()
	return samples, err
}

// ackedCounter returns a counter of the bytes the peer acknowledged on
// conn, or of the bytes written when TCP_INFO is not available.
func ackedCounter(conn net.Conn, sent *atomic.Int64) func() int64 {
	if _, err := tcpinfo.Read(conn); err != nil {
		return sent.Load
	}
	return func() int64 {
		ti, err := tcpinfo.Read(conn)
		if err != nil {
			return sent.Load()
		}
		return int64(ti.BytesAcked)
	}
}

func (f *Flow) seed() (samples []schemas.ThroughputSample, err error) {
	c := f.conn()
	var s *sampler
	stopTick := func() {}
	defer func() {
		if s != nil {
			stopTick()
			samples = s.stop()
		}
	}()
	buf := make([]byte, pieceLen) // a whole message, length prefix included
	out := make([]byte, pieceLen)
	bitfield := make([]byte, spec.Pieces/8)
	for i := range bitfield {
		bitfield[i] = 0xff // a seeder has every piece
	}
	if err := f.send(c, Message{ID: spec.MsgBitfield, Payload: bitfield}, bitfieldLen, out); err != nil {
		return nil, err
	}
	if _, err := f.expect(c, spec.MsgInterested, shortLen, buf); err != nil {
		return nil, err
	}
	if err := f.send(c, Message{ID: spec.MsgUnchoke}, shortLen, out); err != nil {
		return nil, err
	}
	// A sender samples on a clock, not on its writes: a write can wait
	// long for room in the send buffer.
	s = startSampler(ackedCounter(f.Conn, f.Sent), f.SampleEvery, f.Duration)
	stopTick = s.tick()
	for {
		m, err := f.expect(c, spec.MsgRequest, requestLen, buf)
		if err == io.EOF {
			return nil, nil // the leecher is done
		}
		if err != nil {
			return nil, err
		}
		req := Request{Length: spec.BlockSize}
		if !f.Random {
			if req, err = ParseRequest(m.Payload); err != nil {
				return nil, err
			}
		}
		// The piece: header, then the block, in one write.
		b := out[:4+1+8+int(req.Length)]
		if f.Random {
			fill(b)
		} else {
			binary.BigEndian.PutUint32(b, uint32(1+8+req.Length))
			b[4] = spec.MsgPiece
			binary.BigEndian.PutUint32(b[5:], req.Index)
			binary.BigEndian.PutUint32(b[9:], req.Begin)
			fill(b[13:])
		}
		if _, err := c.Write(b); err != nil {
			return nil, err
		}
	}
}

// Leech runs the leecher's side: it requests blocks for Duration and
// returns the throughput it measured as receiver, sampled every
// SampleEvery from its first request. The error says why the flow ended
// early; the samples until then are returned with it.
func (f *Flow) Leech() ([]schemas.ThroughputSample, error) {
	c := f.conn()
	buf := make([]byte, pieceLen) // a whole message, length prefix included
	out := make([]byte, 64)
	if _, err := f.expect(c, spec.MsgBitfield, bitfieldLen, buf); err != nil {
		return nil, err
	}
	if err := f.send(c, Message{ID: spec.MsgInterested}, shortLen, out); err != nil {
		return nil, err
	}
	if _, err := f.expect(c, spec.MsgUnchoke, shortLen, buf); err != nil {
		return nil, err
	}
	var block uint32
	request := func() error {
		r := Request{Index: block / spec.PieceBlocks % spec.Pieces, Begin: block % spec.PieceBlocks * spec.BlockSize, Length: spec.BlockSize}
		block++
		return f.send(c, Message{ID: spec.MsgRequest, Payload: r.payload()}, requestLen, out)
	}
	s := startSampler(f.Received.Load, f.SampleEvery, f.Duration)
	c.onIO = s.observe
	p := newPipeline(s.start)
	var knee time.Duration // when the leecher had read KneeBytes
	more := func() bool {
		el, n := s.elapsed(), s.bytes()
		if f.KneeBytes > 0 && knee == 0 && n >= f.KneeBytes {
			knee = el
		}
		return el < f.Duration && (f.MaxBytes <= 0 || n < f.MaxBytes) && (knee == 0 || el < 2*knee)
	}
	for p.outstanding() < spec.Pipeline {
		if err := request(); err != nil {
			return s.stop(), err
		}
		p.sent(time.Now())
	}
	f.MaxOutstanding = p.outstanding()
	for p.outstanding() > 0 {
		m, err := f.expect(c, spec.MsgPiece, pieceLen, buf)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return s.stop(), err
		}
		if !f.Random && binary.BigEndian.Uint32(m.Payload) >= spec.Pieces {
			return s.stop(), fmt.Errorf("%w: piece index out of the torrent", ErrMessage)
		}
		now := time.Now()
		p.received(now, s.bytes())
		for more() && p.outstanding() < p.target() {
			if err := request(); err != nil {
				return s.stop(), err
			}
			p.sent(now)
		}
		f.MaxOutstanding = max(f.MaxOutstanding, p.outstanding())
	}
	return s.stop(), nil
}

// pipeline sizes the requests a leecher keeps outstanding from the
// bandwidth-delay product, as BitTorrent clients size their request
// queues from their download rate: twice the bytes of the current rate
// over the shortest request-to-piece time seen (the round trip without
// queueing), plus four blocks, between spec.Pipeline and spec.MaxPipeline.
// A fixed pipeline of 16 blocks caps a flow at 256 KiB per round trip
// (about 42 Mbit/s at 50 ms) whatever the link.
type pipeline struct {
	times  []time.Time // send times of the outstanding requests, oldest first
	minRTT time.Duration
	winT   time.Time // start of the rate window
	winB   int64
	rate   float64 // bytes/s over the last window
}

func newPipeline(start time.Time) *pipeline {
	return &pipeline{minRTT: time.Duration(math.MaxInt64), winT: start}
}

func (p *pipeline) outstanding() int { return len(p.times) }

func (p *pipeline) sent(t time.Time) { p.times = append(p.times, t) }

// received notes a piece at t, with bytes read so far.
func (p *pipeline) received(t time.Time, bytes int64) {
	if len(p.times) > 0 {
		p.minRTT = min(p.minRTT, t.Sub(p.times[0]))
		p.times = p.times[1:]
	}
	if dt := t.Sub(p.winT); dt >= 50*time.Millisecond {
		p.rate = float64(bytes-p.winB) / dt.Seconds()
		p.winT, p.winB = t, bytes
	}
}

func (p *pipeline) target() int {
	if p.minRTT == time.Duration(math.MaxInt64) {
		return spec.Pipeline
	}
	n := int(math.Ceil(2*p.rate*p.minRTT.Seconds()/spec.BlockSize)) + 4
	return min(max(n, spec.Pipeline), spec.MaxPipeline)
}

// sampler records a byte counter about every period until dur has
// passed. It samples on the reading path, at the first read after each
// period boundary, rather than from a ticker: a receiver starved of CPU
// then loses no samples, it takes them a little late, at the real time.
type sampler struct {
	counter    func() int64
	base       int64
	start      time.Time
	every, dur time.Duration
	next       time.Duration // the next boundary
	samples    []schemas.ThroughputSample
}

func startSampler(counter func() int64, every, dur time.Duration) *sampler {
	return &sampler{counter: counter, base: counter(), start: time.Now(), every: every, dur: dur, next: every}
}

func (s *sampler) elapsed() time.Duration { return time.Since(s.start) }
func (s *sampler) bytes() int64           { return s.counter() - s.base }

// tick observes on a clock, ten times a period, until the returned
// function is called (it waits for the last observation).
func (s *sampler) tick() (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		clock.Every(done, max(s.every/10, time.Millisecond), func() bool { s.observe(); return true })
	}()
	return func() { close(done); <-finished }
}

// observe is called after every read.
func (s *sampler) observe() {
	el := s.elapsed()
	if el < s.next || el > s.dur+s.every/2 || len(s.samples) >= schemas.MaxFlowSamples {
		return
	}
	s.add(el.Seconds(), uint64(s.bytes()))
	for s.next <= el {
		s.next += s.every
	}
}

func (s *sampler) add(t float64, b uint64) {
	var prevT float64
	var prevB uint64
	if n := len(s.samples); n > 0 {
		prevT, prevB = s.samples[n-1].TS, s.samples[n-1].Bytes
	}
	mbps := 0.0
	if t > prevT {
		mbps = float64(b-prevB) * 8 / 1e6 / (t - prevT)
	}
	s.samples = append(s.samples, schemas.ThroughputSample{TS: round3(t), Bytes: b, Mbps: round3(mbps)})
}

// stop returns the samples; a flow that ended before its duration (byte
// limit, error) gets a last sample at its end.
func (s *sampler) stop() []schemas.ThroughputSample {
	el := s.elapsed()
	if n := len(s.samples); n < schemas.MaxFlowSamples && el < s.dur && (n == 0 || round3(el.Seconds()) > s.samples[n-1].TS) {
		s.add(el.Seconds(), uint64(s.bytes()))
	}
	return s.samples
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// Sampler samples a byte counter about every period until a duration has
// passed, on the reading or writing path (Observe after every read or
// write): what the BitTorrent flows use, for other tests' flows.
type Sampler struct{ s *sampler }

// NewSampler starts sampling counter now.
func NewSampler(counter func() int64, every, dur time.Duration) *Sampler {
	return &Sampler{startSampler(counter, every, dur)}
}

// Observe takes a sample if a period boundary has passed.
func (s *Sampler) Observe() { s.s.observe() }

// Tick observes on a clock until the returned function is called; a
// sender samples so (its writes can wait long for room in the buffer).
func (s *Sampler) Tick() (stop func()) { return s.s.tick() }

// Stop returns the samples.
func (s *Sampler) Stop() []schemas.ThroughputSample { return s.s.stop() }

// AckedCounter counts the bytes the peer acknowledged on conn (TCP_INFO),
// or those counted in written where the kernel does not say.
func AckedCounter(conn net.Conn, written *atomic.Int64) func() int64 {
	return ackedCounter(conn, written)
}
