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

// Allow takes a token of addr's bucket at now, if there is one.
func (l *Limiter) Allow(addr string, now time.Time) bool {
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
	if b.tokens < 1 {
		return false
	}
	b.tokens--
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
