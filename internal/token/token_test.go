package token

import (
	"encoding/hex"
	"testing"
)

func TestHex(t *testing.T) {
	a, b := Hex(16), Hex(16)
	if len(a) != 32 || a == b {
		t.Fatalf("Hex(16) = %q, %q: want two different 32-character strings", a, b)
	}
	if _, err := hex.DecodeString(a); err != nil {
		t.Fatalf("Hex(16) = %q: not hex: %v", a, err)
	}
}

func TestEqual(t *testing.T) {
	for _, c := range []struct {
		got, want string
		equal     bool
	}{
		{"s3cret", "s3cret", true},
		{"s3cret", "s3cre", false},
		{"", "s3cret", false},
		{"S3cret", "s3cret", false},
		{"", "", true},
	} {
		if Equal(c.got, c.want) != c.equal {
			t.Errorf("Equal(%q, %q) = %v", c.got, c.want, !c.equal)
		}
	}
}
