// The namespace with lo shaped by tbf, kept for a quick accuracy test
// (TestAccuracy, on the speedtest methodology's branch) that needs no
// emulator.
//
//lint:file-ignore U1000 the accuracy test of the methodology's branch uses these
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/neubot/neubot/bench/internal/linkbench"
)

// netns is a network namespace made for the benchmark, removed by close.
type netns struct{ name string }

func newNetns(prefix string) (*netns, error) {
	n := &netns{name: fmt.Sprintf("%s-%d", prefix, os.Getpid())}
	for _, args := range [][]string{
		{"netns", "add", n.name},
		{"-n", n.name, "link", "set", "lo", "mtu", "1500"},
		{"-n", n.name, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			n.close()
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return n, nil
}

func (n *netns) close() { exec.Command("ip", "netns", "del", n.name).Run() }

// shape puts a token bucket of rate Mbit/s on lo (replacing any).
func (n *netns) shape(mbps float64) error {
	exec.Command("ip", "netns", "exec", n.name, "tc", "qdisc", "del", "dev", "lo", "root").Run()
	rateBps := mbps * 1e6 / 8
	burst := int(math.Max(15000, rateBps*0.01)) // >= 10 MTU-sized packets and 10 ms of traffic
	args := []string{"netns", "exec", n.name, "tc", "qdisc", "add", "dev", "lo", "root", "tbf",
		"rate", fmt.Sprintf("%gmbit", mbps), "burst", strconv.Itoa(burst), "latency", "50ms"}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("tc: %v: %s", err, out)
	}
	return nil
}

func (n *netns) command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.name, name}, args...)...)
}

// iperf3 measures goodput at the receiver; reverse = server sends (download).
// It tries again when the server is still busy with the previous run.
func (n *netns) iperf3(port, secs int, reverse bool) (float64, error) {
	var err error
	for try := 0; try < 3; try++ {
		var mbps float64
		if mbps, err = n.iperf3Once(port, secs, reverse); err == nil && mbps > 0 {
			return mbps, nil
		}
		time.Sleep(2 * time.Second)
	}
	return 0, fmt.Errorf("iperf3 gave no result after 3 tries: %v", err)
}

func (n *netns) iperf3Once(port, secs int, reverse bool) (float64, error) {
	args := []string{"-c", "127.0.0.1", "-p", strconv.Itoa(port), "-t", strconv.Itoa(secs), "-O", "1", "-P", "2", "-J", "--get-server-output"}
	if reverse {
		args = append(args, "-R")
	}
	// iperf3 sometimes hangs on a lossy link: bound each run.
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+20)*time.Second)
	defer cancel()
	out, err := linkbench.Output(ctx, n.command("iperf3", args...))
	if err != nil {
		return 0, fmt.Errorf("iperf3: %v: %s", err, out)
	}
	var res linkbench.Iperf3Output
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, fmt.Errorf("iperf3 output: %v", err)
	}
	if res.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", res.Error)
	}
	// The receiver's one-second intervals: the client's with -R, the
	// server's otherwise. The omitted first second and the last interval
	// are left out: iperf3's end-of-test total also counts data still
	// queued when the sender stopped (+2 to +4% at 1-7 Mbit/s in 10 s).
	ivs := res.Server.Intervals
	if reverse {
		ivs = res.Intervals
	}
	var bits, secsSum float64
	for i, iv := range ivs {
		if iv.Sum.Omitted || i == len(ivs)-1 || iv.Sum.Seconds < 0.5 {
			continue
		}
		bits += iv.Sum.BitsPerSecond * iv.Sum.Seconds
		secsSum += iv.Sum.Seconds
	}
	if secsSum == 0 {
		return 0, fmt.Errorf("iperf3 reported no receiver intervals")
	}
	return bits / secsSum / 1e6, nil
}
