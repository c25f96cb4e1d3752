package version

import "testing"

func TestCompare(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"0.1.0", "0.1.0", 0},
		{"0.1.0", "0.2.0", -1},
		{"0.10.0", "0.9.0", 1},
		{"1.0", "1.0.0", 0},
		{"v1.2.3", "1.2.3", 0},
		{"0.1.0-dev", "0.1.0", -1},
		{"0.1.0~20261203.abc1234", "0.1.0", -1},
		{"0.1.0~20261203.abc1234", "0.1.0~20261204.0123456", -1},
		{"0.1.1~20261203.abc1234", "0.1.0", 1},
		{"0.1.0+build7", "0.1.0", 0},
		{"0.2.0", "0.1.0-dev", 1},
		{"1.0.0-rc1", "1.0.0-rc2", -1},
	} {
		if got := Compare(tc.a, tc.b); got != tc.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := Compare(tc.b, tc.a); got != -tc.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}
