package linkem

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// packet is a packet in flight, written at at.
type packet struct {
	buf []byte
	n   int
	at  int64
}

// pump moves one direction's packets from src to dst.
type pump struct {
	name     string
	src, dst int
	sh       *shaper
	stop     int // eventfd, readable when the link stops
	wake     int // eventfd, written when the writer sleeps and a packet comes
	bufSize  int
	rt       int // SCHED_FIFO priority, 0: none

	mu       sync.Mutex
	line     []packet // ring of packets in flight, by delivery time
	head, n  int
	free     [][]byte
	sleeping bool
	failure  error

	packets, bytes, delivered, deliveredBytes, dropped, lost atomic.Uint64
	lateSum, lateMax                                         atomic.Int64
}

// newPump makes a pump whose ring and buffers are made in advance for
// inFlight packets: made while the link runs, megabytes of them at a
// time (when a queue of thousands first fills), they set off the garbage
// collector and the runtime's allocation work in the middle of the flow.
func newPump(name string, src, dst int, sh *shaper, stop, mtu, rt, inFlight int) *pump {
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		wake = -1
	}
	p := &pump{name: name, src: src, dst: dst, sh: sh, stop: stop, wake: wake,
		bufSize: mtu + 256, rt: rt, line: make([]packet, max(1024, inFlight))}
	p.free = make([][]byte, inFlight, len(p.line))
	for i := range p.free {
		p.free[i] = make([]byte, p.bufSize)
	}
	return p
}

// inFlight is how many packets a direction can hold at once: its queue
// and its delay at the rate (Rate or the trace's highest), with a tenth
// more, at most maxPrealloc.
func inFlight(d Dir, mtu int) int {
	rate := d.Rate
	for _, r := range d.Trace {
		rate = max(rate, r)
	}
	n := float64(d.Queue) + rate*1e6/8/float64(mtu)*d.Delay.Seconds()
	return min(int(1.1*n)+16, maxPrealloc)
}

// maxPrealloc bounds the buffers made in advance per direction (about
// 28 MB at MTU 1500).
const maxPrealloc = 16384

func (p *pump) closeWake() {
	if p != nil && p.wake >= 0 {
		unix.Close(p.wake)
		p.wake = -1
	}
}

func (p *pump) fail(err error) {
	p.mu.Lock()
	if p.failure == nil {
		p.failure = fmt.Errorf("linkem: %s: %w", p.name, err)
	}
	p.mu.Unlock()
}

func (p *pump) err() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failure
}

func (p *pump) stats() DirStats {
	s := DirStats{
		Packets: p.packets.Load(), Bytes: p.bytes.Load(),
		Delivered: p.delivered.Load(), DeliveredBytes: p.deliveredBytes.Load(),
		Dropped: p.dropped.Load(), Lost: p.lost.Load(),
		LateMax: time.Duration(p.lateMax.Load()),
	}
	if s.Delivered > 0 {
		s.LateMean = time.Duration(p.lateSum.Load() / int64(s.Delivered))
	}
	return s
}

func (p *pump) getBuf() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if k := len(p.free); k > 0 {
		b := p.free[k-1]
		p.free = p.free[:k-1]
		return b
	}
	return make([]byte, p.bufSize)
}

// push queues a packet for the writer, waking it if it sleeps.
func (p *pump) push(pk packet) {
	p.mu.Lock()
	if p.n == len(p.line) {
		grown := make([]packet, 2*len(p.line))
		for i := 0; i < p.n; i++ {
			grown[i] = p.line[(p.head+i)%len(p.line)]
		}
		p.line, p.head = grown, 0
	}
	p.line[(p.head+p.n)%len(p.line)] = pk
	p.n++
	wake := p.sleeping
	p.sleeping = false
	p.mu.Unlock()
	if wake {
		unix.Write(p.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}
}

// read is the reader's loop: every packet is stamped on arrival and
// scheduled (or dropped) at once.
// realtime puts the calling thread under SCHED_FIFO when asked to.
func (p *pump) realtime() bool {
	if p.rt == 0 {
		return true
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: uint32(p.rt)}
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		p.fail(fmt.Errorf("SCHED_FIFO priority %d: %w", p.rt, err))
		return false
	}
	return true
}

