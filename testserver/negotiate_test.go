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
