package testserver

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestStaleQueuedAgentSkipped: when a slot frees, an agent that stopped
// asking for its place does not get it; the next live one does.
func TestStaleQueuedAgentSkipped(t *testing.T) {
	n := NewNegotiator(NegotiatorConfig{Capacity: 1, LongPoll: 50 * time.Millisecond, QueueGrace: 200 * time.Millisecond, Rate: 100})
	ctx := context.Background()
	first, err := n.Negotiate(ctx, "", "", "192.0.2.1")
	if err != nil || !first.Unchoked {
		t.Fatalf("first: %+v %v", first, err)
	}
	stale, _ := n.Negotiate(ctx, "", "", "192.0.2.2")
	time.Sleep(150 * time.Millisecond)
	live, _ := n.Negotiate(ctx, "", "", "192.0.2.3")
	if stale.Unchoked || live.Unchoked || live.QueuePos != 2 {
		t.Fatalf("queue: stale %+v live %+v", stale, live)
	}
	time.Sleep(100 * time.Millisecond) // stale is now past its grace; live is not
	n.Release(first.Session)
	if got := stale.Session.State(); got != Revoked {
		t.Fatalf("stale agent state %v, want Revoked", got)
	}
	if got := live.Session.State(); got != Active {
		t.Fatalf("live agent state %v, want Active", got)
	}
}

// TestExtendAndWithdraw: Extend postpones the per-test timer (never brings
// it forward); Withdraw takes a queued session out and frees nothing else.
func TestExtendAndWithdraw(t *testing.T) {
	n := NewNegotiator(NegotiatorConfig{Capacity: 1, TestTimeout: 100 * time.Millisecond, Rate: 100})
	ctx := context.Background()
	a, err := n.Negotiate(ctx, "", "", "192.0.2.1")
	if err != nil || !a.Unchoked {
		t.Fatalf("a: %+v %v", a, err)
	}
	n.Extend(a.Session, 300*time.Millisecond)
	n.Extend(a.Session, 10*time.Millisecond) // shorter: no effect
	time.Sleep(200 * time.Millisecond)
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
	time.Sleep(200 * time.Millisecond)
	if got := a.Session.State(); got != Revoked {
		t.Fatalf("a is %v after the extended timeout, want Revoked", got)
	}
}

// TestAdmitAtTurn: Admit is asked when a session's turn comes, not only
// when it arrives: an agent admitted while another test ran is refused, with
// the reason, if that test used the room it was admitted to; the next one
// gets the slot.
func TestAdmitAtTurn(t *testing.T) {
	var full atomic.Bool
	n := NewNegotiator(NegotiatorConfig{Capacity: 1, LongPoll: 50 * time.Millisecond, Rate: 100,
		Admit: func(Test) error {
			if full.Load() {
				return errors.New("no room left today")
			}
			return nil
		}})
	ctx := context.Background()
	first, err := n.Negotiate(ctx, "", "", "192.0.2.1")
	if err != nil || !first.Unchoked {
		t.Fatalf("first: %+v %v", first, err)
	}
	waiting, err := n.Negotiate(ctx, "", "", "192.0.2.2")
	if err != nil || waiting.Unchoked {
		t.Fatalf("second: %+v %v", waiting, err)
	}
	full.Store(true) // the first test used the room
	n.Release(first.Session)
	_, err = n.Negotiate(ctx, "", waiting.Session.Token, "192.0.2.2")
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
