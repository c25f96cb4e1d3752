package testserver

import (
	"strings"
	"testing"

	"github.com/neubot/neubot/internal/clock"
	"github.com/neubot/neubot/internal/looptest"
)

func TestFlowKeys(t *testing.T) {
	n := NewNegotiator(NegotiatorConfig{Capacity: 2, Rate: 100, Clock: clock.NewManual(epoch)})
	defer n.Close()
	local := unchoked(t, n, "127.0.0.1").Session
	remote := unchoked(t, n, "192.0.2.1").Session
	var fk FlowKeys[[2]byte]
	fk.Issue(map[[2]byte]FlowRef{{1}: {Session: local, Kind: "k", Dir: "download", Index: 3}, {2}: {Session: remote, Kind: "k"}})
	// A real loopback connection: its remote address is 127.0.0.1.
	c := looptest.Dial(t, looptest.Listen(t).Addr().String())

	ref, err := fk.Admit([2]byte{1}, c)
	if err != nil || ref.Session != local || ref.Kind != "k" || ref.Dir != "download" || ref.Index != 3 {
		t.Fatalf("an issued key: %+v %v", ref, err)
	}
	for _, tc := range []struct {
		name string
		key  [2]byte
		want string
	}{
		{"used again", [2]byte{1}, "unknown or used"},
		{"never issued", [2]byte{9}, "unknown or used"},
		{"from another address", [2]byte{2}, "flow from 127.0.0.1, session of 192.0.2.1"},
	} {
		if _, err := fk.Admit(tc.key, c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}

	// A session over: its key no longer admits, and the next Issue
	// forgets it.
	fk.Issue(map[[2]byte]FlowRef{{3}: {Session: local}})
	n.Release(local)
	if _, err := fk.Admit([2]byte{3}, c); err == nil || !strings.Contains(err.Error(), "not active") {
		t.Fatalf("the key of a session over: %v", err)
	}
	fk.Issue(nil)
	fk.mu.Lock()
	_, kept := fk.refs[[2]byte{1}]
	left := len(fk.refs)
	fk.mu.Unlock()
	if kept || left != 1 {
		t.Fatalf("after the session ended: %d keys left (its own kept: %v), want the other session's only", left, kept)
	}
}
