package main

import (
	"os"
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
		{[]string{"run", "speedtest"}, 1, "rendezvous: Post \"http://127.0.0.1:1/api/v1/rendezvous\""},
		{[]string{"run", "speedtest", "--collector", ""}, 2, "give a test server with --server URL, or a collector with --collector URL"},
		{[]string{"run", "speedtest", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"run", "speedtest", "--server", "ftp://x"}, 1, "bad server URL"},
		{[]string{"run", "speedtest", "--server", "http://127.0.0.1:1"}, 1, "cannot reach the test server"},
		{[]string{"run", "ndt7", "--server", "ftp://x"}, 1, "the scheme must be http, https, ws or wss"},
		{[]string{"run", "ndt7", "--server", "http://127.0.0.1:1"}, 1, "cannot reach the test server"},
		{[]string{"run", "ndt7", "--server", "ws://127.0.0.1:1"}, 1, "cannot reach the ndt7 server"},
		{[]string{"run", "bittorrent"}, 1, "connection refused (or give a test server with --server URL)"},
		{[]string{"run", "bittorrent", "--server", "ftp://x"}, 1, "bad server URL"},
		{[]string{"run", "bittorrent", "--server", "http://127.0.0.1:1"}, 1, "cannot reach the test server"},
		{[]string{"agent", "--listen", "0.0.0.0:9774", "--state-dir", t.TempDir()}, 2, "pass --allow-remote"},
		{[]string{"agent", "--listen", "0.0.0.0:9774", "--allow-remote", "--state-dir", t.TempDir()}, 2, "--allow-remote needs --remote-password"},
		{[]string{"agent", "--listen", "0.0.0.0:9774", "--allow-remote", "--remote-password", "short", "--state-dir", t.TempDir()}, 2, "at least 12 characters"},
	} {
		cmd := exec.Command(bin, tc.args...)
		// Without --server, run asks this collector's rendezvous: a
		// closed port, never the default one.
		cmd.Env = append(os.Environ(), "NEUBOT_COLLECTOR=http://127.0.0.1:1")
		out, err := cmd.CombinedOutput()
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

// TestHelpMatchesREADMEAndMan: the README shows `neubot --help` as it is,
// and the manual page holds the help text of every command, line by line.
func TestHelpMatchesREADMEAndMan(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "neubot")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	help := func(args ...string) string {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Fatalf("neubot %v: %v, want exit 2 (usage)", args, err)
		}
		return string(out)
	}
	top := help("--help")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```\n$ neubot --help\n"+top+"```\n") {
		t.Errorf("README.md does not show `neubot --help` as it is now:\n%s", top)
	}
	cmd := exec.Command(bin, "man")
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1764720000")
	man, err := cmd.Output()
	if err != nil {
		t.Fatalf("neubot man: %v", err)
	}
	if !strings.HasPrefix(string(man), `.TH NEUBOT 1 "2025-12-03" "neubot `) {
		t.Errorf("neubot man starts with %q", strings.SplitN(string(man), "\n", 2)[0])
	}
	roff := strings.NewReplacer(`\`, `\e`, "-", `\-`)
	for _, text := range []string{top, help("agent", "-h"), help("run", "ndt7", "-h")} {
		for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
			if !strings.Contains(string(man), roff.Replace(line)+"\n") {
				t.Errorf("the manual page lacks the help line %q", line)
			}
		}
	}
}
