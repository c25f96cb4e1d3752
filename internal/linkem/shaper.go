package linkem

import (
	"math"
	"math/rand/v2"
)

// verdict is what the link does with an arriving packet.
type verdict int

const (
	deliver verdict = iota // delivered at the time admit returns
	dropped                // the queue was full (drop-tail)
	lost                   // sent over the link, lost on the way
)

// shaper models one direction: drop-tail queue, serialization at the
// rate (or the trace's), random loss, delay. Times are nanoseconds on one
// monotonic clock. It is not safe for concurrent use (one reader calls it).
type shaper struct {
	rate     float64 // bits per ns; 0: no bottleneck
	trace    []float64
	interval int64 // ns per trace rate
	origin   int64 // when the trace starts
	delay    int64
	queue    int
	loss     float64
	rng      *rand.Rand

	lastDep int64   // departure of the last packet admitted
	deps    []int64 // ring of the departures still ahead (the queue)
	head, n int
}

func newShaper(d Dir, origin int64, seed uint64) *shaper {
	s := &shaper{
		rate:     d.Rate / 1e3, // Mbit/s = 1e6 bit / 1e9 ns
		interval: int64(d.TraceInterval),
		origin:   origin,
		delay:    int64(d.Delay),
		queue:    d.Queue,
		loss:     d.Loss,
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		lastDep:  origin,
	}
	for _, r := range d.Trace {
		s.trace = append(s.trace, r/1e3)
	}
	if s.bottleneck() {
		s.deps = make([]int64, s.queue)
	}
	return s
}

func (s *shaper) bottleneck() bool { return s.rate > 0 || len(s.trace) > 0 }

// admit schedules a packet of size bytes arriving at now: when it is
// delivered, or why not.
func (s *shaper) admit(now int64, size int) (int64, verdict) {
	dep := now
	if s.bottleneck() {
		for s.n > 0 && s.deps[s.head] <= now { // departed already
			s.head = (s.head + 1) % len(s.deps)
			s.n--
		}
		if s.n >= s.queue {
			return 0, dropped
		}
		dep = s.serialize(max(now, s.lastDep), float64(size)*8)
		s.lastDep = dep
		s.deps[(s.head+s.n)%len(s.deps)] = dep
		s.n++
	}
	if s.loss > 0 && s.rng.Float64() < s.loss {
		return 0, lost
	}
	return dep + s.delay, deliver
}

// serialize is when bits started at t have left the link.
func (s *shaper) serialize(t int64, bits float64) int64 {
	if len(s.trace) == 0 {
		return t + int64(math.Round(bits/s.rate))
	}
	for {
		k := (t - s.origin) / s.interval
		end := s.origin + (k+1)*s.interval
		r := s.trace[int(k%int64(len(s.trace)))]
		if r > 0 {
			if room := r * float64(end-t); bits <= room {
				return t + int64(math.Round(bits/r))
			}
			bits -= r * float64(end-t)
		}
		t = end
	}
}

// queued is the number of packets in the queue at now (for tests).
func (s *shaper) queued(now int64) int {
	k := 0
	for i := 0; i < s.n; i++ {
		if s.deps[(s.head+i)%len(s.deps)] > now {
			k++
		}
	}
	return k
}
