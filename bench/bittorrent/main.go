// Command bittorrent measures the BitTorrent differential test where the
// truth is known: in a network namespace it creates, lo is shaped by htb at
// a link rate, and in the throttled scenario a u32 filter puts every packet
// from or to the BitTorrent port into a class limited to a share of the
// link. The real test server and the real client (agent/bittorrent) run
// there as separate processes; the runs of the two scenarios alternate.
// The table gives, per scenario, how often the test said differentiation,
// none and inconclusive, and how long it took; the false-positive rate is
// the share of differentiation without throttling.
//
// It needs root (ip netns, tc). It exits 1 when a target is missed: at
// least 90% differentiation with throttling, 90% none without, at most
// 60 s per test.
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"

	"github.com/neubot/neubot/agent/bittorrent"
	"github.com/neubot/neubot/schemas"
)

func main() {
	if role() {
		return
	}
	runs := flag.Int("runs", 10, "tests per scenario")
	link := flag.Float64("link", 20, "link rate, Mbit/s")
	share := flag.Float64("share", 0.2, "share of the link left to the throttled class")
	reps := flag.Int("reps", 0, "repetitions of each kind of flow per direction (0: the default methodology)")
	flow := flag.Duration("flow", 0, "flow duration (0: the default methodology)")
	sample := flag.Duration("sample", 0, "sampling period (0: the default methodology)")
	warmup := flag.Duration("warmup", 0, "warm-up left out of each flow (0: the default methodology)")
	nullOnly := flag.Bool("null-only", false, "only the scenario without throttling (to measure the false-positive rate)")
	crossTraffic := flag.Bool("cross", false, "add on-off cross traffic (one TCP flow on another port, 0.5-3 s on, 0.5-3 s off)")
	records := flag.String("records", "", "also write every record to this file, one JSON line each, with the scenario (for analyses of other decision rules)")
	flag.Parse()
	if *records != "" {
		f, err := os.Create(*records)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/bittorrent:", err)
			os.Exit(1)
		}
		defer f.Close()
		recordsTo = f
	}
	cfg := bittorrent.Config{Repetitions: *reps, FlowDuration: *flow, SampleEvery: *sample, Warmup: *warmup}
	ok, err := bench(*runs, shaping{LinkMbps: *link, Share: *share}, cfg, *nullOnly, *crossTraffic, os.Stderr)
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

// scenario is the tally of one scenario.
type scenario struct {
	name     string
	results  []result
	outcomes map[string]int
	// false positives and negatives per comparison (direction/control).
	perComparison map[string]map[string]int
	flowErrors    int
}

