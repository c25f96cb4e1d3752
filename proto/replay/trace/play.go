package trace

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/neubot/neubot/proto/bittorrent/wire"
	"github.com/neubot/neubot/schemas"
)

// Flow plays one side of a trace on a connection whose first packet (the
// ClientHello or its inversion) has been exchanged.
type Flow struct {
	Conn  net.Conn
	Trace *Trace
	// Duration bounds the replay: the sender stops sending then.
	Duration    time.Duration
	SampleEvery time.Duration
	// Stall ends the flow when no byte moves for this long.
	Stall time.Duration
	// Sent and Received count the bytes written and read.
	Sent, Received atomic.Int64
}

var zeros = make([]byte, MaxPacket)

// payload returns n bytes of random data (encrypted records look random).
func payload(n int) []byte {
	b := make([]byte, n)
	copy(b, zeros)
	randRead(b)
	return b
}

// send writes side's packets of the trace at their times until Duration.
func (f *Flow) send(side string, start time.Time, observe func()) error {
	at := time.Duration(0)
	buf := payload(MaxPacket)
	for _, p := range f.Trace.Packets {
		if p.From != side || p.ClientHello {
			continue
		}
		at += time.Duration(p.AtMs) * time.Millisecond
		for i := 0; i < p.Count; i++ {
			if i > 0 {
				at += time.Duration(p.EveryMs) * time.Millisecond
			}
			if d := time.Until(start.Add(at)); d > 0 {
				time.Sleep(d)
			}
			if time.Since(start) >= f.Duration {
				return nil
			}
			f.Conn.SetWriteDeadline(time.Now().Add(f.Stall))
			n, err := f.Conn.Write(buf[:p.Size])
			f.Sent.Add(int64(n))
			if observe != nil {
				observe()
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// receive reads until EOF, calling observe after every read. A read that
// waits Stall is a stall unless moving reports that the flow moved bytes
// the other way meanwhile (the server, once the client has sent its part,
// reads nothing while the client drains a throttled download).
func (f *Flow) receive(observe func(), moving func() bool) error {
	buf := make([]byte, 64<<10)
	for {
		f.Conn.SetReadDeadline(time.Now().Add(f.Stall))
		n, err := f.Conn.Read(buf)
		f.Received.Add(int64(n))
		if observe != nil {
			observe()
		}
		if err == io.EOF {
			return nil
		}
		var ne net.Error
		if n == 0 && moving != nil && errors.As(err, &ne) && ne.Timeout() && moving() {
			continue
		}
		if err != nil {
			return err
		}
	}
}

// progress returns a function that reports whether counter grew since its
// last call.
func progress(counter func() int64) func() bool {
	last := counter()
	return func() bool {
		now := counter()
		grew := now > last
		last = now
		return grew
	}
}

// Serve plays the server's side: it sends the server's packets (sampling
// the bytes the client acknowledged), reads the client's, then half-closes
// and waits for the client to close. It returns the server's samples and
// the first error.
func (f *Flow) Serve() ([]schemas.ThroughputSample, error) {
	start := time.Now()
	acked := wire.AckedCounter(f.Conn, &f.Sent)
	s := wire.NewSampler(acked, f.SampleEvery, f.Duration)
	var wg sync.WaitGroup
	var rerr error
	wg.Add(1)
	go func() { defer wg.Done(); rerr = f.receive(nil, progress(acked)) }()
	stopTick := s.Tick()
	werr := f.send("server", start, nil)
	if werr == nil {
		if tc, ok := f.Conn.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite()
		}
	} else {
		f.Conn.Close()
	}
	wg.Wait()
	stopTick()
	samples := s.Stop()
	if werr != nil {
		return samples, werr
	}
	return samples, rerr
}

// Play plays the client's side: it sends the client's packets and reads
// the server's until the server half-closes, sampling what it reads.
func (f *Flow) Play() ([]schemas.ThroughputSample, error) {
	start := time.Now()
	s := wire.NewSampler(f.Received.Load, f.SampleEvery, f.Duration)
	var wg sync.WaitGroup
	var werr error
	wg.Add(1)
	go func() { defer wg.Done(); werr = f.send("client", start, nil) }()
	rerr := f.receive(s.Observe, nil)
	wg.Wait()
	if rerr != nil {
		return s.Stop(), rerr
	}
	return s.Stop(), werr
}
