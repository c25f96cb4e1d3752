// Command analytics measures the full daily analytics job over a day of
// 10,000,000 measurements against hand-written ClickHouse queries computing
// the same aggregates over the same rows, side by side in one run, and
// prints the ratio. Rows are generated inside ClickHouse (deterministic
// hashes of the row number): 10 ISPs, 833,333 agents, plan speeds from 1 to
// 1000 Mbit/s.
//
// With --data DIR the rows are kept in DIR: `--generate-only` fills it (in
// parts of 1,000,000 rows, resuming where a previous call stopped, for at
// most --gen-budget), and a later run measures over them.
package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/bench/internal/benchrows"
	"github.com/neubot/neubot/schemas"
)

func main() {
	n := flag.Int("rows", 10_000_000, "measurements in the day")
	printSQL := flag.Bool("print-sql", false, "print the SQL that generates the rows and exit")
	data := flag.String("data", "", "keep ClickHouse's data in this directory (generate the rows once, measure many times); empty: a temporary directory")
	genOnly := flag.Bool("generate-only", false, "generate the rows (with --data) and exit")
	budget := flag.Duration("gen-budget", 0, "stop generating after this long (0: no limit); a later call resumes")
	only := flag.String("only", "", "job or hand: time only the daily job or only the hand-written queries (to split a long run; the ratio is then across runs); empty: both, side by side")
	perAgent := flag.Bool("per-agent", false, "also time the agent scope (analytics.Job.PerAgent, off in the daily job) and its hand-written query")
	goodsets := flag.String("hand-goodsets", "", "with --only hand: the goodsets (comma-separated names) whose hand-written queries run (to split a long run); empty: all")
	flag.Parse()
	if *only != "" && *only != "job" && *only != "hand" {
		fmt.Fprintln(os.Stderr, "bench/analytics: --only must be job or hand")
		os.Exit(2)
	}
	if *printSQL {
		fmt.Println(benchrows.SQL(*n, day, true))
		return
	}
	if *genOnly && *data == "" {
		fmt.Fprintln(os.Stderr, "bench/analytics: --generate-only needs --data")
		os.Exit(2)
	}
	var gs []analytics.Goodset
	for _, g := range analytics.Goodsets {
		if *goodsets == "" || slices.Contains(strings.Split(*goodsets, ","), g.Name) {
			gs = append(gs, g)
		}
	}
	if err := run(*n, *data, *genOnly, *budget, *only, gs, *perAgent); err != nil {
		fmt.Fprintln(os.Stderr, "bench/analytics:", err)
		os.Exit(1)
	}
}

const (
	day  = "2026-11-20"
	part = 1_000_000
)

var drawKey = []byte("bench draw key, not a secret here")

// generate fills speedtest with rows 0..n-1 of benchrows.SQL, in parts of
// 1,000,000 (one INSERT of 10,000,000 outlasts the driver's 5-minute read
// timeout on a loaded machine), from where the table stops. It returns
// whether every row is there (then merged into one part per partition).
func generate(ctx context.Context, conn driver.Conn, n int, budget time.Duration) (bool, error) {
	start := time.Now()
	var have uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM speedtest").Scan(&have); err != nil {
		return false, err
	}
	sql := benchrows.SQL(n, day, true)
	tail := fmt.Sprintf("FROM system.numbers LIMIT %d", n)
	if !strings.HasSuffix(sql, tail) {
		return false, fmt.Errorf("benchrows.SQL no longer ends with %q", tail)
	}
	// A part is one INSERT block, stored whole or not at all; the table
	// replaces rows of equal measurement_uid, so a part written twice
	// counts once under FINAL.
	for from := int(have) / part * part; from < n; from += part {
		if budget > 0 && time.Since(start) > budget {
			fmt.Fprintf(os.Stderr, "generated up to row %d of %d; call again to go on\n", from, n)
			return false, nil
		}
		k := min(part, n-from)
		q := strings.TrimSuffix(sql, tail) + fmt.Sprintf("FROM (SELECT number + %d AS number FROM system.numbers LIMIT %d)", from, k)
		if err := conn.Exec(ctx, q); err != nil {
			return false, err
		}
		fmt.Fprintf(os.Stderr, "rows %d..%d in %.0f s\n", from, from+k-1, time.Since(start).Seconds())
	}
	var parts uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'speedtest' AND active").Scan(&parts); err != nil {
		return false, err
	}
	if parts > 1 {
		if err := conn.Exec(ctx, "OPTIMIZE TABLE speedtest FINAL"); err != nil {
			return false, err
		}
	}
	return true, nil
}

