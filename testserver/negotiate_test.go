package testserver

import (
	"context"
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
