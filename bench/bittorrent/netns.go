package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/neubot/neubot/agent/bittorrent"
	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/plugin/plugintest"
	"github.com/neubot/neubot/agent/replay"
	"github.com/neubot/neubot/internal/httpx"
	spec "github.com/neubot/neubot/proto/bittorrent"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver"
	"github.com/neubot/neubot/testserver/service"
)

// The benchmark and its test run the real test server, the real client
// and the cross traffic as processes in network namespaces the bench makes,
// shaped by htb (topology.go): this program re-executes itself there in
// the role named by roleEnv, with the topology in topoEnv.
const (
	roleEnv   = "NEUBOT_BTBENCH_ROLE"
	configEnv = "NEUBOT_BTBENCH_CONFIG"
	policyEnv = "NEUBOT_BTBENCH_POLICY"
	topoEnv   = "NEUBOT_BTBENCH_TOPOLOGY"
	selfEnv   = "NEUBOT_BTBENCH_NETNS" // the namespace a helper runs in
	httpPort  = 19775                  // not a default port
)

// Shaping: the policy's htb (a fast class and a slow class, Share of the
// link; the policy decides which packets go to the slow class, policy.go)
// and, in the two-stage topology, the shared bottleneck at LinkMbps.
type shaping struct {
	LinkMbps float64
	Share    float64
	Policy   string
	// QueueMs bounds each class's queue (a pfifo) to this many
	// milliseconds of its rate (0: the device's txqueuelen).
	QueueMs float64
}

// netns is the namespaces made for one set of the benchmark, removed by
// close.
type netns struct {
	topology
	policy string // of the policy helper started next
}

// nsPrefix begins the name of every namespace the bench makes; the name
// goes on with the set's tag and the process id (newNetns), so that two
// runs at once, of the bench or of its test, never share a namespace. The
// veth devices (topology.go) are made inside those namespaces, where no
// other run sees them.
const nsPrefix = "s6b-bt-"

func (n *netns) close() {
	for _, name := range n.names() {
		exec.Command("ip", "netns", "del", name).Run()
	}
}

