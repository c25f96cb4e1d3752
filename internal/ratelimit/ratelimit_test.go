package ratelimit

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	l := New(2, 3) // 2 per second, burst 3
	now := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		if !l.Allow("a", now) {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	if l.Allow("a", now) {
		t.Fatal("4th request in the same instant allowed")
	}
	if !l.Allow("b", now) {
		t.Fatal("another address is limited too")
	}
	if d := l.RetryAfter("a"); d != time.Second {
		t.Fatalf("retry after %s, want 1 s (rounded up)", d)
	}
	if !l.Allow("a", now.Add(500*time.Millisecond)) {
		t.Fatal("no token after half a second at 2/s")
	}
	if l.Allow("a", now.Add(500*time.Millisecond)) {
		t.Fatal("two tokens after half a second at 2/s")
	}
}
