package wire

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"sync/atomic"
	"time"

	spec "github.com/neubot/neubot/proto/bittorrent"
	"github.com/neubot/neubot/schemas"
)

// Flow is one connection after its handshake. The seeder sends its
// bitfield, the leecher says interested, the seeder unchokes, then the
// leecher keeps spec.Pipeline requests of one block outstanding and the
// seeder answers each with a piece. The leecher stops requesting after
// Duration (or MaxBytes read), receives what it still asked for, and
// closes; the seeder ends at that close. With Random set every message is
// replaced by random bytes of the same length, so the two shapes differ
// only in the bytes, never in sizes or timing.
type Flow struct {
	Conn        net.Conn
	Random      bool
	Duration    time.Duration
	SampleEvery time.Duration
	MaxBytes    int64 // 0: no limit
	// Sent and Received count every byte written and read (optional).
	Sent, Received *atomic.Int64
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
	onRead         func() // after every read, if set
}

func (c *counted) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.received.Add(int64(n))
	if c.onRead != nil {
		c.onRead()
	}
	return n, err
}

func (c *counted) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent.Add(int64(n))
	return n, err
}

func (f *Flow) conn() *counted {
	if f.Sent == nil {
		f.Sent = new(atomic.Int64)
	}
	if f.Received == nil {
		f.Received = new(atomic.Int64)
	}
	return &counted{Conn: f.Conn, sent: f.Sent, received: f.Received}
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

// Seed runs the seeder's side until the leecher closes.
func (f *Flow) Seed() error {
	c := f.conn()
	buf := make([]byte, pieceLen) // a whole message, length prefix included
	out := make([]byte, pieceLen)
	bitfield := make([]byte, spec.Pieces/8)
	for i := range bitfield {
		bitfield[i] = 0xff // a seeder has every piece
	}
	if err := f.send(c, Message{ID: spec.MsgBitfield, Payload: bitfield}, bitfieldLen, out); err != nil {
		return err
	}
	if _, err := f.expect(c, spec.MsgInterested, shortLen, buf); err != nil {
		return err
	}
	if err := f.send(c, Message{ID: spec.MsgUnchoke}, shortLen, out); err != nil {
		return err
	}
	for {
		m, err := f.expect(c, spec.MsgRequest, requestLen, buf)
		if err == io.EOF {
			return nil // the leecher is done
		}
		if err != nil {
			return err
		}
		req := Request{Length: spec.BlockSize}
		if !f.Random {
			if req, err = ParseRequest(m.Payload); err != nil {
				return err
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
			return err
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
	s := startSampler(f.Received, f.SampleEvery, f.Duration)
	c.onRead = s.observe
	outstanding := 0
	for ; outstanding < spec.Pipeline; outstanding++ {
		if err := request(); err != nil {
			return s.stop(), err
		}
	}
	for outstanding > 0 {
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
		outstanding--
		if s.elapsed() < f.Duration && (f.MaxBytes <= 0 || s.bytes() < f.MaxBytes) {
			if err := request(); err != nil {
				return s.stop(), err
			}
			outstanding++
		}
	}
	return s.stop(), nil
}

// sampler records a byte counter about every period until dur has
// passed. It samples on the reading path, at the first read after each
// period boundary, rather than from a ticker: a receiver starved of CPU
// then loses no samples, it takes them a little late, at the real time.
type sampler struct {
	counter    *atomic.Int64
	base       int64
	start      time.Time
	every, dur time.Duration
	next       time.Duration // the next boundary
	samples    []schemas.ThroughputSample
}

func startSampler(counter *atomic.Int64, every, dur time.Duration) *sampler {
	return &sampler{counter: counter, base: counter.Load(), start: time.Now(), every: every, dur: dur, next: every}
}

func (s *sampler) elapsed() time.Duration { return time.Since(s.start) }
func (s *sampler) bytes() int64           { return s.counter.Load() - s.base }

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