// hand is the hand-written queries of the aggregates the daily job
// computes for the speedtest: for every goodset, (1) the agents' medians of
// the day and over them, per ASN, per country and overall, the counts,
// distinct agents, mean, quantiles and histogram of each metric; (2) with
// perAgent (as the job with Job.PerAgent), for the first goodset (all), per
// agent the same over its own tests; (3) per ASN, country and overall, the
// hour-of-day median over agents of their medians in that hour. Each is
// one SELECT over the measurement table (FINAL, the job's row filter and
// its daily cap written as LIMIT BY), with ClickHouse's own aggregates
// (quantilesExact, sumMap, uniqExact), stored in a Memory table (as the job
// stores its results). Not covered: the confidence intervals and modes,
// the job's dense histograms and its bookkeeping (analytics_runs, the
// verdicts of a day without BitTorrent tests).
func hand(goodsets []analytics.Goodset, perAgent bool) map[string][]string {
	t := analytics.Tests[0]
	base := fmt.Sprintf(`SELECT measurement_uid, agent_id, agent_pseudonym, asn, client_country, synthetic, start_time, down, up, rtt
    FROM (
        SELECT measurement_uid, agent_id, agent_pseudonym, client_asn AS asn, client_country, synthetic, start_time,
            download_mbps AS down, upload_mbps AS up, rtt_median_ms AS rtt, consent_can_publish, server_peer, ingested_at, failure
        FROM speedtest FINAL WHERE %s AND %s AND %s
        ORDER BY start_time LIMIT %d BY agent_id
    ) WHERE %s`, analytics.DayCond(day), schemas.OnTimeSQL, schemas.FiguresSQL, schemas.MaxTestsPerAgentDay, analytics.EligibleSQL(t))
	bucket := func(x string) string {
		return fmt.Sprintf("toUInt16(greatest(0, least(%d, floor(10 * log10(greatest(%s, 0.000001))) + 20)))", analytics.HistBuckets-1, x)
	}
	metrics := []string{"down", "up", "rtt"}
	zone, hour := analytics.ZoneSQL()
	keys := []struct{ scope, expr string }{{"asn", "toString(asn)"}, {"country", "client_country"}, {"all", "''"}}
	out := map[string][]string{}
	for _, g := range goodsets {
		cond := "(" + g.Where + ")"
		if g.OnePerAgentDay {
			cond += fmt.Sprintf(" AND measurement_uid IN (SELECT argMin(measurement_uid, sipHash64(concat('%s', toString(measurement_uid)))) FROM (%s) WHERE %s GROUP BY agent_id, asn)",
				hex.EncodeToString(drawKey), base, cond)
		}
		rows := fmt.Sprintf("(SELECT *, toUInt8(%s) AS c FROM (%s))", cond, base)
		var votes, outer, own, hvotes, hmed []string
		for i, m := range metrics {
			votes = append(votes, fmt.Sprintf("quantileExactIf(0.5)(%s, c) AS v%d", m, i))
			outer = append(outer, fmt.Sprintf("avgIf(v%[1]d, ng > 0) AS mean%[1]d, quantilesExactIf(0.1, 0.25, 0.5, 0.75, 0.9)(v%[1]d, ng > 0) AS q%[1]d, sumMapIf([%[2]s], [toUInt64(1)], ng > 0) AS h%[1]d", i, bucket(fmt.Sprintf("v%d", i))))
			own = append(own, fmt.Sprintf("avgIf(%[2]s, c) AS mean%[1]d, quantilesExactIf(0.1, 0.25, 0.5, 0.75, 0.9)(%[2]s, c) AS q%[1]d, sumMapIf([%[3]s], [toUInt64(1)], c) AS h%[1]d", i, m, bucket(m)))
			hvotes = append(hvotes, fmt.Sprintf("quantileExactIf(0.5)(%s, c) AS v%d", m, i))
			hmed = append(hmed, fmt.Sprintf("quantileExact(0.5)(v%[1]d) AS p%[1]d", i))
		}
		for _, k := range keys {
			out["distributions over agents"] = append(out["distributions over agents"], fmt.Sprintf(`SELECT key, synthetic, sum(nt) AS tests_total, sum(ng) AS tests, countIf(ng > 0) AS agents, uniqExact(agent_id) AS agents_total, %s
FROM (SELECT %s AS key, synthetic, agent_id, asn, count() AS nt, countIf(c) AS ng, %s FROM %s GROUP BY key, synthetic, agent_id, asn)
GROUP BY key, synthetic HAVING agents > 0`, strings.Join(outer, ", "), k.expr, strings.Join(votes, ", "), rows))
			h, z := hour, zone
			if k.scope == "all" {
				h, z = "toHour(start_time, 'UTC')", "'UTC'"
			}
			out["hourly profiles"] = append(out["hourly profiles"], fmt.Sprintf(`SELECT key, synthetic, hour, zone, sum(nt) AS tests, count() AS agents, %s
FROM (SELECT %s AS key, synthetic, %s AS hour, %s AS zone, agent_id, countIf(c) AS nt, %s FROM %s GROUP BY key, synthetic, hour, zone, agent_id HAVING nt > 0)
GROUP BY key, synthetic, hour, zone`, strings.Join(hmed, ", "), k.expr, h, z, strings.Join(hvotes, ", "), rows))
		}
		if !perAgent || g.Name != analytics.Goodsets[0].Name {
			continue // the job computes the agent scope only when asked, once, for its first goodset
		}
		out["per agent, its own tests"] = append(out["per agent, its own tests"], fmt.Sprintf(`SELECT agent_pseudonym AS key, synthetic, agent_id, count() AS tests_total, countIf(c) AS tests, %s
FROM %s GROUP BY key, synthetic, agent_id HAVING tests > 0`, strings.Join(own, ", "), rows))
	}
	return out
}

