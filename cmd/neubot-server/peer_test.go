package main

// TestPeersAcrossHosts runs peer-to-peer mode across separate hosts: four
// real agents (the neubot binary), each in a network namespace of its own,
// joined by veth pairs to a bridge on which the collector listens. One
// agent serves peers; another one also offers to, but a firewall rule in
// its namespace drops connections to its port; two agents test. Both
// testers complete peer tests against the reachable listener, the records
// reach ClickHouse marked as peer tests, and the firewalled agent is never
// listed and is told why.
//
// Addresses are in 198.18.0.0/15, the range set aside for benchmarks (RFC
// 2544), on a bridge this test creates and removes; nothing leaves the
// machine.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neubot/neubot/collector"
	"github.com/neubot/neubot/internal/localch"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/internal/webtest"
	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/schemas"
)

// testnet is the bridge and the namespaces of the test.
type testnet struct {
	t      *testing.T
	bridge string
	nss    []string
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

const hubAddr = "198.18.0.1"

func newTestnet(t *testing.T) *testnet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test makes network namespaces: it needs root (CI runs as root)")
	}
	n := &testnet{t: t, bridge: fmt.Sprintf("nbpeer%d", os.Getpid()%100000)}
	// A bridge left by a crashed run would hold the same subnet.
	if out, err := exec.Command("ip", "-o", "link", "show", "type", "bridge").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], "nbpeer") {
				exec.Command("ip", "link", "del", strings.TrimSuffix(f[1], ":")).Run()
			}
		}
	}
	t.Cleanup(n.close)
	for _, args := range [][]string{
		{"link", "add", n.bridge, "type", "bridge"},
		{"addr", "add", hubAddr + "/24", "dev", n.bridge},
		{"link", "set", n.bridge, "up"},
	} {
		if err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// host makes namespace i (1-based) at 198.18.0.(10+i), joined to the bridge.
func (n *testnet) host(i int) (ns, addr string) {
	n.t.Helper()
	ns = fmt.Sprintf("nbpeer%d-%d", os.Getpid()%100000, i)
	addr = fmt.Sprintf("198.18.0.%d", 10+i)
	outer, inner := fmt.Sprintf("nbp%d-%do", os.Getpid()%10000, i), fmt.Sprintf("nbp%d-%di", os.Getpid()%10000, i)
	n.nss = append(n.nss, ns)
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"link", "add", outer, "type", "veth", "peer", "name", inner},
		{"link", "set", outer, "master", n.bridge},
		{"link", "set", outer, "up"},
		{"link", "set", inner, "netns", ns},
		{"-n", ns, "link", "set", inner, "name", "eth0"},
		{"-n", ns, "addr", "add", addr + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "link", "set", "lo", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			n.t.Fatal(err)
		}
	}
	return ns, addr
}

// firewall drops, in ns, every TCP connection arriving from the network
// to port: a policy-routing blackhole looked up before the local table,
// as a home router's firewall does (silently).
func (n *testnet) firewall(ns string, port int) {
	n.t.Helper()
	for _, args := range [][]string{
		{"-n", ns, "rule", "add", "pref", "100", "iif", "eth0", "ipproto", "tcp", "dport", fmt.Sprint(port), "blackhole"},
		{"-n", ns, "rule", "add", "pref", "200", "table", "local"},
		{"-n", ns, "rule", "del", "pref", "0"},
	} {
		if err := ipCmd(args...); err != nil {
			n.t.Fatal(err)
		}
	}
}

func (n *testnet) close() {
	for _, ns := range n.nss {
		exec.Command("ip", "netns", "del", ns).Run()
	}
	exec.Command("ip", "link", "del", n.bridge).Run()
}

// agentProc is a neubot agent running in a namespace.
type agentProc struct {
	name, dir string
	cmd       *exec.Cmd
	log       *bytes.Buffer
	mu        *sync.Mutex
	done      chan error
}

func startAgent(t *testing.T, ns, name string, args ...string) *agentProc {
	t.Helper()
	p := &agentProc{name: name, dir: filepath.Join(t.TempDir(), name), log: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan error, 1)}
	full := append([]string{"netns", "exec", ns, buildAgent(t), "agent", "--state-dir", p.dir, "--consent", "accept",
		"--public-api", "", "--log-format", "json", "--log-level", "debug"}, args...)
	p.cmd = exec.Command("ip", full...)
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() { err := p.cmd.Wait(); pw.Close(); p.done <- err }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("agent %s log (tail):\n%s", name, tail(p.logs(), 4000))
		}
	})
	return p
}

