package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunErrors: bad flags and an unreachable server get one clear line and
// a non-zero exit.
func TestRunErrors(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "neubot")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"run"}, 2, "usage: neubot run TEST"},
		{[]string{"run", "warp"}, 2, `unknown test "warp"`},
		{[]string{"run", "speedtest"}, 2, "--server URL is required"},
		{[]string{"run", "speedtest", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"run", "speedtest", "--server", "ftp://x"}, 1, "bad server URL"},
		{[]string{"run", "speedtest", "--server", "http://127.0.0.1:1"}, 1, "cannot reach the test server"},
		{[]string{"run", "ndt7", "--server", "ftp://x"}, 1, "the scheme must be http, https, ws or wss"},
		{[]string{"run", "ndt7", "--server", "http://127.0.0.1:1"}, 1, "cannot reach the test server"},
		{[]string{"run", "ndt7", "--server", "ws://127.0.0.1:1"}, 1, "cannot reach the ndt7 server"},
		{[]string{"run", "bittorrent"}, 2, "--server URL is required"},
		{[]string{"run", "bittorrent", "--server", "ftp://x"}, 1, "bad server URL"},
		{[]string{"run", "bittorrent", "--server", "http://127.0.0.1:1"}, 1, "cannot reach the test server"},
		{[]string{"agent", "--listen", "0.0.0.0:9774", "--state-dir", t.TempDir()}, 2, "pass --allow-remote"},
		{[]string{"agent", "--listen", "0.0.0.0:9774", "--allow-remote", "--state-dir", t.TempDir()}, 2, "--allow-remote needs --remote-password"},
		{[]string{"agent", "--listen", "0.0.0.0:9774", "--allow-remote", "--remote-password", "short", "--state-dir", t.TempDir()}, 2, "at least 12 characters"},
	} {
		out, err := exec.Command(bin, tc.args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != tc.code || !strings.Contains(string(out), tc.want) {
			t.Errorf("neubot %v: exit %d, %q; want exit %d and %q", tc.args, code, out, tc.code, tc.want)
		}
		if tc.code == 1 && strings.Count(strings.TrimSpace(string(out)), "\n") > 0 {
			t.Errorf("neubot %v: more than one line: %q", tc.args, out)
		}
	}
}