// inNetns runs a command in namespace ns; from a helper already there, it
// runs it directly.
func inNetns(ns string, name string, args ...string) *exec.Cmd {
	if ns == os.Getenv(selfEnv) {
		return exec.Command(name, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// tcIn runs tc in namespace ns.
func tcIn(ns string, args ...string) error {
	out, err := inNetns(ns, "tc", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("tc %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// htbSteps are the tc commands that give dev an htb with classes of the
// given rates (1:10 the default, 1:20, ...) under 1:1 at the first's rate,
// each with a pfifo of queueMs at its rate.
func htbSteps(dev string, queueMs float64, mbps ...float64) [][]string {
	link := fmt.Sprintf("%gmbit", mbps[0])
	steps := [][]string{
		{"qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10", "r2q", "100"},
		{"class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", link, "ceil", link},
	}
	for i, m := range mbps {
		class, rate := fmt.Sprintf("1:%d", 10*(i+1)), fmt.Sprintf("%gmbit", m)
		steps = append(steps, []string{"class", "add", "dev", dev, "parent", "1:1", "classid", class, "htb", "rate", rate, "ceil", rate})
		if queueMs > 0 {
			limit := max(10, int(m*1e6/8*queueMs/1000/1500))
			steps = append(steps, []string{"qdisc", "add", "dev", dev, "parent", class, "pfifo", "limit", fmt.Sprint(limit)})
		}
	}
	return steps
}

// shape gives the policy devices the htb of s and the static filters of
// its policy (and, first, the bottleneck its htb); the dynamic filters (a
// flow classified on its first bytes, or after a byte count) are added by
// the policy helper.
func (n *netns) shape(s shaping) error {
	type step struct {
		ns   string
		args []string
	}
	var steps []step
	fast := s.LinkMbps
	if n.Mode == modeTwoStage {
		// The policy box does not limit what it does not throttle: the
		// access link behind it does.
		fast = 10 * s.LinkMbps
		for _, dev := range n.BottleneckDevs {
			tcIn(n.Access, "qdisc", "del", "dev", dev, "root")
			for _, a := range htbSteps(dev, s.QueueMs, s.LinkMbps) {
				steps = append(steps, step{n.Access, a})
			}
		}
	}
	for _, dev := range n.PolicyDevs {
		tcIn(n.Policy, "qdisc", "del", "dev", dev, "root")
		for _, a := range htbSteps(dev, s.QueueMs, fast, s.LinkMbps*s.Share) {
			steps = append(steps, step{n.Policy, a})
		}
	}
	for _, a := range staticFilters(s.Policy, n.topology) {
		steps = append(steps, step{n.Policy, a})
	}
	for _, st := range steps {
		if err := tcIn(st.ns, st.args...); err != nil {
			return err
		}
	}
	return nil
}

// self runs this program again inside namespace ns in role, with cfg.
func (n *netns) self(ns, role string, cfg bittorrent.Config) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(cfg)
	t, _ := json.Marshal(n.topology)
	cmd := exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+role, configEnv+"="+string(b), policyEnv+"="+n.policy, topoEnv+"="+string(t), selfEnv+"="+ns,
		fmt.Sprintf("%s=%d", triggerEnv, triggerBytes))
	return cmd, nil
}

// helper is a helper process (the test server, cross traffic) in the namespace.
type helper struct{ cmd *exec.Cmd }

func (n *netns) startServer() (*helper, error) { return n.start(n.Server, "server") }

// start runs a helper role in namespace ns and waits for its "ready".
func (n *netns) start(ns, role string) (*helper, error) {
	cmd, err := n.self(ns, role, bittorrent.Config{})
	if err != nil {
		return nil, err
	}
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("server said %q", line)
		}
		ready <- err
		io.Copy(io.Discard, out)
	}()
	select {
	case err = <-ready:
	case <-time.After(30 * time.Second):
		err = errors.New("the server did not start within 30 s")
	}
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	return &helper{cmd: cmd}, nil
}

func (s *helper) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

// result is one test as the client in the namespace saw it.
type result struct {
	Record  json.RawMessage     `json:"record"`
	Seconds float64             `json:"seconds"` // wall time of Run, negotiation to merged record
	Error   string              `json:"error,omitempty"`
	keys    *schemas.BitTorrent // a BitTorrent test's
	replay  *schemas.Replay     // or a replay test's
	// outcome and attribution of either (a replay's difference is due to
	// its first bytes: payload).
	outcome, attribution string
}

// runPolicy shapes lo for policy, starts its helper, runs one test and
// stops the helper.
func (n *netns) runPolicy(policy string, sh shaping, cfg bittorrent.Config) (result, error) {
	sh.Policy = policy
	if err := n.shape(sh); err != nil {
		return result{}, err
	}
	n.policy = policy
	h, err := n.start(n.Policy, "policy")
	if err != nil {
		return result{}, err
	}
	defer h.stop()
	return n.runClient(cfg)
}

// runClient runs one test in the namespace and returns its result.
func (n *netns) runClient(cfg bittorrent.Config) (result, error) {
	cmd, err := n.self(n.Client, "client", cfg)
	if err != nil {
		return result{}, err
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return result{}, fmt.Errorf("client: %v", err)
	}
	var r result
	if err := json.Unmarshal(out, &r); err != nil {
		return result{}, fmt.Errorf("client output: %v: %.200s", err, out)
	}
	if r.Error != "" {
		return r, errors.New(r.Error)
	}
	rec, err := schemas.DecodeRecord(r.Record, time.Now())
	if err != nil {
		return r, fmt.Errorf("client record: %w", err)
	}
	switch k := rec.TestKeys.(type) {
	case *schemas.BitTorrent:
		r.keys, r.outcome, r.attribution = k, k.Outcome, k.Attribution
	case *schemas.Replay:
		r.replay, r.outcome = k, k.Outcome
		if k.Outcome == schemas.OutcomeDifferentiation || k.Outcome == schemas.OutcomeBlocked {
			r.attribution = schemas.AttributionPayload
		}
	default:
		return r, errors.New("client: not a bittorrent or replay record")
	}
	return r, nil
}

// role runs the helper role named in the environment, if any, and reports
// whether it did (the caller then exits).
func role() bool {
	switch os.Getenv(roleEnv) {
	case "server":
		if err := serve(loadTopology()); err != nil {
			fmt.Fprintln(os.Stderr, "bittorrent bench server:", err)
			os.Exit(1)
		}
		return true
	case "cross", "cross-client":
		if err := cross(loadTopology(), os.Getenv(roleEnv) == "cross-client"); err != nil {
			fmt.Fprintln(os.Stderr, "bittorrent bench cross traffic:", err)
			os.Exit(1)
		}
		return true
	case "policy":
		if err := runPolicy(os.Getenv(policyEnv), loadTopology()); err != nil {
			fmt.Fprintln(os.Stderr, "bittorrent bench policy:", err)
			os.Exit(1)
		}
		return true
	case "client":
		var cfg bittorrent.Config
		json.Unmarshal([]byte(os.Getenv(configEnv)), &cfg)
		t0 := time.Now()
		var m plugin.Measurer = bittorrent.NewMeasurer(cfg)
		if p := os.Getenv(policyEnv); p == policySNI || p == policySNINone {
			m = replay.NewMeasurer(replay.Config{})
		}
		rec, err := m.Run(context.Background(), plugintest.Env(loadTopology().httpURL()))
		r := result{Seconds: time.Since(t0).Seconds()}
		if err != nil {
			r.Error = err.Error()
		} else {
			r.Record, _ = json.Marshal(rec)
		}
		json.NewEncoder(os.Stdout).Encode(r)
		return true
	}
	return false
}

// serve runs the real test server until SIGTERM.
func serve(t topology) error {
	dir, err := os.MkdirTemp("", "neubot-btbench-spool-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	svc, err := service.New(service.Config{
		ID: "bench", Version: "bench", SpoolDir: dir,
		Negotiator:       testserver.NegotiatorConfig{Rate: 100, Burst: 100},
		BitTorrentListen: hostPort(t.Hosts[0], spec.BitTorrentPort), NeutralListen: hostPort(t.Hosts[0], spec.NeutralPort),
		WebListen: hostPort(t.Hosts[0], spec.WebPort), BitTorrentHosts: t.Hosts[1:],
		ReplayListen: t.ReplayAddr,
	})
	if err != nil {
		return err
	}
	defer svc.Close()
	srv, err := httpx.Listen(hostPort(t.Hosts[0], httpPort), svc.Handler(), nil)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	fmt.Println("ready")
	<-ctx.Done()
	return srv.Shutdown(context.Background())
}

func hostPort(host string, port int) string { return net.JoinHostPort(host, fmt.Sprint(port)) }

// cross is on-off cross traffic until SIGTERM: TCP that sends as fast as
// the link allows for 0.5 to 3 s, then pauses for 0.5 to 3 s, at random,
// from another host (two-stage) or port (lo) than the test's. In mode lo
// it is one flow on lo, in the class of every unthrottled flow of the
// test; in the two-stage topology the role "cross" (on the server's side)
// sends downstream to the role "cross-client" (on the client's side),
// which sends upstream on the same connection, each on its own schedule,
// through the shared bottleneck (and the policy box's fast class).
func cross(t topology, client bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if client {
		c, err := net.Dial("tcp", t.CrossAddr)
		if err != nil {
			return err
		}
		defer c.Close()
		go io.Copy(io.Discard, c)
		fmt.Println("ready")
		onOff(ctx, c)
		return nil
	}
	l, err := net.Listen("tcp", t.CrossAddr)
	if err != nil {
		return err
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if t.Mode == modeTwoStage {
				go onOff(ctx, c)
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	if t.Mode == modeTwoStage {
		fmt.Println("ready")
		<-ctx.Done()
		return nil
	}
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Println("ready")
	onOff(ctx, c)
	return nil
}

// onOff writes to c as fast as it can for 0.5 to 3 s, then pauses for 0.5
// to 3 s, until ctx ends.
func onOff(ctx context.Context, c net.Conn) {
	buf := make([]byte, 64<<10)
	span := func() time.Duration { return time.Duration(500+rand.IntN(2500)) * time.Millisecond }
	for ctx.Err() == nil {
		end := time.Now().Add(span())
		for time.Now().Before(end) && ctx.Err() == nil {
			c.SetWriteDeadline(end)
			if _, err := c.Write(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(span()):
		}
	}
}
