// Command speedtest measures the speedtest against ground truth across
// real paths, side by side in one run:
//
//   - accuracy: for every cell of rate {1, 10, 50, 200} Mbit/s × RTT {0,
//     20, 80, 200, 300} ms × loss {0, 0.1 %}, a link of internal/linkem
//     (drop-tail queue of one BDP) between two network namespaces; in it,
//     our speedtest (each methodology the client offers), then iperf3
//     (the reference: 20 s after its ramp-up, omitted with --omit, run
//     with 1 and with 8 streams and the run nearer the link's payload
//     capacity taken, or with -iperf-single=false with as many streams as
//     the newest methodology used connections), our ndt7
//     (agent/ndt7 against testserver/ndt7) and, when their binaries are
//     given, M-Lab's ndt-server and ndt7-client; the table gives the
//     link's payload capacity, each tool's error against iperf3 and its
//     test time;
//   - loaded latency: at 20 Mbit/s, 20 ms, a queue of 1000 packets, ping
//     during an iperf3 download against the speedtest's RTT under load;
//   - capacity: unshaped loopback, N concurrent tests against one test
//     server: total Gbit/s and the CPU the server used.
//
// It needs root (namespaces, TUN devices), iperf3 and ping (scripts/setup
// installs them). It exits 1 when the goal is missed by the newest
// speedtest methodology: median |error| ≤ 3 % and worst ≤ 6 % over the
// lossless cells, ≤ 10 % at 0.1 % loss, whole test ≤ 8 s (≤ 10 s at RTT ≥
// 200 ms).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/neubot/neubot/bench/internal/linkbench"
	"github.com/neubot/neubot/internal/linkem"
	"github.com/neubot/neubot/internal/stats"
)

type options struct {
	rates, rtts, losses []float64
	methods             []int
	iperfTime           int
	iperfStreams        int  // 0: per direction, as many as the newest speedtest used
	iperfSingle         bool // -iperf-single: iperf3 with 1 and 8 streams, the one nearer the link's payload capacity
	iperfOmit           int  // -1: ramp-up seconds from the RTT (omitSecs)
	queue               int
	realtime            int
	mlabServer          string
	mlabClient          string
	skipNDT7            bool
	dir                 string
	out                 string // -out: cells appended as JSON lines
	name                string // prefix of the links' namespaces
	links               int    // links made so far
	records             string // -records: directory for each test's output
	skipIperf           bool   // -skip-iperf: the payload capacity stands for iperf3
	maxLate             time.Duration
	lateTries           int
}

func main() {
	rates := flag.String("rates", "1,10,50,200", "link rates, Mbit/s")
	rtts := flag.String("rtts", "0,20,80,200,300", "round-trip times, ms")
	losses := flag.String("loss", "0,0.001", "loss fractions (0.001 = 0.1 %), each direction")
	methods := flag.String("methods", "", "speedtest methodologies to run, e.g. 1,2 (default: every one `neubot run speedtest` offers)")
	iperfTime := flag.Int("iperf-time", 20, "seconds of each iperf3 run, after the omitted ramp-up")
	iperfStreams := flag.Int("iperf-streams", 0, "iperf3's parallel streams (-P); 0: per cell and direction, as many connections as the newest speedtest used")
	iperfSingle := flag.Bool("iperf-single", true, "with -iperf-streams 0: run iperf3 with 1 and with 8 streams per cell and direction, and take as the reference the one nearer the link's payload capacity (false: as many as the speedtest used)")
	iperfOmit := flag.Int("iperf-omit", -1, "seconds iperf3 omits at its start (--omit); -1: TCP's ramp-up, ceil(2 s + 10 RTT)")
	queue := flag.Int("queue", 0, "queue of the link, packets (0: one BDP, at least 16)")
	// Ordinary scheduling by default (since 2026-12-06): with the link's
	// threads under SCHED_FIFO, the kernel's deferred network work
	// (ksoftirqd, ordinary scheduling) waited behind them, and at 200
	// Mbit/s the link wrote packets 148 to 491 ms late in 5 of 6 15-s
	// iperf3 runs (3.1 to 8.2 ms in 5 of 5 under ordinary scheduling,
	// two with two busy loops); -max-late catches what load still does.
	realtime := flag.Int("realtime", 0, "SCHED_FIFO priority of the link's threads (0: ordinary scheduling)")
	flag.IntVar(&linkbench.Priority, "chrt", 0, "SCHED_FIFO priority of every tool, reference and tested alike (0: ordinary scheduling)")
	mlabServer := flag.String("mlab-ndt-server", "", "M-Lab's ndt-server binary (github.com/m-lab/ndt-server), built by you; empty: no M-Lab column")
	mlabClient := flag.String("mlab-ndt7-client", "", "M-Lab's ndt7-client binary (github.com/m-lab/ndt7-client-go/cmd/ndt7-client)")
	skipNDT7 := flag.Bool("skip-ndt7", false, "skip our ndt7")
	skipAccuracy := flag.Bool("skip-accuracy", false, "skip the matrix")
	skipLoaded := flag.Bool("skip-loaded", false, "skip the loaded-latency check")
	skipCapacity := flag.Bool("skip-capacity", false, "skip the capacity part")
	out := flag.String("out", "", "append every cell measured, one JSON object a line, to this file (for -merge)")
	name := flag.String("name", "stb", "prefix of the emulated links' namespaces and devices (a number is appended; at most 9 characters)")
	bin := flag.String("bin", "", "directory with neubot and neubot-server already built from this tree (default: build them in a temporary directory)")
	records := flag.String("records", "", "directory where each run of our tests leaves its output (`neubot run --json`), for reading its series")
	skipIperf := flag.Bool("skip-iperf", false, "no iperf3: the link's payload capacity stands for the reference (for trying a change quickly, not for the table)")
	maxLateFlag = flag.Duration("max-late", 20*time.Millisecond, "a run through which the link wrote a packet later than this after its time measured the machine, not the link (linkem.Link.TakeLateMax): it is made again, every tool alike")
	lateTriesFlag = flag.Int("late-tries", 3, "runs of a tool at most, with -max-late")
	merge := flag.String("merge", "", "print the table and the goal of the cells in these files (comma-separated, written by -out) and measure nothing")
	flag.Parse()
	onInterrupt()
	if *merge != "" {
		ok, err := mergeFiles(strings.Split(*merge, ","))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/speedtest:", err)
			os.Exit(1)
		}
		if !ok {
			os.Exit(1)
		}
		return
	}
	o := &options{iperfTime: *iperfTime, iperfStreams: *iperfStreams, iperfSingle: *iperfSingle && *iperfStreams == 0, iperfOmit: *iperfOmit, queue: *queue, realtime: *realtime,
		mlabServer: *mlabServer, mlabClient: *mlabClient, skipNDT7: *skipNDT7, out: *out, name: *name, records: *records, skipIperf: *skipIperf,
		maxLate: *maxLateFlag, lateTries: max(*lateTriesFlag, 1)}
	var err error
	if o.rates, err = floats(*rates); err == nil {
		if o.rtts, err = floats(*rtts); err == nil {
			o.losses, err = floats(*losses)
		}
	}
	if err == nil && (o.mlabServer == "") != (o.mlabClient == "") {
		err = fmt.Errorf("give both -mlab-ndt-server and -mlab-ndt7-client, or neither")
	}
	if err == nil && o.records != "" {
		err = os.MkdirAll(o.records, 0o755)
	}
	if err == nil {
		err = run(o, *bin, *methods, *skipAccuracy, *skipLoaded, *skipCapacity)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/speedtest:", err)
		os.Exit(1)
	}
}

