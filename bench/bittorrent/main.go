// Command bittorrent measures the BitTorrent differential test where the
// truth is known: in a network namespace it creates, lo is shaped by htb at
// a link rate, and each scenario plays one policy deployed today (policy.go):
// a neutral link, port-based throttling, host-based throttling, payload-based
// throttling by a stateful DPI (a u32 filter matching the BitTorrent
// handshake at its payload offset, then a rule for the connection), a
// byte-count trigger on port 6881 (with the option for longer flows), and
// resets injected on BitTorrent connections. The real test server (three
// addresses, ports 6881, 9776 and 443) and the real client run there as
// separate processes; the runs of the scenarios alternate. The table gives,
// per scenario, how often the test gave the right outcome with the right
// attribution, and how long it took.
//
// It needs root (ip netns, tc, ss -K). It exits 1 when a target is missed:
// the right outcome and attribution in at least 90% of a policy's runs, at
// most 5% false alarms (differentiation or blocked) on the neutral link, at
// most 90 s per test.
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/neubot/neubot/agent/bittorrent"
	"github.com/neubot/neubot/agent/replay"
	"github.com/neubot/neubot/schemas"
)

func main() {
	if role() {
		return
	}
	runs := flag.Int("runs", 10, "tests per policy")
	nullRuns := flag.Int("null-runs", 20, "tests on the neutral link")
	sniNullRuns := flag.Int("sni-null-runs", -1, "replay tests on the neutral link when the sni policy is played (-1: half of -null-runs)")
	policies := flag.String("policies", "port,payload,host,sni,bytes,reset", "policies to play, comma-separated (and the neutral link)")
	link := flag.Float64("link", 20, "link rate, Mbit/s")
	share := flag.Float64("share", 0.2, "share of the link left to the slow class")
	reps := flag.Int("reps", 0, "repetitions of each kind of flow per direction (0: the default methodology)")
	flow := flag.Duration("flow", 0, "flow duration (0: the default methodology)")
	longFlow := flag.Duration("long-flow", 0, "longest flow of the byte-count scenario (0: bittorrent.Triggered's, 8 s)")
	knee := flag.Int64("knee-bytes", -1, "the byte-count scenario's flows run until they carried this many bytes, then as long again (-1: bittorrent.Triggered's, 4 MiB; 0: for -long-flow)")
	bytesNullRuns := flag.Int("bytes-null-runs", -1, "tests with the byte-count scenario's methodology on the neutral link when the bytes policy is played (-1: half of -null-runs)")
	duels := flag.Bool("duels", false, "run methodology 3 (flows two at a time, agent/bittorrent Config.Duels)")
	trigger := flag.Int64("trigger-bytes", triggerBytes, "bytes after which the byte-count policy throttles a connection")
	crossTraffic := flag.Bool("cross", false, "add on-off cross traffic (one TCP flow on another port, 0.5-3 s on, 0.5-3 s off)")
	records := flag.String("records", "", "also write every record to this file, one JSON line each, with the scenario")
	queueMs := flag.Float64("queue-ms", 100, "each htb class's queue, milliseconds of its rate (0: lo's 1000 packets)")
	mode := flag.String("topology", modeTwoStage, "two-stage (server, policy box, shared access link, client: four namespaces) or lo (one namespace, the policy's classes on lo)")
	parallel := flag.Int("parallel", 1, "independent namespaces (each with its own server, cross traffic and policy) running tests at once")
	again := flag.Bool("redecide", false, "decide again the records of the files given as arguments (written by -records) and print the tally; no network")
	flag.Parse()
	if *again {
		if err := redecide(flag.Args()); err != nil {
			fmt.Fprintln(os.Stderr, "bench/bittorrent:", err)
			os.Exit(1)
		}
		return
	}
	triggerBytes = *trigger
	if *records != "" {
		f, err := os.Create(*records)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/bittorrent:", err)
			os.Exit(1)
		}
		defer f.Close()
		recordsTo = f
	}
	base := bittorrent.Config{Repetitions: *reps, FlowDuration: *flow, Duels: *duels}
	// The byte-count scenario: bittorrent.Triggered, methodology 2's flows
	// one after the other, download only, 4 kinds x 3 repetitions, each
	// flow until it carried 4 MiB and then as long again.
	long := bittorrent.Triggered()
	if *knee >= 0 {
		long.KneeBytes = *knee
	}
	if *reps > 0 {
		long.Repetitions = *reps
	}
	if *longFlow > 0 {
		long.FlowDuration = *longFlow
	}
	var scs []*scenario
	if *nullRuns > 0 {
		scs = append(scs, &scenario{policy: policyNone, cfg: base, runs: *nullRuns, want: schemas.OutcomeNone})
	}
	for _, p := range strings.Split(*policies, ",") {
		sc := &scenario{policy: p, cfg: base, runs: *runs, want: schemas.OutcomeDifferentiation}
		switch p {
		case policyPort:
			sc.attr = schemas.AttributionPort
		case policyPayload:
			sc.attr = schemas.AttributionPayload
		case policyHost:
			sc.attr = schemas.AttributionHost
		case policyBytes:
			sc.attr, sc.cfg = schemas.AttributionPort, long
			n := *bytesNullRuns
			if n < 0 {
				n = *nullRuns / 2
			}
			if n > 0 {
				scs = append(scs, &scenario{policy: policyBytesNone, cfg: long, runs: n, want: schemas.OutcomeNone})
			}
		case policySNI:
			sc.attr = schemas.AttributionPayload
			n := *sniNullRuns
			if n < 0 {
				n = *nullRuns / 2
			}
			if n > 0 {
				scs = append(scs, &scenario{policy: policySNINone, runs: n, want: schemas.OutcomeNone})
			}
		case policyReset:
			sc.attr, sc.want = schemas.AttributionPayload, schemas.OutcomeBlocked
		case "":
			continue
		default:
			fmt.Fprintf(os.Stderr, "bench/bittorrent: unknown policy %q\n", p)
			os.Exit(2)
		}
		if sc.runs > 0 {
			scs = append(scs, sc)
		}
	}
	if *mode != modeTwoStage && *mode != modeLo {
		fmt.Fprintf(os.Stderr, "bench/bittorrent: unknown topology %q\n", *mode)
		os.Exit(2)
	}
	ok, err := bench(scs, shaping{LinkMbps: *link, Share: *share, QueueMs: *queueMs}, *mode, *crossTraffic, max(1, *parallel), os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/bittorrent:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

// recordsTo receives every record when -records is given.
var recordsTo *os.File

// scenario is one policy, the methodology it is tested with, the outcome
// and attribution that are right, and its tally.
type scenario struct {
	policy     string
	cfg        bittorrent.Config
	runs       int
	want, attr string
	results    []result
	outcomes   map[string]int
	right      int
	attrs      map[string]int
	flowErrors int
	flows      int
}

// tally counts one run's result and logs it.
func (s *scenario) tally(r result, log *os.File) {
	i := len(s.results)
	s.results = append(s.results, r)
	if recordsTo != nil {
		fmt.Fprintf(recordsTo, "{\"policy\":%q,\"record\":%s}\n", s.policy, r.Record)
	}
	s.outcomes[r.outcome]++
	s.attrs[r.attribution]++
	if r.outcome == s.want && r.attribution == s.attr {
		s.right++
	}
	if rp := r.replay; rp != nil {
		s.flows = len(rp.Flows)
		fmt.Fprintf(log, "run %d/%d %-8s: %-15s %-8s (replay %s, SNI %s) in %.1f s\n", i+1, s.runs, s.policy, r.outcome, r.attribution, rp.Trace, rp.SNI, r.Seconds)
		if c := rp.Comparison; c != nil {
			fmt.Fprintf(log, "    original vs inverted: %.2f vs %.2f Mbit/s, D %.2f p %.2g, %d/%d pairs slower: %s\n", c.MedianMbps, c.ControlMedian, c.KSD, c.KSP, c.RepsSlower, c.Reps, c.Outcome)
		}
		return
	}
	k := r.keys
	s.flows = len(k.Flows)
	for _, f := range k.Flows {
		if f.Error != "" || f.ServerError != "" {
			s.flowErrors++
		}
	}
	fmt.Fprintf(log, "run %d/%d %-8s: %-15s %-8s (download %s %s, upload %s %s) in %.1f s\n", i+1, s.runs, s.policy,
		k.Outcome, k.Attribution, k.DownloadOutcome, k.DownloadAttribution, k.UploadOutcome, k.UploadAttribution, r.Seconds)
	for _, c := range k.Comparisons {
		if c.Outcome != schemas.OutcomeNone || debug {
			fmt.Fprintf(log, "    %s %s vs %s: %.2f vs %.2f Mbit/s, D %.2f p %.2g, %d/%d pairs slower: %s\n", c.Direction, c.Tested, c.Control,
				c.MedianMbps, c.ControlMedian, c.KSD, c.KSP, c.RepsSlower, c.Reps, c.Outcome)
		}
	}
	for _, b := range k.Blocked {
		fmt.Fprintf(log, "    blocked %s %s: %s in %d of %d flows\n", b.Direction, b.Kind, b.Failure, b.Failed, b.Flows)
	}
}

func (s *scenario) name() string {
	switch s.policy {
	case policyBytes, policyBytesNone:
		dirs := strings.Join(s.cfg.Directions, "+")
		if dirs == "" {
			dirs = "both directions"
		}
		how := fmt.Sprintf("%d x %d flows of %v, %s", s.cfg.Repetitions, len(s.cfg.Kinds), s.cfg.FlowDuration, dirs)
		if s.cfg.KneeBytes > 0 {
			how = fmt.Sprintf("%d x %d flows to %.1f MiB and as long again, %v at most, %s", s.cfg.Repetitions, len(s.cfg.Kinds), float64(s.cfg.KneeBytes)/(1<<20), s.cfg.FlowDuration, dirs)
		}
		if s.policy == policyBytesNone {
			return "none, byte-count scenario's test (" + how + ")"
		}
		return fmt.Sprintf("bytes (after %.0f MB; %s)", float64(triggerBytes)/1e6, how)
	case policySNI:
		return fmt.Sprintf("sni (replay tls-video, %s)", replay.DefaultSNI)
	case policySNINone:
		return "none, replay test (tls-video)"
	}
	return s.policy
}

// set is one namespace with its server (and cross traffic) running tests.
type set struct {
	ns      *netns
	helpers []*helper
}

func (st *set) close() {
	for i := len(st.helpers) - 1; i >= 0; i-- {
		st.helpers[i].stop()
	}
	st.ns.close()
}

func newSet(tag, mode string, sh shaping, crossTraffic bool) (*set, error) {
	ns, err := newNetns(tag, mode)
	if err != nil {
		return nil, err
	}
	st := &set{ns: ns}
	if err := ns.shape(sh); err != nil {
		st.close()
		return nil, err
	}
	roles := [][2]string{{ns.Server, "server"}}
	if crossTraffic {
		roles = append(roles, [2]string{ns.Server, "cross"})
		if mode == modeTwoStage {
			roles = append(roles, [2]string{ns.Client, "cross-client"})
		}
	}
	for _, r := range roles {
		h, err := ns.start(r[0], r[1])
		if err != nil {
			st.close()
			return nil, err
		}
		st.helpers = append(st.helpers, h)
	}
	return st, nil
}

// bench alternates the scenarios' runs over parallel sets and prints the
// table; ok reports whether the targets were met.
func bench(scs []*scenario, sh shaping, mode string, crossTraffic bool, parallel int, log *os.File) (ok bool, err error) {
	if os.Geteuid() != 0 {
		return false, fmt.Errorf("needs root for ip netns, tc and ss -K")
	}
	t0 := time.Now()
	load0, _ := os.ReadFile("/proc/loadavg")
	var sets []*set
	defer func() {
		for _, st := range sets {
			st.close()
		}
	}()
	for i := 0; i < parallel; i++ {
		st, err := newSet(fmt.Sprintf("b%d", i), mode, sh, crossTraffic)
		if err != nil {
			return false, err
		}
		sets = append(sets, st)
	}
	most := 0
	for _, s := range scs {
		s.outcomes, s.attrs = map[string]int{}, map[string]int{}
		most = max(most, s.runs)
	}
	// The runs, alternating between scenarios, taken in turn by the sets.
	var queue []*scenario
	for i := 0; i < most; i++ {
		for _, s := range scs {
			if i < s.runs {
				queue = append(queue, s)
			}
		}
	}
	var mu sync.Mutex
	var firstErr error
	next := 0
	var wg sync.WaitGroup
	for _, st := range sets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next >= len(queue) || firstErr != nil {
					mu.Unlock()
					return
				}
				s := queue[next]
				next++
				mu.Unlock()
				r, err := st.ns.runPolicy(s.policy, sh, s.cfg)
				mu.Lock()
				if err != nil {
					firstErr = fmt.Errorf("%s: %w", st.ns.Server, err)
				} else {
					s.tally(r, log)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return false, firstErr
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	wall := time.Since(t0)
	load1, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("\n%d namespace set(s) in parallel; wall %.0f s; CPU of the bench's processes %.0f s (%.2f cores on average); load average (1 min) %s at the start, %s at the end.\n",
		parallel, wall.Seconds(), cpu.Seconds(), cpu.Seconds()/wall.Seconds(), strings.Fields(string(load0))[0], strings.Fields(string(load1))[0])
	version := schemas.BitTorrentVersion
	if len(scs) > 0 && scs[0].cfg.Duels {
		version = schemas.BitTorrentVersionDuels
	}
	fmt.Printf("\nBitTorrent differential test (methodology %s); test server on 3 addresses, ports 6881, 9776, 443; runs alternate between scenarios.\n", version)
	if mode == modeTwoStage {
		fmt.Printf("Two-stage topology: server -> policy box (htb: throttled flows %g Mbit/s, the rest %g Mbit/s) -> access link shared by every flow (htb, %g Mbit/s, %g ms queue) -> client, both directions, veth, MTU 1500.\n",
			sh.LinkMbps*sh.Share, 10*sh.LinkMbps, sh.LinkMbps, sh.QueueMs)
		if crossTraffic {
			fmt.Println("With on-off cross traffic: one TCP connection from a host of its own on the server's side, each direction 0.5-3 s on, 0.5-3 s off, through the shared access link.")
		}
	} else {
		fmt.Printf("Topology lo: lo in a network namespace shaped by htb at %g Mbit/s (MTU 1500), slow class %g Mbit/s with its own queue.\n", sh.LinkMbps, sh.LinkMbps*sh.Share)
		if crossTraffic {
			fmt.Println("With on-off cross traffic: one TCP flow on port 5001 sharing the link's fast class, 0.5-3 s on, 0.5-3 s off.")
		}
	}
	fmt.Println()
	fmt.Println("| policy | runs | right (outcome + attribution) | differentiation | blocked | none | inconclusive | attributions | flows | test time median / max s |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	ok = true
	for _, s := range scs {
		var secs []float64
		for _, r := range s.results {
			secs = append(secs, r.Seconds)
		}
		sort.Float64s(secs)
		var attrs []string
		for a, n := range s.attrs {
			if a == "" {
				a = "-"
			}
			attrs = append(attrs, fmt.Sprintf("%s %d", a, n))
		}
		sort.Strings(attrs)
		want := s.want
		if s.attr != "" {
			want += " / " + s.attr
		}
		fmt.Printf("| %s | %d | %d (%s) | %d | %d | %d | %d | %s | %d | %.1f / %.1f |\n", s.name(), len(s.results), s.right, want,
			s.outcomes[schemas.OutcomeDifferentiation], s.outcomes[schemas.OutcomeBlocked], s.outcomes[schemas.OutcomeNone], s.outcomes[schemas.OutcomeInconclusive],
			strings.Join(attrs, ", "), s.flows, schemas.Median(secs), secs[len(secs)-1])
		if s.policy == policyNone || s.policy == policySNINone || s.policy == policyBytesNone {
			if alarms := s.outcomes[schemas.OutcomeDifferentiation] + s.outcomes[schemas.OutcomeBlocked]; alarms*20 > len(s.results) {
				ok = false
			}
		} else if s.right*10 < len(s.results)*9 {
			ok = false
		}
		if secs[len(secs)-1] > 90 {
			ok = false
		}
	}
	fmt.Printf("\ntargets: the right outcome and attribution in >= 90%% of a policy's runs, <= 5%% false alarms on the neutral link, every test <= 90 s: ")
	if ok {
		fmt.Println("met")
	} else {
		fmt.Println("MISSED")
	}
	return ok, nil
}
