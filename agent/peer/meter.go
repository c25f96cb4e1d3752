package peer

// The meter enforces the volunteer's bandwidth and daily volume caps on
// every byte of the peer listener's connections: both directions share one
// daily budget, each direction has its own token bucket shared by all
// connections. A connection that would go past the day's budget gets
// errDailyCap instead of the bytes, so the cap holds exactly, whatever the
// load; reads are throttled after the fact, which slows the sender through
// TCP's flow control.

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/neubot/neubot/proto/rendezvous"
)

// errDailyCap ends the I/O of a connection once the day's volume is used.
var errDailyCap = errors.New("peer: the volunteer's daily volume for serving peers is used up")

// Once the day's budget is gone, a connection may still read and write
// grace bytes: enough to take a request and answer it with the refusal
// (every request gets one then, see Server.admit), not enough to carry a
// test. Those bytes are counted apart (meter.over), and bounded too, by
// maxOver a day: past it, connections are closed unanswered.
const (
	grace   = 8 << 10
	maxOver = 1 << 20
)

// minBurst is the smallest token bucket, so that one TCP segment's worth of
// reads or writes never waits for more tokens than the bucket holds.
const minBurst = 16 << 10

// meter counts and limits the bytes of the peer listener.
type meter struct {
	now func() time.Time

	mu    sync.Mutex
	day   string // UTC date of used
	used  int64  // bytes of day, both directions, within the cap
	over  int64  // bytes of day past the cap: refusals (see grace)
	daily int64  // the cap, bytes
	dirty bool   // used changed since the last save

	send, recv *rate.Limiter
}

// rate returns the capped rate, bytes per second.
func (m *meter) rate() float64 { return float64(m.send.Limit()) }

func newMeter(caps rendezvous.PeerCaps, now func() time.Time) *meter {
	m := &meter{now: now, send: rate.NewLimiter(1, minBurst), recv: rate.NewLimiter(1, minBurst)}
	m.setCaps(caps)
	return m
}

// setCaps applies new caps to the connections open and to come.
func (m *meter) setCaps(caps rendezvous.PeerCaps) {
	bytesPerS := caps.MaxMbps * 1e6 / 8
	// A bucket of 20 ms at the capped rate, and at least minBurst: the
	// rate holds over any window of a second or more (over 20 ms from
	// about 6.5 Mbit/s up).
	burst := max(int(bytesPerS/50), minBurst)
	for _, l := range []*rate.Limiter{m.send, m.recv} {
		l.SetBurst(burst)
		l.SetLimit(rate.Limit(bytesPerS))
	}
	m.mu.Lock()
	m.daily = caps.DailyMB * 1_000_000
	m.mu.Unlock()
}

// rollLocked starts a new budget at UTC midnight.
func (m *meter) rollLocked() {
	if d := m.now().UTC().Format(time.DateOnly); d != m.day {
		m.day, m.used, m.over, m.dirty = d, 0, 0, true
	}
}

// take reserves up to n bytes of today's budget and returns how many, and
// the day they count on, or errDailyCap when none is left.
func (m *meter) take(n int) (int, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rollLocked()
	left := m.daily - m.used
	if left <= 0 {
		return 0, m.day, errDailyCap
	}
	k := int(min(int64(n), left))
	m.used += int64(k)
	m.dirty = true
	return k, m.day, nil
}

// refund gives back bytes reserved on day and not used; a reservation of
// a day that is over is not given back to the new one.
func (m *meter) refund(n int, day string) {
	if n <= 0 {
		return
	}
	m.mu.Lock()
	if m.day == day {
		m.used -= int64(n)
	}
	m.mu.Unlock()
}

// left returns the bytes left today.
func (m *meter) left() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rollLocked()
	return m.daily - m.used
}

// usage returns today's bytes within the cap, and the cap.
func (m *meter) usage() (day string, used, daily int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rollLocked()
	return m.day, m.used, m.daily
}