// bench alternates runs of the throttled and the unthrottled scenario and
// prints the table; ok reports whether the targets were met.
func bench(runs int, sh shaping, cfg bittorrent.Config, nullOnly, crossTraffic bool, log *os.File) (ok bool, err error) {
	if os.Geteuid() != 0 {
		return false, fmt.Errorf("needs root for ip netns and tc")
	}
	ns, err := newNetns("bench")
	if err != nil {
		return false, err
	}
	defer ns.close()
	if err := ns.shape(sh); err != nil {
		return false, err
	}
	srv, err := ns.startServer()
	if err != nil {
		return false, err
	}
	defer srv.stop()
	if crossTraffic {
		ct, err := ns.start("cross")
		if err != nil {
			return false, err
		}
		defer ct.stop()
	}
	sc := map[bool]*scenario{
		true:  {name: fmt.Sprintf("throttled: BitTorrent port at %g%% of the link", sh.Share*100), outcomes: map[string]int{}, perComparison: map[string]map[string]int{}},
		false: {name: "not throttled", outcomes: map[string]int{}, perComparison: map[string]map[string]int{}},
	}
	kinds := []bool{true, false}
	if nullOnly {
		kinds = []bool{false}
	}
	for i := 0; i < runs; i++ {
		for _, throttled := range kinds {
			sh.Throttled = throttled
			if err := ns.shape(sh); err != nil {
				return false, err
			}
			r, err := ns.runClient(cfg)
			if err != nil {
				return false, err
			}
			s := sc[throttled]
			s.results = append(s.results, r)
			if recordsTo != nil {
				fmt.Fprintf(recordsTo, "{\"throttled\":%v,\"record\":%s}\n", throttled, r.Record)
			}
			s.outcomes[r.keys.Outcome]++
			for _, f := range r.keys.Flows {
				if f.Error != "" {
					s.flowErrors++
					fmt.Fprintf(log, "  flow %d (%s %s): %d samples, error %s\n", f.Index, f.Kind, f.Direction, len(f.Samples), f.Error)
				}
			}
			for _, c := range r.keys.Comparisons {
				key := c.Direction + " vs " + c.Control
				if s.perComparison[key] == nil {
					s.perComparison[key] = map[string]int{}
				}
				s.perComparison[key][c.Outcome]++
			}
			fmt.Fprintf(log, "run %d/%d %-13s: %-15s (download %s, upload %s) in %.1f s\n", i+1, runs, map[bool]string{true: "throttled", false: "not throttled"}[throttled],
				r.keys.Outcome, r.keys.DownloadOutcome, r.keys.UploadOutcome, r.Seconds)
		}
	}
	k0 := sc[kinds[0]].results[0].keys
	if crossTraffic {
		fmt.Printf("\nWith on-off cross traffic: one TCP flow on port 5001 sharing the link, 0.5-3 s on, 0.5-3 s off.")
	}
	fmt.Printf("\nBitTorrent differential test: lo in a network namespace shaped by htb at %g Mbit/s (MTU 1500); throttled: a u32 filter on port %d (source or destination) into a class of %g Mbit/s. %d runs per scenario, alternating; each run: %d flows of %.1f s, throughput sampled every %.0f ms, first %.0f ms of a flow left out; KS alpha %g, threshold %g%%.\n\n",
		sh.LinkMbps, k0.BitTorrentPort, sh.LinkMbps*sh.Share, runs, len(k0.Flows), k0.FlowDurationS, k0.SampleEveryS*1000, k0.WarmupS*1000,
		k0.Comparisons[0].Alpha, k0.Comparisons[0].ThresholdPct)
	fmt.Println("| scenario | runs | differentiation | none | inconclusive | test time median / max s | BT median Mbit/s (download) | neutral-port median Mbit/s (download) | flows ended early |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	ok = true
	for _, throttled := range kinds {
		s := sc[throttled]
		var secs, bt, neutral []float64
		for _, r := range s.results {
			secs = append(secs, r.Seconds)
			for _, c := range r.keys.Comparisons {
				if c.Direction == schemas.DirDownload && c.Control == schemas.FlowNeutral {
					bt, neutral = append(bt, c.MedianMbps), append(neutral, c.ControlMedian)
				}
			}
		}
		sort.Float64s(secs)
		fmt.Printf("| %s | %d | %d | %d | %d | %.1f / %.1f | %.2f | %.2f | %d |\n", s.name, len(s.results),
			s.outcomes[schemas.OutcomeDifferentiation], s.outcomes[schemas.OutcomeNone], s.outcomes[schemas.OutcomeInconclusive],
			schemas.Median(secs), secs[len(secs)-1], schemas.Median(bt), schemas.Median(neutral), s.flowErrors)
		want := schemas.OutcomeNone
		if throttled {
			want = schemas.OutcomeDifferentiation
		}
		if s.outcomes[want]*10 < len(s.results)*9 || secs[len(secs)-1] > 60 {
			ok = false
		}
	}
	fmt.Println("\nPer comparison (differentiation / none / inconclusive):")
	fmt.Println()
	fmt.Println("| comparison | throttled | not throttled |")
	fmt.Println("|---|---|---|")
	var keys []string
	for k := range sc[false].perComparison {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a, b := sc[true].perComparison[k], sc[false].perComparison[k]
		fmt.Printf("| %s | %d / %d / %d | %d / %d / %d |\n", k,
			a[schemas.OutcomeDifferentiation], a[schemas.OutcomeNone], a[schemas.OutcomeInconclusive],
			b[schemas.OutcomeDifferentiation], b[schemas.OutcomeNone], b[schemas.OutcomeInconclusive])
	}
	fp := sc[false].outcomes[schemas.OutcomeDifferentiation]
	fmt.Printf("\nfalse positives (differentiation without throttling): %d of %d tests\n", fp, len(sc[false].results))
	fmt.Printf("targets: differentiation in >= 90%% of throttled runs, none in >= 90%% of unthrottled runs, every test <= 60 s: ")
	if ok {
		fmt.Println("met")
	} else {
		fmt.Println("MISSED")
	}
	return ok, nil
}
