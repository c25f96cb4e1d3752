package testserver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/neubot/neubot/internal/clock"
)

// epoch is where the tests' manual clocks start.
var epoch = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// unchoked negotiates from addr and fails the test unless it may test at
// once.
func unchoked(t *testing.T, n *Negotiator, addr string) Negotiation {
	t.Helper()
	got, err := n.Negotiate(context.Background(), "", "", addr)
	if err != nil || !got.Unchoked {
		t.Fatalf("%s: %+v %v; want unchoked at once", addr, got, err)
	}
	return got
}

// TestStaleQueuedAgentSkipped: when a slot frees, an agent that stopped
// asking for its place (longer than QueueGrace) does not get it; the next
// live one does.
func TestStaleQueuedAgentSkipped(t *testing.T) {
	clk := clock.NewManual(epoch)
	n := NewNegotiator(NegotiatorConfig{Capacity: 1, QueueGrace: 200 * time.Millisecond, Rate: 100, Clock: clk})
	ctx := context.Background()
	first := unchoked(t, n, "192.0.2.1")
	stale, _ := n.Negotiate(ctx, "", "", "192.0.2.2")
	clk.Advance(150 * time.Millisecond)
	live, _ := n.Negotiate(ctx, "", "", "192.0.2.3")
	if stale.Unchoked || live.Unchoked || live.QueuePos != 2 || live.TTL != 200*time.Millisecond {
		t.Fatalf("queue: stale %+v live %+v", stale, live)
	}
	clk.Advance(50 * time.Millisecond) // stale exactly at its grace: still in
	if _, queued, _ := n.Load(); queued != 2 {
		t.Fatalf("%d queued at the grace, want 2", queued)
	}
	clk.Advance(time.Millisecond) // stale is now past its grace; live is not
	n.Release(first.Session)
	if got := stale.Session.State(); got != Revoked {
		t.Fatalf("stale agent state %v, want Revoked", got)
	}
	if got := live.Session.State(); got != Active {
		t.Fatalf("live agent state %v, want Active", got)
	}
}

// TestLongPoll: a queued agent asking again waits up to LongPoll for its
// turn: it is answered with its place when LongPoll has passed, and at
// once when a slot frees for it.
func TestLongPoll(t *testing.T) {
	clk := clock.NewManual(epoch)
	n := NewNegotiator(NegotiatorConfig{Capacity: 1, LongPoll: time.Second, TestTimeout: time.Minute, Rate: 100, Clock: clk})
	ctx := context.Background()
	first, _ := n.Negotiate(ctx, "", "", "192.0.2.1")
	second, err := n.Negotiate(ctx, "", "", "192.0.2.2")
	if err != nil || second.Unchoked || second.QueuePos != 1 {
		t.Fatalf("second: %+v %v", second, err)
	}
	poll := func() chan Negotiation {
		ch := make(chan Negotiation, 1)
		go func() {
			neg, err := n.Negotiate(ctx, second.Session.Token, "", "192.0.2.2")
			if err != nil {
				t.Error(err)
			}
			ch <- neg
		}()
		clk.WaitTimers(2) // the first test's timer and the long poll
		return ch
	}
	ch := poll()
	clk.Advance(time.Second - time.Millisecond)
	select {
	case neg := <-ch: // nothing but the clock or a free slot ends the poll
		t.Fatalf("answered before LongPoll: %+v", neg)
	default:
	}
	clk.Advance(time.Millisecond)
	if neg := <-ch; neg.Unchoked || neg.QueuePos != 1 {
		t.Fatalf("after LongPoll: %+v", neg)
	}
	ch = poll()
	clk.Advance(time.Millisecond)
	n.Release(first.Session)
	if neg := <-ch; !neg.Unchoked || neg.TTL != time.Minute {
		t.Fatalf("after the slot freed: %+v", neg)
	}
}

// TestExtendAndWithdraw: Extend postpones the per-test timer (never brings
// it forward); Withdraw takes a queued session out and frees nothing else.
func TestExtendAndWithdraw(t *testing.T) {
	clk := clock.NewManual(epoch)
	n := NewNegotiator(NegotiatorConfig{Capacity: 1, TestTimeout: 100 * time.Millisecond, Rate: 100, Clock: clk})
	ctx := context.Background()
	a := unchoked(t, n, "192.0.2.1")
	n.Extend(a.Session, 300*time.Millisecond)
	n.Extend(a.Session, 10*time.Millisecond) // shorter: no effect
	clk.Advance(299 * time.Millisecond)
	if got := a.Session.State(); got != Active {
		t.Fatalf("extended session %v after the original timeout, want Active", got)
	}
	b, _ := n.Negotiate(ctx, "", "", "192.0.2.2")
	if b.Unchoked {
		t.Fatal("b unchoked while a runs")
	}
	n.Withdraw(b.Session)
	if _, queued, _ := n.Load(); queued != 0 || b.Session.State() != Revoked {
		t.Fatalf("after Withdraw: %d queued, b %v", queued, b.Session.State())
	}
	clk.Advance(time.Millisecond)
	if got := a.Session.State(); got != Revoked {
		t.Fatalf("a is %v at the extended timeout, want Revoked", got)
	}
}

