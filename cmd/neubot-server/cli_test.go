package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/localch"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/internal/webtest"
	"github.com/neubot/neubot/proto/ingest"
)

// TestBadFlags: a bad command line gets one clear message and exit code 2.
func TestBadFlags(t *testing.T) {
	bin := buildServer(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: neubot-server COMMAND"},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"collector", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"collector", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"collector", "--log-level", "loud", "--ipdb", "x"}, 1, "bad log level"},
		{[]string{"up", "--ipdb", filepath.Join(t.TempDir(), "none")}, 1, "run scripts/setup"},
		{[]string{"version"}, 0, "neubot-server "},
		{[]string{"migrate", "--clickhouse", "127.0.0.1:9000,db2"}, 2, `"db2" is not host:port`},
		{[]string{"publish", "--clickhouse", "127.0.0.1:0"}, 2, `"127.0.0.1:0" is not host:port with a port from 1 to 65535`},
		{[]string{"analytics", "--clickhouse-cluster", "2shards"}, 2, `"2shards" is not a cluster name`},
		{[]string{"analytics", "table"}, 1, "--from is required"},
		{[]string{"analytics", "table", "--from", "2026-11-20", "--min-agents", "0"}, 1, "--min-agents must be at least 1"},
		{[]string{"analytics", "run", "--from", "2026-11-20"}, 1, "--draw-key-file is required"},
		{[]string{"collector", "--clickhouse-cluster", "a-b"}, 2, `"a-b" is not a cluster name`},
		{[]string{"linkem", "--rtt", "40", "--delay", "20"}, 2, "give one"},
		{[]string{"linkem", "--loss", "2"}, 1, "loss 2: want a fraction from 0 to 1"},
		{[]string{"linkem", "--name", "a name"}, 1, `name "a name"`},
		{[]string{"linkem", "--sysctl", "novalue"}, 2, `"novalue" is not key=value`},
	} {
		out, err := exec.Command(bin, tc.args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(string(out), tc.want) {
			t.Errorf("neubot-server %v: exit %d, output %q; want exit %d and %q", tc.args, code, out, tc.code, tc.want)
		}
	}
}

// TestMigrateBadAddress: an unreachable ClickHouse is one clear line.
func TestMigrateBadAddress(t *testing.T) {
	bin := buildServer(t)
	out, err := exec.Command(bin, "migrate", "--clickhouse", "127.0.0.1:1").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "connection refused") {
		t.Fatalf("got %v, %q", err, out)
	}
}

// TestUp runs `neubot-server up` as a user would: it prints its addresses,
// ingests the README's mixed file into its own ClickHouse, and stops
// cleanly on Ctrl-C.
func TestUp(t *testing.T) {
	bin := buildServer(t)
	port, err := localch.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	tsPort, _ := localch.FreePort()
	agPort, _ := localch.FreePort()
	pubPort, _ := localch.FreePort()
	cmd := exec.Command(bin, "up", "--data", t.TempDir(), "--collector", fmt.Sprintf("127.0.0.1:%d", port),
		"--testserver", fmt.Sprintf("127.0.0.1:%d", tsPort), "--agent", fmt.Sprintf("127.0.0.1:%d", agPort),
		"--publish", fmt.Sprintf("127.0.0.1:%d", pubPort), "--bittorrent", "127.0.0.1:0", "--neutral", "127.0.0.1:0")
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	var chURL, colURL, tsURL, agURL, pubURL string
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "publish" {
			pubURL = f[1]
		}
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "testserver" {
			tsURL = f[1]
		}
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "agent" {
			agURL = f[1]
		}
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "clickhouse" {
			chURL = f[1]
		}
		if len(f) >= 2 && f[0] == "collector" {
			colURL = f[1]
		}
		if strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
			break
		}
	}
	if !strings.HasPrefix(chURL, "clickhouse://127.0.0.1:") || colURL != fmt.Sprintf("http://127.0.0.1:%d", port) {
		t.Fatalf("up printed clickhouse %q collector %q; stderr:\n%s", chURL, colURL, stderr.String())
	}
	if tsURL != fmt.Sprintf("http://127.0.0.1:%d", tsPort) || agURL != fmt.Sprintf("http://127.0.0.1:%d/", agPort) {
		t.Fatalf("up printed testserver %q agent %q", tsURL, agURL)
	}
	if pubURL != fmt.Sprintf("http://127.0.0.1:%d/", pubPort) {
		t.Fatalf("up printed publish %q", pubURL)
	}
	for _, path := range []string{"", "data", "api/v1/datasets", "api/v1/isps"} {
		webtest.GetOK(t, pubURL+path)
	}
	go io.Copy(io.Discard, stdout)
	body, err := os.ReadFile("../../collector/testdata/mixed.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(colURL+ingest.Path, "application/x-ndjson", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("status %d, want 400 (mixed file)", resp.StatusCode)
	}
	conn := localchtest.Open(t, chdb.Options{Addr: strings.TrimPrefix(chURL, "clickhouse://")})
	waitRows(t, conn, "3 annotated rows", 30*time.Second, equal(3), "SELECT count() FROM speedtest FINAL WHERE client_asn != 0")
	// The whole chain of up: the agent (after consent in its API) finds
	// the test server through the rendezvous, tests, and the server's
	// merged record and the agent's copy reach ClickHouse as one row.
	html := webtest.GetOK(t, agURL)
	m := regexp.MustCompile(`name="neubot-csrf" content="([0-9a-f]+)"`).FindSubmatch(html)
	if m == nil {
		t.Fatalf("no CSRF token in the agent's page")
	}
	for _, call := range []struct{ path, body string }{
		{"api/v1/consent", `{"informed":true,"can_collect":true,"can_publish":true}`},
		{"api/v1/run", `{}`},
	} {
		req, _ := http.NewRequest(http.MethodPost, agURL+call.path, strings.NewReader(call.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Neubot-CSRF", string(m[1]))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST %s: %d", call.path, resp.StatusCode)
		}
	}
	waitRows(t, conn, "the agent's test, one row with the server's authority", 60*time.Second, equal(1, 1),
		"SELECT count(), sum(authority) FROM speedtest FINAL WHERE server_id = 'local'")
	// `publish export` of today: the agent's test, a real one, is in it.
	today := time.Now().UTC().Format(time.DateOnly)
	dsDir := t.TempDir()
	out, err := exec.Command(bin, "publish", "export", "--from", today, "--clickhouse", strings.TrimPrefix(chURL, "clickhouse://"), "--datasets", dsDir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "publish export: 1 rows, 2 files") {
		t.Fatalf("publish export: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dsDir, "speedtest", today[:4], today[5:7], today[8:], "manifest.json")); err != nil {
		t.Fatalf("publish export wrote no manifest: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "publish", "export", "--from", "2026-02-30").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--from must be a day") {
		t.Fatalf("publish export with a bad day: %v\n%s", err, out)
	}
	cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("up exited with %v after Ctrl-C; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(45 * time.Second):
		t.Fatal("up did not stop within 45 s of Ctrl-C")
	}
}
