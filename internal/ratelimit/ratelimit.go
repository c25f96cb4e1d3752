// Package ratelimit is a token bucket per client address, bounded in
// memory, shared by the test servers' negotiation and the public API.
package ratelimit

import (
	"net/netip"
	"sync"
	"time"
)

// maxBuckets bounds the addresses remembered; past it, full buckets (the
// addresses idle long enough to be back at their burst) are forgotten.
const maxBuckets = 100_000

// Limiter allows rate requests per second per address, with a burst.
type Limiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a limiter.
func New(rate float64, burst int) *Limiter {
	return &Limiter{rate: rate, burst: float64(burst), buckets: map[string]*bucket{}}
}

// Key is the bucket of a client address: the address itself for IPv4, its
// /64 for IPv6 (one subscriber's network holds a whole /64 and could
// otherwise take a fresh bucket per address).
func Key(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is6() || a.Is4In6() {
		return addr
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// Key24 is the bucket of a client address for limits on a whole site: its
// /24 for IPv4 (one subscriber or one NAT pool may hold several addresses
// of it) and its /64 for IPv6. The test servers key their rate limits and
// session caps on it.
func Key24(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	a = a.Unmap()
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p.String()
}

// Allow takes a token of addr's bucket at now, if there is one.
func (l *Limiter) Allow(addr string, now time.Time) bool {
	return l.AllowN(addr, 1, now)
}

// AllowN takes n tokens of addr's bucket at now, if it holds them.
func (l *Limiter) AllowN(addr string, n float64, now time.Time) bool {
	return l.take(addr, n, now, false)
}

// Charge takes n tokens of addr's bucket even beyond what it holds, and
// reports whether it had them: volume already received is charged whole,
// so that the bucket then refuses until it refilled.
func (l *Limiter) Charge(addr string, n float64, now time.Time) bool {
	return l.take(addr, n, now, true)
}

func (l *Limiter) take(addr string, n float64, now time.Time, force bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buckets) > maxBuckets {
		for k, b := range l.buckets {
			if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
				delete(l.buckets, k)
			}
		}
		// Still full (many busy addresses, e.g. one network's): forget a
		// tenth of them, at random (map order), so that memory and the
		// time of this sweep stay bounded.
		for k := range l.buckets {
			if len(l.buckets) <= maxBuckets*9/10 {
				break
			}
			delete(l.buckets, k)
		}
	}
	b := l.buckets[addr]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[addr] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < n {
		if force {
			b.tokens -= n
		}
		return false
	}
	b.tokens -= n
	return true
}

// RetryAfter is how long addr waits for its next token (at least 1 s, for
// a Retry-After header).
func (l *Limiter) RetryAfter(addr string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[addr]
	if b == nil || b.tokens >= 1 || l.rate <= 0 {
		return time.Second
	}
	return max(time.Second, time.Duration((1-b.tokens)/l.rate*float64(time.Second)))
}

// Concurrency bounds the requests in progress per key (an address, a /64).
type Concurrency struct {
	mu   sync.Mutex
	max  int
	busy map[string]int
}

// NewConcurrency allows max requests at once per key.
func NewConcurrency(max int) *Concurrency {
	return &Concurrency{max: max, busy: map[string]int{}}
}

// Acquire takes one of key's places, if it has one left; Release gives it
// back.
func (c *Concurrency) Acquire(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy[key] >= c.max {
		return false
	}
	c.busy[key]++
	return true
}

// Release gives back a place taken by Acquire.
func (c *Concurrency) Release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy[key] <= 1 {
		delete(c.busy, key)
		return
	}
	c.busy[key]--
}

// InUse is the number of key's places taken.
func (c *Concurrency) InUse(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.busy[key]
}
