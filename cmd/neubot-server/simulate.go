package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/neubot/neubot/analytics/simulate"
)

func cmdSimulate(args []string) error {
	fs := newFlagSet("simulate", "Run a fleet of simulated volunteers on real ISPs' prefixes against the collector:\n"+
		"every test of the period is posted as a synthetic record (synthetic=1). The same flags give the same records.")
	collectorURL := fs.String("collector", "http://"+defaultCollectorAddr, "collector base URL")
	agents := fs.Int("agents", 1000, "number of simulated agents")
	days := fs.Int("days", 7, "length of the period, days")
	perDay := fs.Float64("tests-per-day", 12, "mean number of tests per agent per day")
	seed := fs.Uint64("seed", 1, "seed of the simulation")
	start := fs.String("start", "", "first day of the period, YYYY-MM-DD, UTC (default: --days days before today)")
	batch := fs.Int("batch", simulate.DefaultBatch, "records per request")
	ipdb := addIPDBFlag(fs)
	lf := addLogFlags(fs, "text")
	log, err := parseLogged(fs, args, lf)
	if err != nil {
		return err
	}
	cfg := simulate.Config{Agents: *agents, Days: *days, TestsPerAgentDay: *perDay, Seed: *seed, Logger: log}
	if *start != "" {
		if cfg.Start, err = time.Parse(time.DateOnly, *start); err != nil {
			return fmt.Errorf("--start: want YYYY-MM-DD: %w", err)
		}
	}
	if cfg.IPDB, err = openIPDB(*ipdb, log); err != nil {
		return err
	}
	fleet, err := simulate.NewFleet(cfg)
	if err != nil {
		return err
	}
	from, to := fleet.Period()
	log.Info("simulating", "agents", *agents, "from", from.Format(time.RFC3339), "to", to.Format(time.RFC3339),
		"tests_per_day", *perDay, "seed", *seed, "collector", *collectorURL)

	ctx, cancel := signalContext()
	defer cancel()
	begin := time.Now()
	var shown time.Time
	progress := func(done, total int) {
		if now := time.Now(); now.Sub(shown) >= 200*time.Millisecond || done == total {
			shown = now
			fmt.Fprintf(os.Stderr, "\r%s simulate: %d/%d records acknowledged (%.0f%%), %.0f records/s ",
				prog, done, total, 100*float64(done)/float64(max(total, 1)), float64(done)/now.Sub(begin).Seconds())
		}
	}
	n, err := fleet.Submit(ctx, *collectorURL, *batch, progress)
	if !shown.IsZero() {
		fmt.Fprintln(os.Stderr)
	}
	took := time.Since(begin)
	fmt.Printf("%s simulate: %d records acknowledged by %s in %s (%.0f records/s)\n",
		prog, n, *collectorURL, took.Round(time.Millisecond), float64(n)/took.Seconds())
	fmt.Printf("  period %s to %s, seed %d, %d agents, %g tests per agent per day\n",
		from.Format(time.RFC3339), to.Format(time.RFC3339), *seed, *agents, *perDay)
	printFleet(fleet)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("interrupted: %d records acknowledged", n)
	}
	return err
}

// printFleet prints the agents of each ISP and plan.
func printFleet(f *simulate.Fleet) {
	isps := f.ISPs()
	agents := make(map[uint32]int)
	plans := make(map[uint32]map[string]int)
	for _, a := range f.Agents() {
		agents[a.ISP.ASN]++
		if plans[a.ISP.ASN] == nil {
			plans[a.ISP.ASN] = map[string]int{}
		}
		plans[a.ISP.ASN][a.Plan.Name]++
	}
	for _, isp := range isps {
		if agents[isp.ASN] == 0 {
			continue
		}
		var mix []string
		for _, p := range isp.Plans {
			if k := plans[isp.ASN][p.Name]; k > 0 {
				mix = append(mix, fmt.Sprintf("%s %d", p.Name, k))
			}
		}
		fmt.Printf("  AS%-6d %-2s %-20s %6d agents  %s\n", isp.ASN, isp.Country, isp.Name, agents[isp.ASN], strings.Join(mix, ", "))
	}
}
