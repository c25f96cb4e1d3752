// Package clock is the time of components whose behaviour depends on it
// (the negotiator's long polls, queue grace and per-test timers): the wall
// clock in production, a Manual clock in tests, which then move time
// themselves instead of sleeping through wall-clock margins.
package clock

import (
	"sort"
	"sync"
	"time"
)

// Clock tells the time and runs functions later.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine (Wall) or in the goroutine
	// that moves the time past d (Manual).
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is what AfterFunc returns; *time.Timer is one.
type Timer interface {
	Stop() bool
	Reset(d time.Duration) bool
}

// Wall is the real clock.
type Wall struct{}

func (Wall) Now() time.Time                            { return time.Now() }
func (Wall) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Manual is a clock that moves only when told (Advance). Its timers fire
// in the goroutine that calls Advance, in the order of their deadlines.
type Manual struct {
	mu     sync.Mutex
	cond   *sync.Cond
	now    time.Time
	timers map[*manualTimer]bool // pending
}

// NewManual returns a Manual clock set to start.
func NewManual(start time.Time) *Manual {
	m := &Manual{now: start, timers: map[*manualTimer]bool{}}
	m.cond = sync.NewCond(&m.mu)
	return m
}

func (m *Manual) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

func (m *Manual) AfterFunc(d time.Duration, f func()) Timer {
	t := &manualTimer{m: m, f: f}
	t.Reset(d)
	return t
}

// Advance moves the clock d forward and runs the timers that come due, in
// order, each at its own deadline (a timer set for now or earlier fires at
// the next Advance, Advance(0) included).
func (m *Manual) Advance(d time.Duration) {
	m.mu.Lock()
	end := m.now.Add(d)
	for {
		var due []*manualTimer
		for t := range m.timers {
			if !t.at.After(end) {
				due = append(due, t)
			}
		}
		if len(due) == 0 {
			break
		}
		sort.Slice(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
		t := due[0]
		delete(m.timers, t)
		if t.at.After(m.now) {
			m.now = t.at
		}
		m.cond.Broadcast()
		m.mu.Unlock()
		t.f()
		m.mu.Lock()
	}
	m.now = end
	m.mu.Unlock()
}

// WaitTimers blocks until at least n timers are pending: a test knows then
// that the goroutines it started are waiting on the clock.
func (m *Manual) WaitTimers(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.timers) < n {
		m.cond.Wait()
	}
}

type manualTimer struct {
	m  *Manual
	f  func()
	at time.Time
}

func (t *manualTimer) Stop() bool {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	was := t.m.timers[t]
	delete(t.m.timers, t)
	t.m.cond.Broadcast()
	return was
}

func (t *manualTimer) Reset(d time.Duration) bool {
	t.m.mu.Lock()
	was := t.m.timers[t]
	t.at = t.m.now.Add(d)
	t.m.timers[t] = true
	t.m.cond.Broadcast()
	t.m.mu.Unlock()
	return was
}

// Every calls f every period, in the caller's goroutine, until done is
// closed or f returns false: the loop of a sampler, a reporter or a
// janitor. Periods that f overran are not made up.
func Every(done <-chan struct{}, period time.Duration, f func() bool) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if !f() {
				return
			}
		}
	}
}
