package analytics_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/analytics/simulate"
	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/internal/stats"
	"github.com/neubot/neubot/schemas"
)

// TestGolden: a simulated fleet with known plan mixes per ISP goes through
// the real collector into ClickHouse; the daily distributions recover each
// ISP's median download over its agents' votes (each the median of the
// agent's day, by internal/stats: the same method, so to 1e-9), a mode
// within one histogram bucket of every plan that holds at least 10% of an
// ISP's agents, and exactly the tests that the paper's goodset rule
// implies.
func TestGolden(t *testing.T) {
	col := collectortest.Start(t)
	start := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	fleet, err := simulate.NewFleet(simulate.Config{Agents: 600, Start: start, Days: 2, TestsPerAgentDay: 8, Seed: 2011, IPDB: collectortest.IPDB(t)})
	if err != nil {
		t.Fatal(err)
	}
	// The truth, per ISP and day, from the records themselves.
	type key struct {
		asn uint32
		day string
	}
	downs := map[key][]float64{}
	mine := map[key]map[string][]float64{} // per ISP-day, each agent's downloads
	inGoodset := map[key]int{}
	planOf := map[string]float64{} // agent -> nominal download
	asnOf := map[string]uint32{}
	for _, a := range fleet.Agents() {
		planOf[a.ID], asnOf[a.ID] = a.Plan.DownMbps, a.ISP.ASN
	}
	planTests := map[key]map[float64]int{}
	err = fleet.Records(func(r *schemas.Record) error {
		k := r.TestKeys.(*schemas.Speedtest)
		kk := key{asnOf[r.AgentID], r.StartTime.UTC().Format(time.DateOnly)}
		downs[kk] = append(downs[kk], k.Download.GoodputMbps)
		if mine[kk] == nil {
			mine[kk] = map[string][]float64{}
		}
		mine[kk][r.AgentID] = append(mine[kk][r.AgentID], k.Download.GoodputMbps)
		if k.Download.GoodputMbps < 20 && k.RTTMedianMS < 100 {
			inGoodset[kk]++
		}
		if planTests[kk] == nil {
			planTests[kk] = map[float64]int{}
		}
		if len(mine[kk][r.AgentID]) == 1 {
			planTests[kk][planOf[r.AgentID]]++ // agents per plan
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := fleet.Submit(context.Background(), col.Server.URL, 1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	col.WaitLoaded(t, time.Minute)
	job := &analytics.Job{Conn: col.Conn}
	days, err := job.RunPending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records through the collector, %d days computed", n, days)

	checked := 0
	for kk, ds := range downs {
		if len(ds) < 100 {
			continue // too few tests for a stable statement
		}
		var p50 float64
		var modes []float64
		var tests, total, agents uint64
		err := col.Conn.QueryRow(context.Background(), `SELECT p50, modes, tests, tests_total, agents FROM analytics_distributions
			WHERE day = toDate(?) AND scope = 'asn' AND key = ? AND goodset = 'all' AND metric = 'download_mbps' AND synthetic = 1`,
			kk.day, fmt.Sprint(kk.asn)).Scan(&p50, &modes, &tests, &total, &agents)
		if err != nil {
			t.Fatalf("AS%d %s: %v", kk.asn, kk.day, err)
		}
		var votes []float64
		for _, xs := range mine[kk] {
			votes = append(votes, stats.Median(xs))
		}
		want := stats.Median(votes)
		if math.Abs(p50-want) > 1e-9*want || int(tests) != len(ds) || int(agents) != len(votes) {
			t.Errorf("AS%d %s: median %.3f over %d tests of %d agents; truth %.3f over %d of %d", kk.asn, kk.day, p50, tests, agents, want, len(ds), len(votes))
		}
		for plan, c := range planTests[kk] {
			if float64(c) < 0.10*float64(len(votes)) {
				continue
			}
			expect := plan * 0.935 // the fleet's line efficiency, 0.90-0.97
			found := false
			for _, m := range modes {
				if m > expect/1.26 && m < expect*1.26 {
					found = true
				}
			}
			if !found {
				t.Errorf("AS%d %s: plan %g Mbit/s (%d of %d tests) has no mode near %.1f; modes %v", kk.asn, kk.day, plan, c, len(ds), expect, modes)
			}
		}
		var gs uint64
		if err := col.Conn.QueryRow(context.Background(), `SELECT tests FROM analytics_distributions
			WHERE day = toDate(?) AND scope = 'asn' AND key = ? AND goodset = 'paper2011' AND metric = 'download_mbps' AND synthetic = 1`,
			kk.day, fmt.Sprint(kk.asn)).Scan(&gs); err != nil && inGoodset[kk] > 0 {
			t.Fatalf("AS%d %s goodset: %v", kk.asn, kk.day, err)
		}
		if int(gs) != inGoodset[kk] {
			t.Errorf("AS%d %s: %d tests in the paper's goodset, the rule implies %d", kk.asn, kk.day, gs, inGoodset[kk])
		}
		t.Logf("AS%-6d %s: %4d tests, median %8.3f (truth %8.3f), goodset %5.1f%% (truth %5.1f%%), modes %v",
			kk.asn, kk.day, len(ds), p50, want, 100*float64(gs)/float64(len(ds)), 100*float64(inGoodset[kk])/float64(len(ds)), modes)
		checked++
	}
	if checked < 8 {
		t.Fatalf("only %d ISP-days had enough tests to check", checked)
	}
}