// overflow returns today's bytes past the cap (refusals).
func (m *meter) overflow() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rollLocked()
	return m.over
}

// takeGrace reserves up to n of c's grace bytes, counted past the cap.
func (m *meter) takeGrace(c *conn, n int) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := int(min(int64(min(n, c.grace)), maxOver-m.over))
	if k <= 0 {
		return 0, errDailyCap
	}
	c.grace -= k
	m.over += int64(k)
	return k, nil
}

// restore sets the bytes already used on day (from the last run's file).
func (m *meter) restore(day string, used int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rollLocked()
	if day == m.day && used > 0 {
		m.used = used
	}
}

// listener wraps the accepted connections in the meter, and keeps them,
// so that closing it ends them all: an ndt7 test's WebSocket is hijacked
// from the HTTP server, whose Shutdown does not wait for it nor end it.
type listener struct {
	net.Listener
	m *meter

	mu    sync.Mutex
	conns map[*conn]struct{}
}

// closeConns ends every connection still open.
func (l *listener) closeConns() {
	l.mu.Lock()
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}

	// Bytes wait in the kernel's receive buffer before Read counts and
	// paces them: at low caps, keep it to about 200 ms of the cap (at
	// least 128 KiB), so that an upload cannot run ahead of the cap by
	// megabytes. Higher caps keep the kernel's autotuning, which a fixed
	// buffer would cap below them on long paths.
	if tc, ok := c.(*net.TCPConn); ok {
		if b := int(l.m.rate() / 5); b <= 1<<20 {
			tc.SetReadBuffer(max(b, 128<<10))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	mc := &conn{Conn: c, m: l.m, ctx: ctx, cancel: cancel, grace: grace, l: l}
	l.mu.Lock()
	if l.conns == nil {
		l.conns = map[*conn]struct{}{}
	}
	l.conns[mc] = struct{}{}
	l.mu.Unlock()
	return mc, nil
}

// conn is one metered connection. NetConn gives the socket back, so that
// TCP_INFO can still be read (internal/tcpinfo).
type conn struct {
	net.Conn
	m      *meter
	ctx    context.Context // ends with Close: waits for tokens end too
	cancel context.CancelFunc

	mu    sync.Mutex // serialises take/refund of reads and writes with grace
	grace int        // bytes left past the day's cap
	l     *listener
}

// take reserves n bytes of today's budget or, once it is gone, of the
// connection's grace; it returns a refund function for what is not used.
func (c *conn) take(n int) (int, func(int), error) {
	k, day, err := c.m.take(n)
	if err == nil {
		return k, func(unused int) { c.m.refund(unused, day) }, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k, err = c.m.takeGrace(c, n)
	return k, func(unused int) {
		if unused > 0 {
			c.mu.Lock()
			c.grace += unused
			c.mu.Unlock()
			c.m.mu.Lock()
			c.m.over -= int64(unused)
			c.m.mu.Unlock()
		}
	}, err
}

func (c *conn) NetConn() net.Conn { return c.Conn }

func (c *conn) Close() error {
	c.cancel()
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

func (c *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	k, refund, err := c.take(min(len(p), c.m.recv.Burst()))
	if err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p[:k])
	refund(k - n)
	if n > 0 {
		if werr := waitN(c.ctx, c.m.recv, n); werr != nil && err == nil {
			err = net.ErrClosed
		}
	}
	return n, err
}

func (c *conn) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		k, refund, err := c.take(min(len(p)-written, c.m.send.Burst()))
		if err != nil {
			return written, err
		}
		if err := waitN(c.ctx, c.m.send, k); err != nil {
			refund(k)
			return written, net.ErrClosed
		}
		n, err := c.Conn.Write(p[written : written+k])
		refund(k - n)
		written += n
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// waitN waits for n tokens of l, in pieces of at most its burst (which caps
// may have lowered since n was chosen).
func waitN(ctx context.Context, l *rate.Limiter, n int) error {
	for n > 0 {
		k := min(n, max(l.Burst(), 1))
		if err := l.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