func floats(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v < 0 || math.IsNaN(v) {
			return nil, fmt.Errorf("bad value %q in %q", f, s)
		}
		out = append(out, v)
	}
	return out, nil
}

func run(o *options, bin, methods string, skipAccuracy, skipLoaded, skipCapacity bool) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root for network namespaces and TUN devices")
	}
	for _, tool := range []string{"iperf3", "ping", "chrt"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (run scripts/setup): %w", tool, err)
		}
	}
	dir, err := os.MkdirTemp("", "neubot-bench-speedtest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	o.dir = dir
	opened.mu.Lock()
	opened.dir = dir
	opened.mu.Unlock()
	for _, c := range []string{"neubot", "neubot-server"} {
		if bin != "" {
			abs, err := filepath.Abs(filepath.Join(bin, c))
			if err == nil {
				err = os.Symlink(abs, filepath.Join(dir, c))
			}
			if err != nil {
				return err
			}
			continue
		}
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, c), "./cmd/"+c).CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", c, err, out)
		}
	}
	if methods == "" {
		o.methods = offeredMethods(filepath.Join(dir, "neubot"))
	} else {
		for _, m := range strings.Split(methods, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(m))
			if err != nil || v < 1 {
				return fmt.Errorf("bad -methods %q", methods)
			}
			o.methods = append(o.methods, v)
		}
	}
	failed := false
	if !skipAccuracy {
		ok, err := matrix(o)
		if err != nil {
			return err
		}
		failed = failed || !ok
	}
	if !skipLoaded {
		if err := loaded(o); err != nil {
			return err
		}
	}
	if !skipCapacity {
		if err := capacity(dir); err != nil {
			return err
		}
	}
	if failed {
		return fmt.Errorf("the goal was missed")
	}
	return nil
}

// offeredMethods asks the client which methodologies it has: those with a
// --method flag offer 1 and 2; the others only the first.
func offeredMethods(neubot string) []int {
	out, _ := exec.Command(neubot, "run", "speedtest", "-h").CombinedOutput()
	if bytes.Contains(out, []byte("-method")) {
		return []int{1, 2}
	}
	return []int{1}
}

// bigBuffers lets one TCP connection fill 200 Mbit/s × 300 ms (the
// kernel's tcp_wmem maximum, 4 MB, would not); every tool gets the same.
var bigBuffers = map[string]string{
	"net.ipv4.tcp_rmem": "4096 131072 33554432",
	"net.ipv4.tcp_wmem": "4096 16384 33554432",
}

// Ports inside the link's namespace B (nothing else listens there).
const (
	iperfPort = 5201
	ourPort   = 9775
	mlabPort  = 8080
)

// measured is one tool's result in one cell.
type measured struct {
	Down float64 `json:"down"`
	Up   float64 `json:"up"`
	Secs float64 `json:"secs"`
	// Connections the tool used per direction (the speedtest's record).
	ConnsDown  int     `json:"conns_down,omitempty"`
	ConnsUp    int     `json:"conns_up,omitempty"`
	LoadedDown float64 `json:"loaded_down,omitempty"` // RTT under load the tool reported for the download, ms
	Err        string  `json:"err,omitempty"`
	// The link's lateness through the run kept (-max-late), ms, and the
	// runs made.
	LateMS float64 `json:"late_ms,omitempty"`
	Runs   int     `json:"runs,omitempty"`
}

