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
	"github.com/neubot/neubot/agent/replay"
	"github.com/neubot/neubot/internal/httpx"
	spec "github.com/neubot/neubot/proto/bittorrent"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver"
	"github.com/neubot/neubot/testserver/service"
)

// The benchmark and its test run the real test server and the real client
// as two processes inside a network namespace whose lo is shaped by htb:
// this program re-executes itself there in the role named by roleEnv.
const (
	roleEnv   = "NEUBOT_BTBENCH_ROLE"
	configEnv = "NEUBOT_BTBENCH_CONFIG"
	policyEnv = "NEUBOT_BTBENCH_POLICY"
	httpAddr  = "127.0.0.1:19775" // in the namespace; not a default port
)

// Shaping of lo in the namespace: htb with a link class and a slow class
// (Share of the link); the policy decides which packets go to the slow
// class (policy.go).
type shaping struct {
	LinkMbps float64
	Share    float64
	Policy   string
	// QueueMs bounds each class's queue (a pfifo) to this many
	// milliseconds of its rate (0: lo's txqueuelen, 1000 packets).
	QueueMs float64
}

// netns is a network namespace made for the benchmark, removed by close.
type netns struct {
	name   string
	policy string // of the policy helper started next
}

// nsPrefix begins the name of every namespace the bench makes.
const nsPrefix = "t18-bt-"

func newNetns(tag string) (*netns, error) {
	n := &netns{name: fmt.Sprintf("%s%s-%d", nsPrefix, tag, os.Getpid())}
	for _, args := range [][]string{
		{"netns", "add", n.name},
		{"-n", n.name, "link", "set", "lo", "mtu", "1500"},
		{"-n", n.name, "link", "set", "lo", "up"},
		// The DPI box's tap: packets a u32 filter matched are mirrored to
		// dpiTap and read by the policy helper on dpiRead.
		{"-n", n.name, "link", "add", dpiTap, "type", "veth", "peer", "name", dpiRead},
		{"-n", n.name, "link", "set", dpiTap, "up"},
		{"-n", n.name, "link", "set", dpiRead, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			n.close()
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return n, nil
}

func (n *netns) close() { exec.Command("ip", "netns", "del", n.name).Run() }

func (n *netns) tc(args ...string) error {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.name, "tc"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("tc %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// shape replaces lo's qdisc with the htb of s and the static filters of
// its policy; the dynamic ones (a flow classified on its first bytes, or
// after a byte count) are added by the policy helper.
func (n *netns) shape(s shaping) error {
	n.tc("qdisc", "del", "dev", "lo", "root")
	link := fmt.Sprintf("%gmbit", s.LinkMbps)
	slow := fmt.Sprintf("%gmbit", s.LinkMbps*s.Share)
	steps := [][]string{
		{"qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "10", "r2q", "100"},
		{"class", "add", "dev", "lo", "parent", "1:", "classid", "1:1", "htb", "rate", link, "ceil", link},
		{"class", "add", "dev", "lo", "parent", "1:1", "classid", "1:10", "htb", "rate", link, "ceil", link},
		{"class", "add", "dev", "lo", "parent", "1:1", "classid", "1:20", "htb", "rate", slow, "ceil", slow},
	}
	if s.QueueMs > 0 {
		for _, c := range []struct {
			class string
			mbps  float64
		}{{"1:10", s.LinkMbps}, {"1:20", s.LinkMbps * s.Share}} {
			limit := max(10, int(c.mbps*1e6/8*s.QueueMs/1000/1500))
			steps = append(steps, []string{"qdisc", "add", "dev", "lo", "parent", c.class, "pfifo", "limit", fmt.Sprint(limit)})
		}
	}
	steps = append(steps, staticFilters(s.Policy)...)
	for _, args := range steps {
		if err := n.tc(args...); err != nil {
			return err
		}
	}
	return nil
}

// self runs this program again inside the namespace in role, with cfg.
func (n *netns) self(role string, cfg bittorrent.Config) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(cfg)
	cmd := exec.Command("ip", "netns", "exec", n.name, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+role, configEnv+"="+string(b), policyEnv+"="+n.policy)
	return cmd, nil
}

// helper is a helper process (the test server, cross traffic) in the namespace.
type helper struct{ cmd *exec.Cmd }

func (n *netns) startServer() (*helper, error) { return n.start("server") }

// start runs a helper role in the namespace and waits for its "ready".
func (n *netns) start(role string) (*helper, error) {
	cmd, err := n.self(role, bittorrent.Config{})
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
	h, err := n.start("policy")
	if err != nil {
		return result{}, err
	}
	defer h.stop()
	return n.runClient(cfg)
}

// runClient runs one test in the namespace and returns its result.
func (n *netns) runClient(cfg bittorrent.Config) (result, error) {
	cmd, err := n.self("client", cfg)
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
		if err := serve(); err != nil {
			fmt.Fprintln(os.Stderr, "bittorrent bench server:", err)
			os.Exit(1)
		}
		return true
	case "cross":
		if err := cross(); err != nil {
			fmt.Fprintln(os.Stderr, "bittorrent bench cross traffic:", err)
			os.Exit(1)
		}
		return true
	case "policy":
		if err := runPolicy(os.Getenv(policyEnv)); err != nil {
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
		rec, err := m.Run(context.Background(), plugin.Env{
			ServerURL: "http://" + httpAddr, AgentID: "00000000-0000-4000-8000-000000000001",
			Consent: schemas.Consent{Informed: true, CanCollect: true},
		})
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
func serve() error {
	dir, err := os.MkdirTemp("", "neubot-btbench-spool-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	svc, err := service.New(service.Config{
		ID: "bench", Version: "bench", SpoolDir: dir,
		Negotiator:       testserver.NegotiatorConfig{Rate: 100, Burst: 100},
		BitTorrentListen: fmt.Sprintf("127.0.0.1:%d", spec.BitTorrentPort), NeutralListen: fmt.Sprintf("127.0.0.1:%d", spec.NeutralPort),
		WebListen: fmt.Sprintf("127.0.0.1:%d", spec.WebPort), BitTorrentHosts: benchHosts[1:],
		ReplayListen: replayAddr,
	})
	if err != nil {
		return err
	}
	defer svc.Close()
	srv, err := httpx.Listen(httpAddr, svc.Handler(), nil)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	fmt.Println("ready")
	<-ctx.Done()
	return srv.Shutdown(context.Background())
}

// cross is on-off cross traffic until SIGTERM: one TCP flow on another
// port that sends as fast as the link allows for 0.5 to 3 s, then pauses
// for 0.5 to 3 s, at random. It shares the link's class with every flow of
// the test, so their throughput varies with it, whatever their kind.
func cross() error {
	l, err := net.Listen("tcp", "127.0.0.1:5001")
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
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	fmt.Println("ready")
	buf := make([]byte, 64<<10)
	span := func() time.Duration { return time.Duration(500+rand.IntN(2500)) * time.Millisecond }
	for ctx.Err() == nil {
		end := time.Now().Add(span())
		for time.Now().Before(end) && ctx.Err() == nil {
			c.SetWriteDeadline(end)
			c.Write(buf)
		}
		select {
		case <-ctx.Done():
		case <-time.After(span()):
		}
	}
	return nil
}
