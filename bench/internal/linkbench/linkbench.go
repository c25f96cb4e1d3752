// Package linkbench runs the reference tools of the benchmarks (iperf3,
// ping) across a link of internal/linkem and reads their results.
package linkbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/neubot/neubot/internal/linkem"
)

// Priority, when above 0, runs iperf3 and ping under SCHED_FIFO at that
// priority (chrt -f), so that a loaded machine delays the endpoints less.
var Priority int

// Command is a command in a side's namespace, under Priority. It is
// killed when the bench dies (a server, an iperf3 -s would otherwise stay
// behind in a namespace nobody removes).
func Command(l *linkem.Link, s linkem.Side, name string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if Priority > 0 {
		cmd = l.Command(s, "chrt", append([]string{"-f", strconv.Itoa(Priority), name}, args...)...)
	} else {
		cmd = l.Command(s, name, args...)
	}
	dieWithParent(cmd)
	return cmd
}

// Iperf3Server starts `iperf3 -s` in side B on port; stop ends it.
func Iperf3Server(l *linkem.Link, port int) (stop func(), err error) {
	cmd := Command(l, linkem.B, "iperf3", "-s", "-J", "-p", strconv.Itoa(port)) // -J: clients get the receiver's intervals as JSON
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("iperf3 -s: %w", err)
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait() }
	// A client that comes too early is refused.
	if err := WaitListen(l, linkem.B, port, 10*time.Second); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

// WaitListen waits until a TCP port listens in side s.
func WaitListen(l *linkem.Link, s linkem.Side, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		out, _ := l.Command(s, "ss", "-Htln", "sport", "= :"+strconv.Itoa(port)).Output()
		if len(bytes.TrimSpace(out)) > 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on port %d in %s after %v", port, l.Namespace(s), timeout)
}

// TCP is an iperf3 TCP run's result.
type TCP struct {
	Mbps        float64 // the receiver's goodput over its 1-s intervals, first (omitted) and last left out
	Retransmits int
	// Intervals is the receiver's goodput in every interval, Mbit/s,
	// the omitted ones and the last included (for reading).
	Intervals []float64
}

// Iperf3TCP runs a TCP test from side A for secs seconds (after omit);
// reverse: B sends (download). extra are more iperf3 flags (e.g. -C reno).
// It tries again (3 times) when the server is still busy.
func Iperf3TCP(l *linkem.Link, port, secs, omit int, reverse bool, extra ...string) (TCP, error) {
	var err error
	for try := 0; try < 3; try++ {
		var r TCP
		if r, err = iperf3TCPOnce(l, port, secs, omit, reverse, extra); err == nil && r.Mbps > 0 {
			return r, nil
		}
		time.Sleep(time.Second)
	}
	return TCP{}, fmt.Errorf("iperf3 gave no result after 3 tries: %w", err)
}

// Iperf3Interval is one interval of iperf3's JSON output.
type Iperf3Interval struct {
	Sum struct {
		BitsPerSecond float64 `json:"bits_per_second"`
		Start         float64 `json:"start"`
		End           float64 `json:"end"`
		Seconds       float64 `json:"seconds"`
		Omitted       bool    `json:"omitted"`
		Retransmits   int     `json:"retransmits"`
	} `json:"sum"`
}

