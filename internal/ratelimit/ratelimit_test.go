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

// TestKey: IPv6 addresses of one /64 share a bucket; IPv4 addresses do not.
func TestKey(t *testing.T) {
	if Key("2001:db8:1:2::5") != Key("2001:db8:1:2:ffff::6") || Key("2001:db8:1:2::5") == Key("2001:db8:1:3::5") {
		t.Errorf("IPv6 keys: %s %s %s", Key("2001:db8:1:2::5"), Key("2001:db8:1:2:ffff::6"), Key("2001:db8:1:3::5"))
	}
	if Key("192.0.2.1") != "192.0.2.1" || Key("192.0.2.1") == Key("192.0.2.2") || Key("not an address") != "not an address" {
		t.Error("IPv4 keys are the addresses")
	}
}

// TestKey24: a site is an IPv4 /24 or an IPv6 /64.
func TestKey24(t *testing.T) {
	if Key24("192.0.2.1") != Key24("192.0.2.200") || Key24("192.0.2.1") == Key24("192.0.3.1") || Key24("192.0.2.1") != "192.0.2.0/24" {
		t.Errorf("IPv4 sites: %s %s", Key24("192.0.2.1"), Key24("192.0.3.1"))
	}
	if Key24("::ffff:192.0.2.9") != "192.0.2.0/24" {
		t.Errorf("mapped IPv4: %s", Key24("::ffff:192.0.2.9"))
	}
	if Key24("2001:db8:1:2::5") != Key24("2001:db8:1:2:ffff::6") || Key24("2001:db8:1:2::5") == Key24("2001:db8:1:3::5") {
		t.Errorf("IPv6 sites: %s %s", Key24("2001:db8:1:2::5"), Key24("2001:db8:1:3::5"))
	}
}

func TestChargeAndConcurrency(t *testing.T) {
	l := New(100, 1000)
	now := time.Unix(1000, 0)
	if !l.Charge("a", 900, now) || l.Charge("a", 900, now) {
		t.Fatal("900 then 900 of a 1000 burst")
	}
	if l.AllowN("a", 1, now.Add(5*time.Second)) { // -800 + 500 = -300
		t.Fatal("an overdrawn bucket allowed before it refilled")
	}
	if !l.AllowN("a", 1, now.Add(9*time.Second)) {
		t.Fatal("a refilled bucket refused")
	}
	c := NewConcurrency(2)
	first, second, third := c.Acquire("k"), c.Acquire("k"), c.Acquire("k")
	if !first || !second || third || !c.Acquire("j") {
		t.Fatal("2 places per key")
	}
	c.Release("k")
	if !c.Acquire("k") || c.InUse("k") != 2 {
		t.Fatal("a released place is free again")
	}
}