type cellResult struct {
	Rate      float64 `json:"rate"`
	RTT       float64 `json:"rtt"`
	Loss      float64 `json:"loss"`
	Queue     int     `json:"queue"`
	IperfDown float64 `json:"iperf_down"`
	IperfUp   float64 `json:"iperf_up"`
	// iperf3's streams per direction, its omitted seconds, and the
	// receiver's 1-s intervals (Mbit/s; the omitted ones first).
	IperfDownP   int       `json:"iperf_down_p,omitempty"`
	IperfUpP     int       `json:"iperf_up_p,omitempty"`
	IperfOmit    int       `json:"iperf_omit,omitempty"`
	IperfDownIvs []float64 `json:"iperf_down_intervals,omitempty"`
	// With -iperf-single, the run not taken as the reference: its
	// streams and goodput per direction.
	IperfDownAltP int       `json:"iperf_down_alt_p,omitempty"`
	IperfUpAltP   int       `json:"iperf_up_alt_p,omitempty"`
	IperfDownAlt  float64   `json:"iperf_down_alt,omitempty"`
	IperfUpAlt    float64   `json:"iperf_up_alt,omitempty"`
	IperfSingle   bool      `json:"iperf_single,omitempty"`
	IperfUpIvs    []float64 `json:"iperf_up_intervals,omitempty"`
	// The link's lateness through the reference's run kept (ms), and the
	// iperf3 runs made per direction (-max-late).
	IperfDownLateMS float64 `json:"iperf_down_late_ms,omitempty"`
	IperfUpLateMS   float64 `json:"iperf_up_late_ms,omitempty"`
	IperfDownRuns   int     `json:"iperf_down_runs,omitempty"`
	IperfUpRuns     int     `json:"iperf_up_runs,omitempty"`
	// -max-late (ms; 0: off) and -late-tries of the run.
	MaxLateMS float64             `json:"max_late_ms,omitempty"`
	LateTries int                 `json:"late_tries,omitempty"`
	Tools     map[string]measured `json:"tools"`
	// The run's conditions, for the merged table's header.
	Load         string `json:"load"`
	Started      string `json:"started"`
	QueueOpt     int    `json:"queue_opt"`
	Realtime     int    `json:"realtime"`
	Chrt         int    `json:"chrt"`
	IperfStreams int    `json:"iperf_streams"`
	IperfTime    int    `json:"iperf_time"`
}

// servers are the servers of one cell, in namespace B.
type servers struct{ cmds []*exec.Cmd }

func (s *servers) stop() {
	for _, c := range s.cmds {
		c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range s.cmds {
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			c.Process.Kill()
			<-done
		}
	}
}

func startServers(o *options, l *linkem.Link, tag string) (*servers, error) {
	s := &servers{}
	b := linkem.Addr(linkem.B).String()
	ts := linkbench.Command(l, linkem.B, filepath.Join(o.dir, "neubot-server"), "testserver",
		"--listen", fmt.Sprintf("%s:%d", b, ourPort), "--collector", "", "--spool-dir", filepath.Join(o.dir, "spool-"+tag),
		"--id", "bench", "--negotiate-rate", "100", "--log-level", "warn", "--bittorrent-listen", "", "--neutral-listen", "",
		"--key-file", filepath.Join(o.dir, "testserver-"+tag+".key"))
	ts.Stderr = os.Stderr
	if err := ts.Start(); err != nil {
		return nil, err
	}
	s.cmds = append(s.cmds, ts)
	ports := []int{ourPort}
	if o.mlabServer != "" {
		data := filepath.Join(o.dir, "ndt-"+tag)
		os.MkdirAll(data, 0o755)
		// Everything on B's address or loopback inside the namespace.
		ms := linkbench.Command(l, linkem.B, o.mlabServer, "-ndt7_addr_cleartext", fmt.Sprintf("%s:%d", b, mlabPort),
			"-ndt7_addr", "127.0.0.1:4443", "-ndt5_addr", "127.0.0.1:3001", "-ndt5_ws_addr", "127.0.0.1:3002",
			"-health_addr", "127.0.0.1:8000", "-datadir", data, "-htmldir", data)
		ms.Dir = data
		if err := ms.Start(); err != nil {
			s.stop()
			return nil, fmt.Errorf("M-Lab ndt-server: %w", err)
		}
		s.cmds = append(s.cmds, ms)
		ports = append(ports, mlabPort)
	}
	for _, p := range ports {
		if err := linkbench.WaitListen(l, linkem.B, p, 20*time.Second); err != nil {
			s.stop()
			return nil, err
		}
	}
	return s, nil
}

func cellLink(o *options, rate, rtt, loss float64, queue int) (*linkem.Link, error) {
	d := linkem.Dir{Rate: rate, Delay: time.Duration(rtt * float64(time.Millisecond) / 2), Loss: loss, Queue: queue}
	o.links++
	name := fmt.Sprintf("%s%d", o.name, o.links%10000)
	l, err := linkem.Start(context.Background(), linkem.Config{Name: name, Up: d, Down: d, Realtime: o.realtime, Sysctls: bigBuffers, Seed: 1})
	if err == nil {
		opened.add(l)
	}
	return l, err
}

// opened holds the links made so far, closed (their namespaces removed)
// when the bench is interrupted; closing one twice is harmless. The tools
// in them die with the bench (linkbench.Command).
var opened openLinks

type openLinks struct {
	mu    sync.Mutex
	links []*linkem.Link
	dir   string
}

func (o *openLinks) add(l *linkem.Link) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.links = append(o.links, l)
}

// onInterrupt closes every link and removes the bench's directory when
// SIGINT or SIGTERM comes, then exits: a killed run left its namespaces,
// its servers and its directory behind, and the next run with the same
// -name could not make its links.
func onInterrupt() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-c
		fmt.Fprintf(os.Stderr, "bench/speedtest: %v: closing the links\n", sig)
		opened.mu.Lock()
		for _, l := range opened.links {
			l.Close()
		}
		if opened.dir != "" {
			os.RemoveAll(opened.dir)
		}
		os.Exit(1)
	}()
}