// TestAdmitAtTurn: Admit is asked when a session's turn comes, not only
// when it arrives: an agent admitted while another test ran is refused, with
// the reason, if that test used the room it was admitted to; the next one
// gets the slot.
func TestAdmitAtTurn(t *testing.T) {
	var full atomic.Bool
	n := NewNegotiator(NegotiatorConfig{Capacity: 1, Rate: 100, Clock: clock.NewManual(epoch),
		Admit: func(Test) error {
			if full.Load() {
				return errors.New("no room left today")
			}
			return nil
		}})
	ctx := context.Background()
	first := unchoked(t, n, "192.0.2.1")
	waiting, err := n.Negotiate(ctx, "", "", "192.0.2.2")
	if err != nil || waiting.Unchoked {
		t.Fatalf("second: %+v %v", waiting, err)
	}
	full.Store(true) // the first test used the room
	n.Release(first.Session)
	_, err = n.Negotiate(ctx, waiting.Session.Token, "", "192.0.2.2")
	if !errors.Is(err, ErrRefused) || StatusOf(err) != 503 || !strings.Contains(err.Error(), "no room left today") {
		t.Fatalf("the waiting agent's turn: %v (status %d)", err, StatusOf(err))
	}
	if active, queued, _ := n.Load(); active != 0 || queued != 0 {
		t.Fatalf("after the refusal: %d active, %d queued", active, queued)
	}
	full.Store(false)
	if next, err := n.Negotiate(ctx, "", "", "192.0.2.3"); err != nil || !next.Unchoked {
		t.Fatalf("a new agent with room again: %+v %v", next, err)
	}
}

// TestSiteCannotFillQueue: one IPv6 host rotating addresses within its /64
// (or an IPv4 host within its /24) gets at most MaxPerSite sessions, never
// the whole queue; another network still gets in.
func TestSiteCannotFillQueue(t *testing.T) {
	n := NewNegotiator(NegotiatorConfig{Capacity: 1, MaxQueue: 100, Rate: 1e6, Burst: 1e6})
	ctx := context.Background()
	for _, site := range []string{"2001:db8:1:2::%x", "198.51.100.%d"} {
		got, full := 0, 0
		for i := 1; i <= 200; i++ {
			addr := fmt.Sprintf(site, i%250+1)
			if strings.Contains(site, ":") {
				addr = fmt.Sprintf("2001:db8:1:2:%x:%x::%x", i, i*7, i)
			}
			_, err := n.Negotiate(ctx, "", "", addr)
			switch {
			case err == nil:
				got++
			case errors.Is(err, ErrSiteFull) && StatusOf(err) == 429:
				full++
			default:
				t.Fatalf("%s: %v", addr, err)
			}
		}
		if got != 10 || full != 190 {
			t.Fatalf("%s: %d sessions, %d refused; want 10 and 190", site, got, full)
		}
	}
	if _, err := n.Negotiate(ctx, "", "", "2001:db8:1:3::1"); err != nil {
		t.Fatalf("another /64: %v", err)
	}
	if _, queued, _ := n.Load(); queued >= 100 {
		t.Fatalf("queue full: %d", queued)
	}
	// The rate limit is keyed by site too.
	r := NewNegotiator(NegotiatorConfig{Rate: 0.001, Burst: 3})
	for i := range 4 {
		_, err := r.Negotiate(ctx, "", "", fmt.Sprintf("2001:db8:9:9::%x", i+1))
		if (i < 3) != (err == nil) || (i == 3 && !errors.Is(err, ErrRateLimited)) {
			t.Fatalf("request %d of one /64 with a burst of 3: %v", i+1, err)
		}
	}
}

// TestSessionCaps: transfers of one session past SessionMaxRequests at
// once are refused; bytes past SessionMaxBytes stop it; a revoked session
// stops its transfers (Begin's stop runs) and counts no more.
func TestSessionCaps(t *testing.T) {
	n := NewNegotiator(NegotiatorConfig{SessionMaxRequests: 2, SessionMaxBytes: 1000, Rate: 100})
	a := unchoked(t, n, "192.0.2.1")
	stopped := make(chan int, 2)
	end1, err1 := n.Begin(a.Session, func() { stopped <- 1 })
	_, err2 := n.Begin(a.Session, func() { stopped <- 2 })
	_, err3 := n.Begin(a.Session, nil)
	if err1 != nil || err2 != nil || !errors.Is(err3, ErrSessionBusy) || StatusOf(err3) != 429 {
		t.Fatalf("3 transfers with a cap of 2: %v %v %v", err1, err2, err3)
	}
	end1()
	end1() // twice is harmless
	if _, err := n.Begin(a.Session, nil); err != nil {
		t.Fatalf("a place freed: %v", err)
	}
	if err := n.Count(a.Session, 900); err != nil {
		t.Fatal(err)
	}
	if err := n.Count(a.Session, 200); !errors.Is(err, ErrSessionBytes) {
		t.Fatalf("past the byte cap: %v", err)
	}
	n.Revoke(a.Session)
	if got := <-stopped; got != 2 || len(stopped) != 0 {
		t.Fatalf("transfer %d stopped on revocation (%d more), want 2, the one still running", got, len(stopped))
	}
	select {
	case <-a.Session.Ended():
	default:
		t.Fatal("Ended not closed")
	}
	if err := n.Count(a.Session, 1); !errors.Is(err, ErrSessionEnded) {
		t.Fatalf("count after revocation: %v", err)
	}
	if _, err := n.Begin(a.Session, nil); !errors.Is(err, ErrSessionEnded) {
		t.Fatalf("begin after revocation: %v", err)
	}
}