func (p *agentProc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// peerID waits for the agent's state.json and returns its peer ID.
func (p *agentProc) peerID(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var st struct {
			PeerID string `json:"peer_id"`
		}
		if b, err := os.ReadFile(filepath.Join(p.dir, "state.json")); err == nil && json.Unmarshal(b, &st) == nil && st.PeerID != "" {
			return st.PeerID
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("agent %s wrote no peer ID", p.name)
	return ""
}

// rendezvousPeers asks the collector as an agent allowing peers and
// returns the IDs listed for test.
func rendezvousPeers(t *testing.T, url, test string) []string {
	t.Helper()
	return rendezvousIDs(t, url, rendezvous.RendezvousRequest{AgentID: "00000000-0000-4000-8000-000000000001", Tests: []string{test}, Peers: true})
}

// rendezvousIDs asks the collector at url for servers and returns the ids
// it lists for req's first test.
func rendezvousIDs(t *testing.T, url string, req rendezvous.RendezvousRequest) []string {
	t.Helper()
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequest(http.MethodPost, url+rendezvous.RendezvousPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	code, answer := webtest.Do(t, hreq)
	var rr rendezvous.RendezvousResponse
	if err := json.Unmarshal(answer, &rr); err != nil {
		t.Fatalf("rendezvous: %d: %v", code, err)
	}
	var ids []string
	for _, s := range rr.Servers[req.Tests[0]] {
		ids = append(ids, s.ID)
	}
	return ids
}

func TestPeersAcrossHosts(t *testing.T) {
	t.Parallel() // waits more than it computes: see TestMain
	start := time.Now()
	tn := newTestnet(t)
	opts, conn := localchtest.NewDatabase(t)
	logBuf := &syncBuffer{}
	port, err := localch.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	col, err := startCollector(fmt.Sprintf("%s:%d", hubAddr, port), collector.Config{
		SpoolDir: t.TempDir(), ClickHouse: opts, PeerNetworks: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")},
		Logger: slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer col.stop(10 * time.Second)
	collectorURL := fmt.Sprintf("http://%s:%d", hubAddr, port)
	defer func() {
		if t.Failed() {
			t.Logf("collector log (tail):\n%s", tail(logBuf.String(), 6000))
		}
	}()

	const peerPort = 9777
	listenNS, listenAddr := tn.host(1)
	blockedNS, blockedAddr := tn.host(2)
	tester1NS, _ := tn.host(3)
	tester2NS, _ := tn.host(4)
	tn.firewall(blockedNS, peerPort)

	listener := startAgent(t, listenNS, "listener", "--collector", collectorURL, "--serve-peers", "on",
		"--peer-listen", fmt.Sprintf("%s:%d", listenAddr, peerPort), "--tests", "speedtest")
	blocked := startAgent(t, blockedNS, "firewalled", "--collector", collectorURL, "--serve-peers", "on",
		"--peer-listen", fmt.Sprintf("%s:%d", blockedAddr, peerPort), "--tests", "speedtest")
	listenerID, blockedID := listener.peerID(t), blocked.peerID(t)

	// The listener is listed within a heartbeat; the firewalled agent is
	// told why it is not.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(blocked.logs(), "peer: not listed by the collector") || len(rendezvousPeers(t, collectorURL, schemas.SpeedtestName)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: listed %v; firewalled agent's log:\n%s", rendezvousPeers(t, collectorURL, schemas.SpeedtestName), tail(blocked.logs(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	listedAt := time.Since(start)
	if ids := rendezvousPeers(t, collectorURL, schemas.SpeedtestName); len(ids) != 1 || ids[0] != listenerID {
		t.Fatalf("rendezvous lists %v; want only the listener %s", ids, listenerID)
	}
	var reason string
	for _, line := range strings.Split(blocked.logs(), "\n") {
		if strings.Contains(line, "peer: not listed by the collector") {
			var l struct {
				Reason string `json:"reason"`
			}
			json.Unmarshal([]byte(line), &l)
			reason = l.Reason
		}
	}
	if !strings.Contains(reason, fmt.Sprintf("%s:%d", blockedAddr, peerPort)) || !strings.Contains(reason, "no answer") {
		t.Fatalf("the firewalled agent was told %q", reason)
	}

	// Both testers at once: each runs the speedtest, the first also ndt7,
	// against whatever the rendezvous gives (only the listener).
	type run struct {
		tester, test string
		ns           string
	}
	runs := []run{{"tester1", "speedtest", tester1NS}, {"tester2", "speedtest", tester2NS}}
	testers := map[string]string{} // state dirs
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for _, r := range runs {
		dir := filepath.Join(t.TempDir(), r.tester)
		testers[r.tester] = dir
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, test := range []string{r.test, "ndt7"} {
				if test == "ndt7" && r.tester != "tester1" {
					continue
				}
				out, err := exec.Command("ip", "netns", "exec", r.ns, buildAgent(t), "agent", "--once", "--state-dir", dir,
					"--consent", "accept", "--collector", collectorURL, "--public-api", "", "--test-with-peers", "on",
					"--tests", test, "--log-format", "text").CombinedOutput()
				if err != nil {
					errs <- fmt.Errorf("%s %s: %v\n%s", r.tester, test, err, tail(string(out), 3000))
					return
				}
				if !strings.Contains(string(out), fmt.Sprintf("http://%s:%d", listenAddr, peerPort)) || !strings.Contains(string(out), "peer=true") {
					errs <- fmt.Errorf("%s %s did not test against the listener:\n%s", r.tester, test, tail(string(out), 3000))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	testsDone := time.Since(start)

	// Each test reaches ClickHouse once (peers forward no copy), from
	// its tester, with the tester's own agent_id, marked as a peer test
	// without the peer's ID, and with the server's merged view.
	agentIDs := map[string]string{}
	for name, dir := range testers {
		var st struct {
			AgentID string `json:"agent_id"`
		}
		b, _ := os.ReadFile(filepath.Join(dir, "state.json"))
		json.Unmarshal(b, &st)
		agentIDs[name] = st.AgentID
	}
	type row struct {
		table, agent string
	}
	want := []row{{"speedtest", agentIDs["tester1"]}, {"speedtest", agentIDs["tester2"]}, {"ndt7", agentIDs["tester1"]}}
	ctx := context.Background()
	deadline = time.Now().Add(30 * time.Second)
	for _, w := range want {
		for {
			var n, peer, auth uint64
			var server string
			err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT count(), sum(server_peer), sum(authority), any(server_id)
				FROM %s WHERE agent_id = toUUID(?)`, w.table), w.agent).Scan(&n, &peer, &auth, &server)
			if err != nil {
				t.Fatal(err)
			}
			// A peer's copy carries no platform signature: it is stored
			// once, unverified (authority 0), and left out of the
			// published data (spec/trust.md).
			if n == 1 && peer == 1 && auth == 0 && server == schemas.PeerServerID {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s of %s: %d copies, %d marked peer, %d authoritative, server %q; want one, peer, unverified, %q",
					w.table, w.agent, n, peer, auth, server, schemas.PeerServerID)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	var stray uint64
	if err := conn.QueryRow(ctx, `SELECT count() FROM speedtest WHERE server_id IN (?, ?)`, listenerID, blockedID).Scan(&stray); err != nil {
		t.Fatal(err)
	}
	if stray != 0 {
		t.Fatalf("%d rows publish a peer's own ID", stray)
	}
	// The firewalled agent was never listed: the collector never
	// registered it, and the rendezvous lists only the listener.
	for _, line := range strings.Split(logBuf.String(), "\n") {
		if strings.Contains(line, "test server registered") && strings.Contains(line, blockedID) {
			t.Fatalf("the collector registered the firewalled agent: %s", line)
		}
	}
	if ids := rendezvousPeers(t, collectorURL, schemas.NDT7Name); len(ids) != 1 || ids[0] != listenerID {
		t.Fatalf("at the end, rendezvous lists %v for ndt7; want only %s", ids, listenerID)
	}
	t.Logf("4 agents in 4 namespaces: listener listed and firewalled agent refused after %s (reason: %q); 2 testers' 3 peer tests done after %s, one copy each in ClickHouse, marked peer; whole test %s",
		listedAt.Round(time.Millisecond), reason, testsDone.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