var families = []string{"distributions over agents", "per agent, its own tests", "hourly profiles"}

func run(n int, data string, genOnly bool, budget time.Duration, only string, goodsets []analytics.Goodset, perAgent bool) error {
	ctx := context.Background()
	var bs *benchrows.Server
	var err error
	if data != "" {
		bs, err = benchrows.StartIn(ctx, data, 16<<30)
	} else {
		bs, err = benchrows.Start(ctx, "analytics", 16<<30)
	}
	if err != nil {
		return err
	}
	defer bs.Stop()
	conn := bs.Conn
	t0 := time.Now()
	done, err := generate(ctx, conn, n, budget)
	if err != nil || !done || genOnly {
		return err
	}
	gen := time.Since(t0)

	// The full daily job, each step's time on stderr.
	steps := &stepTimes{Handler: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}), sum: map[string]time.Duration{}}
	job := &analytics.Job{Conn: conn, DrawKey: drawKey, Logger: slog.New(steps), PerAgent: perAgent}
	var jobTime float64
	if only != "hand" {
		fmt.Fprintln(os.Stderr, "the daily job...")
		t1 := time.Now()
		if err := job.RunDay(ctx, day); err != nil {
			return err
		}
		jobTime = time.Since(t1).Seconds()
	}

	// The hand-written queries, each into a Memory table; their row counts
	// are checked against the job's.
	fmt.Fprintln(os.Stderr, "the hand-written queries...")
	var handTime float64
	perFamily := map[string]float64{}
	handRows := map[string]uint64{}
	queries := 0
	for fam, qs := range hand(goodsets, perAgent) {
		if only == "job" {
			break
		}
		for _, q := range qs {
			queries++
			_ = conn.Exec(ctx, "DROP TABLE IF EXISTS bench_hand")
			t := time.Now()
			if err := conn.Exec(ctx, "CREATE TABLE bench_hand ENGINE = Memory AS "+q); err != nil {
				return fmt.Errorf("%s: %w", fam, err)
			}
			s := time.Since(t).Seconds()
			var c uint64
			if err := conn.QueryRow(ctx, "SELECT count() FROM bench_hand").Scan(&c); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "hand-written, %s: %.2f s, %d rows\n", fam, s, c)
			handTime += s
			perFamily[fam] += s
			handRows[fam] += c
		}
	}
	_ = conn.Exec(ctx, "DROP TABLE IF EXISTS bench_hand")
	jobRows := map[string]uint64{}
	for fam, q := range map[string]string{
		"distributions over agents": "SELECT count() FROM analytics_distributions WHERE test = 'speedtest' AND scope != 'agent' AND metric = 'download_mbps'",
		"per agent, its own tests":  "SELECT count() FROM analytics_distributions WHERE test = 'speedtest' AND scope = 'agent' AND metric = 'download_mbps'",
		"hourly profiles":           "SELECT count() FROM analytics_hourly WHERE test = 'speedtest' AND metric = 'download_mbps'",
	} {
		var c uint64
		if err := conn.QueryRow(ctx, q).Scan(&c); err != nil {
			return err
		}
		jobRows[fam] = c
	}

	fmt.Printf("\nAnalytics: one day of %d measurements (833,333 agents, 10 ISPs), ClickHouse 18.16 on 127.0.0.1, %d CPUs; rows generated in ClickHouse in %.1f s (0: kept from an earlier run)\n\n", n, runtime.NumCPU(), gen.Seconds())
	fmt.Println("| what | seconds | result rows (download) | ratio |")
	fmt.Println("|---|---|---|---|")
	ratio := fmt.Sprintf("%.2f", jobTime/handTime)
	if only != "" {
		ratio = "(" + only + " only)"
	}
	if only != "hand" {
		fmt.Printf("| full daily job (`analytics.Job.RunDay`): stage the rows, then for 3 goodsets the agents' votes, distributions per ASN, country and overall (with CI and modes), hourly profiles; verdicts%s | %.2f | %d / %d / %d | %s |\n",
			map[bool]string{true: "; per agent (goodset all)"}[perAgent], jobTime, jobRows[families[0]], jobRows[families[1]], jobRows[families[2]], ratio)
		for _, w := range steps.order {
			fmt.Printf("| … of which the job's step: %s | %.2f | | |\n", w, steps.sum[w].Seconds())
		}
	}
	if only != "job" {
		var names []string
		for _, g := range goodsets {
			names = append(names, g.Name)
		}
		fmt.Printf("| hand-written queries of the same aggregates, goodsets %s (%d queries) | %.2f | %d / %d / %d | 1.00 |\n",
			strings.Join(names, ", "), queries, handTime, handRows[families[0]], handRows[families[1]], handRows[families[2]])
		for _, f := range families {
			fmt.Printf("| … of which hand-written: %s | %.2f | %d | |\n", f, perFamily[f], handRows[f])
		}
	}
	for _, f := range families {
		if only == "" && jobRows[f] != handRows[f] {
			return fmt.Errorf("%s: the job wrote %d rows, the hand-written queries %d", f, jobRows[f], handRows[f])
		}
	}
	return nil
}

// stepTimes passes the job's log on to Handler and sums the time of its
// steps ("analytics: step" records) by what they computed.
type stepTimes struct {
	slog.Handler
	order []string
	sum   map[string]time.Duration
}

func (h *stepTimes) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "analytics: step" {
		var what string
		var took time.Duration
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "what":
				what = a.Value.String()
			case "took":
				took = a.Value.Duration()
			}
			return true
		})
		if _, ok := h.sum[what]; !ok {
			h.order = append(h.order, what)
		}
		h.sum[what] += took
	}
	return h.Handler.Handle(ctx, r)
}