// Iperf3Output is what the benchmarks read of iperf3's JSON output (-J;
// Server with --get-server-output).
type Iperf3Output struct {
	Error     string           `json:"error"`
	Intervals []Iperf3Interval `json:"intervals"`
	Server    struct {
		Intervals []Iperf3Interval `json:"intervals"`
	} `json:"server_output_json"`
	End struct {
		SumSent struct {
			Retransmits int `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct { // UDP
			LostPercent float64 `json:"lost_percent"`
		} `json:"sum_received"`
	} `json:"end"`
}

func iperf3TCPOnce(l *linkem.Link, port, secs, omit int, reverse bool, extra []string) (TCP, error) {
	args := []string{"-c", linkem.Addr(linkem.B).String(), "-p", strconv.Itoa(port), "-t", strconv.Itoa(secs),
		"-O", strconv.Itoa(omit), "-J", "--get-server-output"}
	if reverse {
		args = append(args, "-R")
	}
	args = append(args, extra...)
	res, err := runIperf3(l, secs+omit+30, args)
	if err != nil {
		return TCP{}, err
	}
	// The receiver's intervals: the client's with -R, the server's
	// otherwise. The last is left out: iperf3's end also counts data still
	// queued when the sender stopped.
	ivs := res.Server.Intervals
	if reverse {
		ivs = res.Intervals
	}
	var bits, s float64
	var all []float64
	for i, iv := range ivs {
		// iperf3 3.x with --omit and -R reports, where the omitted
		// intervals end, one interval of 2 "seconds" that spans a
		// fraction of a millisecond, at half the rate: read with its
		// seconds, it took 1 s of data out of a 20-s mean (−5 %). The
		// interval's own start and end are what counts.
		secs := iv.Sum.End - iv.Sum.Start
		if secs < 0.5 {
			continue
		}
		all = append(all, math.Round(iv.Sum.BitsPerSecond/1e4)/100)
		if iv.Sum.Omitted || i == len(ivs)-1 {
			continue
		}
		bits += iv.Sum.BitsPerSecond * iv.Sum.Seconds
		s += iv.Sum.Seconds
	}
	if s == 0 {
		return TCP{}, fmt.Errorf("iperf3 reported no receiver intervals")
	}
	return TCP{Mbps: bits / s / 1e6, Retransmits: res.End.SumSent.Retransmits, Intervals: all}, nil
}

func runIperf3(l *linkem.Link, timeout int, args []string) (*Iperf3Output, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeout)*time.Second)
	defer cancel()
	out, err := Output(ctx, Command(l, linkem.A, "iperf3", args...))
	var res Iperf3Output
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		if err == nil {
			err = jerr
		}
		return nil, fmt.Errorf("iperf3 %s: %w: %.300s", strings.Join(args, " "), err, out)
	}
	if res.Error != "" {
		return nil, fmt.Errorf("iperf3: %s", res.Error)
	}
	if err != nil {
		return nil, fmt.Errorf("iperf3: %w", err)
	}
	return &res, nil
}

// UDP is an iperf3 UDP run's result, at the receiver.
type UDP struct {
	Mbps        float64 // payload, over the receiver's 1-s intervals, first and last left out
	LostPercent float64
}

// Iperf3UDP sends UDP from B to A (download) at mbps of payload in
// datagrams of size bytes for secs seconds.
func Iperf3UDP(l *linkem.Link, port, secs int, mbps float64, size int) (UDP, error) {
	args := []string{"-c", linkem.Addr(linkem.B).String(), "-p", strconv.Itoa(port), "-t", strconv.Itoa(secs),
		"-u", "-b", fmt.Sprintf("%gM", mbps), "-l", strconv.Itoa(size), "-w", "4M", "-R", "-J"}
	var err error
	for try := 0; try < 3; try++ {
		var res *Iperf3Output
		if res, err = runIperf3(l, secs+30, args); err == nil {
			var bits, s float64
			for i, iv := range res.Intervals {
				if i == 0 || i == len(res.Intervals)-1 || iv.Sum.Seconds < 0.5 {
					continue
				}
				bits += iv.Sum.BitsPerSecond * iv.Sum.Seconds
				s += iv.Sum.Seconds
			}
			if s == 0 {
				return UDP{}, fmt.Errorf("iperf3 -u: too few intervals (want -t 3 or more)")
			}
			return UDP{Mbps: bits / s / 1e6, LostPercent: res.End.SumReceived.LostPercent}, nil
		}
		time.Sleep(time.Second)
	}
	return UDP{}, err
}

var pingRE = regexp.MustCompile(`time=([0-9.]+) ms`)

// Ping sends count pings from side A to B every interval and returns the
// RTTs in ms, sorted.
func Ping(ctx context.Context, l *linkem.Link, count int, interval time.Duration) ([]float64, error) {
	out, err := Output(ctx, Command(l, linkem.A, "ping", "-n", "-c", strconv.Itoa(count),
		"-i", fmt.Sprintf("%.3f", interval.Seconds()), linkem.Addr(linkem.B).String()))
	var rtts []float64
	for _, m := range pingRE.FindAllStringSubmatch(string(out), -1) {
		if v, err := strconv.ParseFloat(m[1], 64); err == nil {
			rtts = append(rtts, v)
		}
	}
	if len(rtts) == 0 {
		return nil, fmt.Errorf("ping: no replies: %v: %.300s", err, out)
	}
	slices.Sort(rtts)
	return rtts, nil
}

// Output runs cmd until it ends or ctx does, and returns its stdout.
func Output(ctx context.Context, cmd *exec.Cmd) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.Bytes(), err
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		return out.Bytes(), fmt.Errorf("timed out")
	}
}

// Quantile is the q-quantile of sorted xs (nearest rank).
func Quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted)-1) + 0.5)
	return sorted[i]
}

// CongestionControl is the kernel's default TCP congestion control, as a
// benchmark's report names it ("unknown" where it cannot be read).
func CongestionControl() string {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}