// poll waits until fds[0] is ready or timeout has passed (nil: no
// timeout), the wait of the reader's and the writer's loops alike. It
// returns false when the loop must end: fds[1], the stop descriptor, is
// ready, or ppoll failed (p.fail has the error).
func (p *pump) poll(fds []unix.PollFd, timeout *unix.Timespec) bool {
	fds[0].Revents, fds[1].Revents = 0, 0
	if _, err := unix.Ppoll(fds, timeout, nil); err != nil && err != unix.EINTR {
		p.fail(fmt.Errorf("ppoll: %w", err))
		return false
	}
	return fds[1].Revents == 0
}

func (p *pump) read() {
	runtime.LockOSThread() // never unlocked: the thread ends with the loop
	if !p.realtime() {
		return
	}
	fds := []unix.PollFd{{Fd: int32(p.src), Events: unix.POLLIN}, {Fd: int32(p.stop), Events: unix.POLLIN}}
	var buf []byte
	for {
		if buf == nil {
			buf = p.getBuf()
		}
		n, err := unix.Read(p.src, buf)
		switch {
		case err == unix.EAGAIN:
			if !p.poll(fds, nil) {
				return
			}
			continue
		case err == unix.EINTR:
			continue
		case err != nil:
			p.fail(fmt.Errorf("read: %w", err))
			return
		case n == 0:
			continue
		}
		p.packets.Add(1)
		p.bytes.Add(uint64(n))
		at, v := p.sh.admit(clock(), n)
		switch v {
		case dropped:
			p.dropped.Add(1)
		case lost:
			p.lost.Add(1)
		default:
			p.push(packet{buf: buf, n: n, at: at})
			buf = nil
		}
	}
}

// maxBatch bounds the packets written per wake-up between two looks at
// the clock.
const maxBatch = 64

// write is the writer's loop: it sleeps until the first packet is due and
// writes every packet that is.
func (p *pump) write() {
	runtime.LockOSThread() // never unlocked: the slack stays with this thread
	if !p.realtime() {
		return
	}
	// Timer slack 1 ns: ppoll's timeouts then wake within microseconds
	// instead of the default 50 µs slack (and Go's timers' 1 ms).
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0); err != nil {
		p.fail(fmt.Errorf("prctl(PR_SET_TIMERSLACK): %w", err))
		return
	}
	fds := []unix.PollFd{{Fd: int32(p.wake), Events: unix.POLLIN}, {Fd: int32(p.stop), Events: unix.POLLIN}}
	batch := make([]packet, 0, maxBatch)
	var drain [8]byte
	for {
		now := clock()
		wait := int64(-1) // forever
		p.mu.Lock()
		for p.n > 0 && len(batch) < maxBatch && p.line[p.head].at <= now {
			batch = append(batch, p.line[p.head])
			p.line[p.head] = packet{}
			p.head = (p.head + 1) % len(p.line)
			p.n--
		}
		if len(batch) == 0 {
			if p.n == 0 {
				p.sleeping = true
			} else {
				wait = p.line[p.head].at - now
			}
		}
		p.mu.Unlock()
		if len(batch) > 0 {
			for _, pk := range batch {
				if late := now - pk.at; late > p.lateMax.Load() {
					p.lateMax.Store(late)
				}
				p.lateSum.Add(now - pk.at)
				if _, err := unix.Write(p.dst, pk.buf[:pk.n]); err != nil && !errors.Is(err, unix.EINTR) {
					// EIO when the other side's device is down:
					// the packet is lost, the link goes on.
					continue
				}
				p.delivered.Add(1)
				p.deliveredBytes.Add(uint64(pk.n))
			}
			p.mu.Lock()
			for i := range batch {
				p.free = append(p.free, batch[i].buf)
				batch[i] = packet{}
			}
			p.mu.Unlock()
			batch = batch[:0]
			continue
		}
		var ts *unix.Timespec
		if wait >= 0 {
			t := unix.NsecToTimespec(wait)
			ts = &t
		}
		if !p.poll(fds, ts) {
			return
		}
		if fds[0].Revents != 0 {
			unix.Read(p.wake, drain[:])
		}
	}
}