func matrix(o *options) (bool, error) {
	var results []cellResult
	start := time.Now()
	load0 := loadAvg()
	for _, loss := range o.losses {
		for _, rtt := range o.rtts {
			for _, rate := range o.rates {
				r, err := cell(o, rate, rtt, loss)
				if err != nil {
					return false, fmt.Errorf("cell %g Mbit/s, %g ms, loss %g: %w", rate, rtt, loss, err)
				}
				results = append(results, r)
				if o.out != "" {
					if err := appendCell(o.out, r); err != nil {
						return false, err
					}
				}
			}
		}
	}
	return report(o, results, time.Since(start), load0), nil
}

// appendCell appends r to file as one JSON line.
func appendCell(file string, r cellResult) error {
	f, err := os.OpenFile(file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err == nil {
		_, err = f.Write(append(b, '\n'))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// mergeFiles prints one table, and checks the goal, over the cells of
// several runs written with -out (each run at most one quiet period).
func mergeFiles(files []string) (bool, error) {
	var rs []cellResult
	var o options
	o.queue, o.realtime, o.iperfStreams, o.iperfTime = -1, -1, -1, -1
	o.maxLate, o.lateTries = *maxLateFlag, *lateTriesFlag
	seen := map[string]bool{}
	for _, file := range files {
		b, err := os.ReadFile(strings.TrimSpace(file))
		if err != nil {
			return false, err
		}
		for i, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			var r cellResult
			if err := json.Unmarshal(line, &r); err != nil {
				return false, fmt.Errorf("%s:%d: %w", file, i+1, err)
			}
			rs = append(rs, r)
			for t := range r.Tools {
				seen[t] = true
			}
			o.queue, o.realtime, o.iperfStreams, o.iperfTime = r.QueueOpt, r.Realtime, r.IperfStreams, r.IperfTime
			linkbench.Priority = r.Chrt
			if r.MaxLateMS > 0 { // the run's own, not today's flags
				o.maxLate, o.lateTries = time.Duration(r.MaxLateMS*float64(time.Millisecond)), r.LateTries
			}
		}
	}
	if len(rs) == 0 {
		return false, fmt.Errorf("no cells in %v", files)
	}
	for m := 1; m < 10; m++ {
		if seen[fmt.Sprintf("speedtest v%d", m)] {
			o.methods = append(o.methods, m)
		}
	}
	if len(o.methods) == 0 {
		return false, fmt.Errorf("no speedtest in %v", files)
	}
	o.skipNDT7 = !seen["our ndt7"]
	if seen["M-Lab ndt7"] {
		o.mlabServer = "given"
	}
	slices.SortStableFunc(rs, func(a, b cellResult) int {
		for _, d := range []float64{a.Loss - b.Loss, a.RTT - b.RTT, a.Rate - b.Rate} {
			if d != 0 {
				return int(math.Copysign(1, d))
			}
		}
		return 0
	})
	first, last := rs[0].Started, rs[0].Started
	for _, r := range rs {
		first, last = min(first, r.Started), max(last, r.Started)
	}
	fmt.Printf("\nMerged from %d runs, cells started from %s to %s (load average at each cell's start: see the files).\n", len(files), first, last)
	return report(&o, rs, 0, "(per run)"), nil
}

func cell(o *options, rate, rtt, loss float64) (cellResult, error) {
	r := cellResult{Rate: rate, RTT: rtt, Loss: loss, Tools: map[string]measured{}, Load: loadAvg(), Started: time.Now().UTC().Format(time.RFC3339),
		QueueOpt: o.queue, Realtime: o.realtime, Chrt: linkbench.Priority, IperfStreams: o.iperfStreams, IperfTime: o.iperfTime,
		MaxLateMS: ms(o.maxLate), LateTries: o.lateTries}
	l, err := cellLink(o, rate, rtt, loss, o.queue)
	if err != nil {
		return r, err
	}
	defer l.Close()
	r.Queue = l.Config().Down.Queue
	tag := fmt.Sprintf("%g-%g-%g", rate, rtt, loss)
	progress := func(what string) {
		fmt.Fprintf(os.Stderr, "%s: %g Mbit/s, RTT %g ms, loss %g %%: %s\n", time.Now().Format("15:04:05"), rate, rtt, loss*100, what)
	}
	stopIperf, err := linkbench.Iperf3Server(l, iperfPort)
	if err != nil {
		return r, err
	}
	defer stopIperf()
	srv, err := startServers(o, l, tag)
	if err != nil {
		return r, err
	}
	defer srv.stop()

	// The speedtests first: iperf3 then uses, per direction, as many
	// streams as the newest methodology used connections.
	for _, m := range o.methods {
		name := fmt.Sprintf("speedtest v%d", m)
		r.Tools[name] = toolOnTime(o, l, name, progress, func() measured { return ourTest(o, l, "speedtest", m, tag) })
		up, down := l.Stats()
		progress(fmt.Sprintf("%s %+v (link so far: dropped up %d down %d, overrun up %d down %d)", name, r.Tools[name], up.Dropped, down.Dropped, up.Overrun, down.Overrun))
	}
	r.IperfDownP, r.IperfUpP = o.iperfStreams, o.iperfStreams
	if o.iperfStreams == 0 {
		g := r.Tools[fmt.Sprintf("speedtest v%d", slices.Max(o.methods))]
		r.IperfDownP, r.IperfUpP = max(g.ConnsDown, 1), max(g.ConnsUp, 1)
	}
	r.IperfOmit = o.iperfOmit
	if r.IperfOmit < 0 {
		r.IperfOmit = omitSecs(rtt)
	}
	if o.skipIperf {
		r.IperfDown, r.IperfUp, r.IperfOmit = payload(rate), payload(rate), 0
		return r, nil
	}
	if err := reference(o, l, &r, rate, progress); err != nil {
		return r, err
	}
	if !o.skipNDT7 {
		r.Tools["our ndt7"] = toolOnTime(o, l, "our ndt7", progress, func() measured { return ourTest(o, l, "ndt7", 0, tag) })
		progress(fmt.Sprintf("our ndt7 %+v", r.Tools["our ndt7"]))
	}
	if o.mlabServer != "" {
		r.Tools["M-Lab ndt7"] = toolOnTime(o, l, "M-Lab ndt7", progress, func() measured { return mlabTest(o, l) })
		progress(fmt.Sprintf("M-Lab ndt7 %+v", r.Tools["M-Lab ndt7"]))
	}
	return r, nil
}

// maxLateFlag and lateTriesFlag are -max-late and -late-tries, for -merge too.
var (
	maxLateFlag   *time.Duration
	lateTriesFlag *int
)

// onTime runs f until the link kept its schedule through the run (at most
// o.maxLate late, both directions: linkem.Link.TakeLateMax) or o.lateTries
// runs were made, and returns the last run's result, the link's lateness
// through it and the runs made. A packet written a third of a second late
// is a stall of the link that the link configured does not have: the
// 200 Mbit/s, 300 ms cells' low readings came with the link 83 to 339 ms
// late, their readings within 1 % of the link with it at most 8 ms late.
// Every tool, the reference and the tested alike, gets the same tries.
func onTime[T any](o *options, l *linkem.Link, what string, progress func(string), f func() T) (T, time.Duration, int) {
	for try := 1; ; try++ {
		l.TakeLateMax()
		v := f()
		up, down := l.TakeLateMax()
		late := max(up, down)
		if o.maxLate <= 0 || late <= o.maxLate || try >= o.lateTries {
			return v, late, try
		}
		progress(fmt.Sprintf("%s: the link wrote a packet %v late (up %v, down %v): run again", what, late.Round(time.Millisecond), up.Round(time.Millisecond), down.Round(time.Millisecond)))
	}
}

// toolOnTime runs a tool under onTime and keeps in its result the link's
// lateness through the run kept and the runs made.
func toolOnTime(o *options, l *linkem.Link, name string, progress func(string), run func() measured) measured {
	m, late, runs := onTime(o, l, name, progress, run)
	m.LateMS, m.Runs = ms(late), runs
	return m
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

// singleStreams are the streams of the two iperf3 runs of -iperf-single.
var singleStreams = [2]int{1, 8}

// reference runs iperf3 in both directions into r: with the streams of
// r.IperfDownP and r.IperfUpP, or with -iperf-single with 1 and with 8
// streams (the ramp-up omitted alike), the reference being the run nearer
// the link's payload capacity, the other kept beside it.
func reference(o *options, l *linkem.Link, r *cellResult, rate float64, progress func(string)) error {
	for _, down := range []bool{true, false} {
		dir, p, mbps, ivs := "up", &r.IperfUpP, &r.IperfUp, &r.IperfUpIvs
		altP, alt := &r.IperfUpAltP, &r.IperfUpAlt
		if down {
			dir, p, mbps, ivs = "down", &r.IperfDownP, &r.IperfDown, &r.IperfDownIvs
			altP, alt = &r.IperfDownAltP, &r.IperfDownAlt
		}
		streams := []int{*p}
		if o.iperfSingle {
			streams = singleStreams[:]
		}
		var runs []linkbench.TCP
		var lates []time.Duration
		made := 0
		for _, n := range streams {
			progress(fmt.Sprintf("iperf3 %s -P %d -O %d", dir, n, r.IperfOmit))
			type result struct {
				t   linkbench.TCP
				err error
			}
			res, late, tries := onTime(o, l, fmt.Sprintf("iperf3 %s -P %d", dir, n), progress, func() result {
				t, err := linkbench.Iperf3TCP(l, iperfPort, o.iperfTime, r.IperfOmit, down, "-P", strconv.Itoa(n))
				return result{t, err}
			})
			if res.err != nil {
				return res.err
			}
			runs, lates, made = append(runs, res.t), append(lates, late), made+tries
		}
		best := 0
		if len(runs) == 2 {
			r.IperfSingle = true
			if math.Abs(runs[1].Mbps-payload(rate)) < math.Abs(runs[0].Mbps-payload(rate)) {
				best = 1
			}
			*altP, *alt = streams[1-best], runs[1-best].Mbps
		}
		*p, *mbps, *ivs = streams[best], runs[best].Mbps, runs[best].Intervals
		if down {
			r.IperfDownLateMS, r.IperfDownRuns = ms(lates[best]), made
		} else {
			r.IperfUpLateMS, r.IperfUpRuns = ms(lates[best]), made
		}
		msg := fmt.Sprintf("iperf3 %s %.3f with -P %d", dir, *mbps, *p)
		if *altP > 0 {
			msg += fmt.Sprintf(" (nearer the payload capacity %.3f than -P %d: %.3f)", payload(rate), *altP, *alt)
		}
		progress(msg)
	}
	return nil
}

// omitSecs is the reference's ramp-up, left out of its mean: BBR's
// start-up grows the window 2.89 times a round trip, so it fills these
// links' bandwidth-delay products (up to 5000 packets) in at most 8 round
// trips; it drains its queue in one more, and the losses its overshoot
// caused in a one-BDP queue take a few more to repair. 10 RTTs, plus
// iperf3's own 2 s (connection, first interval), rounded up to whole
// seconds, the unit of iperf3's --omit.
func omitSecs(rttMS float64) int {
	return int(math.Ceil(2 + 10*rttMS/1000))
}

// record is the part of `neubot run TEST --json` the bench reads.
type record struct {
	DownloadMbps float64 `json:"download_mbps"`
	UploadMbps   float64 `json:"upload_mbps"`
	Record       struct {
		TestKeys struct {
			Download struct {
				LoadedRTTMedianMS float64 `json:"loaded_rtt_median_ms"`
				Connections       int     `json:"connections"`
			} `json:"download"`
			Upload struct {
				Connections int `json:"connections"`
			} `json:"upload"`
		} `json:"test_keys"`
	} `json:"record"`
}

// ourTest runs `neubot run TEST` in side A against our test server; with
// -records, its output goes to a file named after the test and the cell.
func ourTest(o *options, l *linkem.Link, test string, method int, tag string) measured {
	args := []string{"run", test, "--server", fmt.Sprintf("http://%s:%d", linkem.Addr(linkem.B), ourPort), "--json", "--timeout", "90s"}
	if test == "speedtest" && method > 0 && len(o.methods) > 1 {
		args = append(args, "--method", strconv.Itoa(method))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := linkbench.Command(l, linkem.A, filepath.Join(o.dir, "neubot"), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	var before [2]counters
	if o.records != "" {
		before = [2]counters{readCounters(l, linkem.A), readCounters(l, linkem.B)}
	}
	t0 := time.Now()
	out, err := linkbench.Output(ctx, cmd)
	m := measured{Secs: time.Since(t0).Seconds()}
	if o.records != "" {
		file := filepath.Join(o.records, fmt.Sprintf("%s%d-%s-%s", test, method, tag, t0.UTC().Format("150405")))
		werr := os.WriteFile(file+".json", out, 0o644)
		if werr == nil {
			// The namespaces' counters over the test: client (a), server (b).
			werr = os.WriteFile(file+".counters", []byte("# a (client)\n"+readCounters(l, linkem.A).delta(before[0])+
				"# b (server)\n"+readCounters(l, linkem.B).delta(before[1])), 0o644)
		}
		if werr != nil {
			fmt.Fprintln(os.Stderr, "bench/speedtest:", werr)
		}
	}
	if err != nil {
		m.Err = fmt.Sprintf("%v: %.200s", err, bytes.TrimSpace(stderr.Bytes()))
		return m
	}
	var rec record
	if err := json.Unmarshal(out, &rec); err != nil {
		m.Err = err.Error()
		return m
	}
	tk := rec.Record.TestKeys
	m.Down, m.Up, m.LoadedDown = rec.DownloadMbps, rec.UploadMbps, tk.Download.LoadedRTTMedianMS
	m.ConnsDown, m.ConnsUp = tk.Download.Connections, tk.Upload.Connections
	return m
}

// mlabTest runs M-Lab's ndt7-client against M-Lab's ndt-server.
func mlabTest(o *options, l *linkem.Link) measured {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := linkbench.Command(l, linkem.A, o.mlabClient, "-server", fmt.Sprintf("%s:%d", linkem.Addr(linkem.B), mlabPort),
		"-scheme", "ws", "-format", "json", "-quiet")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	out, err := linkbench.Output(ctx, cmd)
	m := measured{Secs: time.Since(t0).Seconds()}
	if err != nil {
		m.Err = fmt.Sprintf("%v: %.200s", err, bytes.TrimSpace(stderr.Bytes()))
		return m
	}
	// The summary: {"Download":{"Throughput":{"Value":9.39,"Unit":"Mbit/s"},...},"Upload":{...}}
	type value struct {
		Value float64
		Unit  string
	}
	type dir struct{ Throughput value }
	var sum struct{ Download, Upload dir }
	for _, line := range bytes.Split(out, []byte("\n")) {
		var s struct{ Download, Upload *dir }
		if json.Unmarshal(line, &s) == nil && s.Download != nil && s.Upload != nil {
			sum.Download, sum.Upload = *s.Download, *s.Upload
		}
	}
	if sum.Download.Throughput.Unit != "Mbit/s" || sum.Upload.Throughput.Unit != "Mbit/s" {
		m.Err = fmt.Sprintf("no summary in ndt7-client's output: %.200s", out)
		return m
	}
	m.Down, m.Up = sum.Download.Throughput.Value, sum.Upload.Throughput.Value
	return m
}

func errPct(x, truth float64) float64 { return (x - truth) / truth * 100 }

// payload is the link's capacity for TCP payload at rate: 1448 bytes
// (after IP, TCP and timestamps) in every 1500-byte packet.
func payload(rate float64) float64 { return rate * 1448 / 1500 }

func report(o *options, rs []cellResult, took time.Duration, load0 string) bool {
	tools := []string{}
	for _, m := range o.methods {
		tools = append(tools, fmt.Sprintf("speedtest v%d", m))
	}
	if !o.skipNDT7 {
		tools = append(tools, "our ndt7")
	}
	if o.mlabServer != "" {
		tools = append(tools, "M-Lab ndt7")
	}
	goalTool := fmt.Sprintf("speedtest v%d", slices.Max(o.methods))
	streams := fmt.Sprintf("-P %d", o.iperfStreams)
	switch {
	case slices.ContainsFunc(rs, func(r cellResult) bool { return r.IperfSingle }):
		streams = "run with 1 and with 8 streams (-iperf-single), the reference per cell and direction being the run nearer the link's payload capacity (×P: its streams; the other run's after the semicolon)"
	case o.iperfStreams == 0:
		streams = fmt.Sprintf("with as many streams as %s used connections in the cell and direction (×P)", goalTool)
	}
	sched := func(prio int) string {
		if prio <= 0 {
			return "ordinary scheduling"
		}
		return fmt.Sprintf("SCHED_FIFO %d", prio)
	}
	fmt.Printf("\nSpeedtest accuracy in the link emulator (internal/linkem; queue %s; link threads: %s; every tool: %s; tcp_rmem/tcp_wmem max 32 MB in both namespaces). Reference: iperf3 %s, %d s after its --omit of the ramp-up (ceil(2 s + 10 RTT) unless -iperf-omit), the receiver's mean goodput over its 1-s intervals (last left out), the machine's congestion control (%s) for every tool. Payload: the link's capacity for TCP payload, rate × 1448/1500. Cells: error vs iperf3, then the tool's whole time (process start to result). %d cells in %.0f min; load average %s at the start, %s at the end, on a 2-CPU machine shared with other engineers' work.\n\n",
		queueDesc(o.queue), sched(o.realtime), sched(linkbench.Priority), streams, o.iperfTime, linkbench.CongestionControl(), len(rs), took.Minutes(), load0, loadAvg())
	if o.skipIperf {
		fmt.Printf("NO iperf3 (-skip-iperf): its column and the errors are against the payload capacity.\n\n")
	}
	// The runs made again because the link fell behind its schedule.
	late := func(msLate float64) string {
		if o.maxLate > 0 && msLate > ms(o.maxLate) {
			return fmt.Sprintf(" ‡%.0f ms", msLate)
		}
		return ""
	}
	again, runs, stillLate := 0, 0, 0
	for _, r := range rs {
		for _, n := range []int{r.IperfDownRuns, r.IperfUpRuns} {
			planned := 1
			if r.IperfSingle {
				planned = 2
			}
			runs, again = runs+n, again+max(n-planned, 0)
		}
		for _, lm := range []float64{r.IperfDownLateMS, r.IperfUpLateMS} {
			if late(lm) != "" {
				stillLate++
			}
		}
		for _, m := range r.Tools {
			runs += m.Runs
			again += max(m.Runs-1, 0)
			if late(m.LateMS) != "" {
				stillLate++
			}
		}
	}
	if runs > 0 {
		fmt.Printf("A run through which the link wrote a packet more than %v after its time (linkem.Link.TakeLateMax: the machine, not the link configured) was made again, up to %d runs, every tool alike: %d runs made again out of %d; %d kept still late (‡: how late).\n\n",
			o.maxLate, o.lateTries, again, runs, stillLate)
	}
	head := "| rate Mbit/s | RTT ms | loss | dir | payload Mbit/s | iperf3 Mbit/s |"
	sep := "|---|---|---|---|---|---|"
	for _, t := range tools {
		head += " " + t + " |"
		sep += "---|"
	}
	fmt.Println(head)
	fmt.Println(sep)
	for _, r := range rs {
		for _, dir := range []string{"down", "up"} {
			truth, p, altP, alt := r.IperfDown, r.IperfDownP, r.IperfDownAltP, r.IperfDownAlt
			if dir == "up" {
				truth, p, altP, alt = r.IperfUp, r.IperfUpP, r.IperfUpAltP, r.IperfUpAlt
			}
			ref := fmt.Sprintf("%.2f", truth)
			if dir == "down" {
				ref += late(r.IperfDownLateMS)
			} else {
				ref += late(r.IperfUpLateMS)
			}
			if p == 0 { // cells of runs before per-cell streams
				p = r.IperfStreams
			}
			switch {
			case altP > 0:
				ref += fmt.Sprintf(" (×%d; ×%d %.2f)", p, altP, alt)
			case o.iperfStreams == 0:
				ref += fmt.Sprintf(" (×%d)", p)
			}
			line := fmt.Sprintf("| %g | %g | %g %% | %s | %.2f | %s |", r.Rate, r.RTT, r.Loss*100, dir, payload(r.Rate), ref)
			for _, t := range tools {
				m, ran := r.Tools[t]
				if !ran {
					line += " not run |"
					continue
				}
				if m.Err != "" {
					line += " failed: " + strings.ReplaceAll(m.Err, "|", "/") + " |"
					continue
				}
				v := m.Down
				if dir == "up" {
					v = m.Up
				}
				line += fmt.Sprintf(" %.2f (%+.1f %%, %.1f s)%s |", v, errPct(v, truth), m.Secs, late(m.LateMS))
			}
			fmt.Println(line)
		}
	}
	// The goal, on the newest methodology.
	var lossless []float64
	worstLossless, worstLossy := 0.0, 0.0
	var slow []string
	missed := []string{}
	for _, r := range rs {
		m, ok := r.Tools[goalTool]
		if !ok {
			continue
		}
		if m.Err != "" {
			missed = append(missed, fmt.Sprintf("%g Mbit/s %g ms loss %g: failed", r.Rate, r.RTT, r.Loss))
			continue
		}
		for _, e := range []float64{math.Abs(errPct(m.Down, r.IperfDown)), math.Abs(errPct(m.Up, r.IperfUp))} {
			if r.Loss == 0 {
				lossless = append(lossless, e)
				worstLossless = math.Max(worstLossless, e)
			} else {
				worstLossy = math.Max(worstLossy, e)
			}
		}
		limit := 8.0
		if r.RTT >= 200 {
			limit = 10
		}
		if m.Secs > limit {
			slow = append(slow, fmt.Sprintf("%g Mbit/s %g ms loss %g: %.1f s > %g s", r.Rate, r.RTT, r.Loss, m.Secs, limit))
		}
	}
	ok := len(missed) == 0 && len(slow) == 0
	fmt.Printf("\ngoal, checked on %s (the other columns are for comparison):\n", goalTool)
	if len(lossless) > 0 {
		med := stats.Median(lossless)
		fmt.Printf("  lossless cells: median |error| %.2f %% (goal ≤ 3 %%), worst %.2f %% (goal ≤ 6 %%)\n", med, worstLossless)
		ok = ok && med <= 3 && worstLossless <= 6
	}
	if slices.ContainsFunc(rs, func(r cellResult) bool { return r.Loss > 0 }) {
		fmt.Printf("  lossy cells: worst |error| %.2f %% (goal ≤ 10 %%)\n", worstLossy)
		ok = ok && worstLossy <= 10
	}
	for _, s := range append(missed, slow...) {
		fmt.Printf("  %s\n", s)
	}
	// The second reference, for reading the table: the link's payload
	// capacity (1448 bytes of TCP payload in every 1500 at the rate),
	// which iperf3's long run stays below by its own dips.
	var capErr []float64
	for _, r := range rs {
		if m, ok := r.Tools[goalTool]; ok && m.Err == "" && r.Loss == 0 {
			c := payload(r.Rate)
			capErr = append(capErr, math.Abs(errPct(m.Down, c)), math.Abs(errPct(m.Up, c)))
		}
	}
	if len(capErr) > 0 {
		fmt.Printf("  (for reading: against the link's payload capacity, rate × 1448/1500, the lossless cells' median |error| is %.2f %%, worst %.2f %%)\n",
			stats.Median(capErr), slices.Max(capErr))
	}
	if ok {
		fmt.Println("  met")
	} else {
		fmt.Println("  MISSED")
	}
	return ok
}

// loaded compares ping during an iperf3 download with the speedtest's
// RTT under load, at 20 Mbit/s, 20 ms, a queue of 1000 packets.
func loaded(o *options) error {
	l, err := cellLink(o, 20, 20, 0, 1000)
	if err != nil {
		return err
	}
	defer l.Close()
	stopIperf, err := linkbench.Iperf3Server(l, iperfPort)
	if err != nil {
		return err
	}
	defer stopIperf()
	srv, err := startServers(&options{dir: o.dir}, l, "loaded")
	if err != nil {
		return err
	}
	defer srv.stop()
	idle, err := linkbench.Ping(context.Background(), l, 20, 100*time.Millisecond)
	if err != nil {
		return err
	}
	// ping during iperf3 with one stream (iperf3's default; the
	// reference) and with the matrix's streams.
	var rows []string
	pingMed := 0.0
	for _, streams := range []int{1, 2} {
		pings := make(chan []float64, 1)
		perr := make(chan error, 1)
		go func() {
			time.Sleep(3 * time.Second) // past iperf3's start
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			p, err := linkbench.Ping(ctx, l, 10*(o.iperfTime-2), 100*time.Millisecond)
			pings <- p
			perr <- err
		}()
		down, err := linkbench.Iperf3TCP(l, iperfPort, o.iperfTime, omitSecs(20), true, "-P", strconv.Itoa(streams))
		if err != nil {
			return err
		}
		p := <-pings
		if err := <-perr; err != nil {
			return err
		}
		med := linkbench.Quantile(p, 0.5)
		if pingMed == 0 {
			pingMed = med
		}
		rows = append(rows, fmt.Sprintf("| ping during iperf3 -R -P %d (%.2f Mbit/s; p10 %.1f, p90 %.1f) | %.2f | %+.1f %% |",
			streams, down.Mbps, linkbench.Quantile(p, 0.1), linkbench.Quantile(p, 0.9), med, errPct(med, pingMed)))
	}
	fmt.Printf("\nLoaded latency: 20 Mbit/s, RTT 20 ms, queue 1000 packets (%.0f ms at the rate); ping every 100 ms from a to b during an iperf3 -R run (one stream: the reference) against the RTT under load the speedtest reports for its download (test_keys.download.loaded_rtt_median_ms; goal: within 10 %% of ping's); load average %s.\n\n",
		1000*1500*8/20e6*1000, loadAvg())
	fmt.Println("| what | median RTT ms | error vs ping under iperf3 -P 1 |")
	fmt.Println("|---|---|---|")
	fmt.Printf("| ping, idle | %.2f | |\n", linkbench.Quantile(idle, 0.5))
	for _, r := range rows {
		fmt.Println(r)
	}
	for _, m := range o.methods {
		// ping also runs during the test's download (from 0.8 s after
		// the process started, for 2 s): whether the test's own pings see
		// the queue that ping sees under the same load.
		during := make(chan []float64, 1)
		go func() {
			time.Sleep(800 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			p, _ := linkbench.Ping(ctx, l, 20, 100*time.Millisecond)
			during <- p
		}()
		r := ourTest(o, l, "speedtest", m, "loaded")
		if d := <-during; len(d) > 0 {
			fmt.Printf("| ping during speedtest v%d's download (0.8 to 2.8 s after its start; p10 %.1f, p90 %.1f) | %.2f | %+.1f %% |\n",
				m, linkbench.Quantile(d, 0.1), linkbench.Quantile(d, 0.9), linkbench.Quantile(d, 0.5), errPct(linkbench.Quantile(d, 0.5), pingMed))
		}
		switch {
		case r.Err != "":
			fmt.Printf("| speedtest v%d | failed: %s | |\n", m, strings.ReplaceAll(r.Err, "|", "/"))
		case r.LoadedDown == 0:
			fmt.Printf("| speedtest v%d (download %.2f Mbit/s) | not measured by this methodology | |\n", m, r.Down)
		default:
			fmt.Printf("| speedtest v%d (download %.2f Mbit/s) | %.2f | %+.1f %% |\n", m, r.Down, r.LoadedDown, errPct(r.LoadedDown, pingMed))
		}
	}
	return nil
}

func queueDesc(q int) string {
	if q == 0 {
		return fmt.Sprintf("one BDP, at least %d packets and %v at the rate", linkem.MinQueue, linkem.MinQueueTime)
	}
	return fmt.Sprintf("%d packets", q)
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}
