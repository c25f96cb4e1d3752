// Command analytics measures the daily analytics job over a day of
// 10,000,000 measurements, and compares one of its steps with a hand-written
// ClickHouse query computing the same aggregate, side by side in one run.
// Rows are generated inside ClickHouse (deterministic hashes of the row
// number): 10 ISPs, 833,333 agents, plan speeds from 1 to 1000 Mbit/s.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/bench/internal/benchrows"
)

func main() {
	n := flag.Int("rows", 10_000_000, "measurements in the day")
	printSQL := flag.Bool("print-sql", false, "print the SQL that generates the rows and exit")
	full := flag.Bool("full", true, "also time the full daily job (slow on a loaded machine); false: only the step against the hand-written query")
	flag.Parse()
	if *printSQL {
		fmt.Println(benchrows.SQL(*n, day, true))
		return
	}
	if err := run(*n, *full); err != nil {
		fmt.Fprintln(os.Stderr, "bench/analytics:", err)
		os.Exit(1)
	}
}

const day = "2026-11-20"

func peakRSS() string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "?"
}

// queryStats returns the peak memory and total time ClickHouse logged for
// the queries that finished since t.
func queryStats(ctx context.Context, conn driver.Conn, since time.Time, like string) (peak uint64, secs float64) {
	_ = conn.Exec(ctx, "SYSTEM FLUSH LOGS")
	var ms uint64
	_ = conn.QueryRow(ctx, `SELECT max(memory_usage), sum(query_duration_ms) FROM system.query_log
		WHERE type = 2 AND event_time >= toDateTime(?) AND query LIKE ?`, since.UTC().Format("2006-01-02 15:04:05"), like).Scan(&peak, &ms)
	return peak, float64(ms) / 1000
}

func run(n int, full bool) error {
	ctx := context.Background()
	bs, err := benchrows.Start(ctx, "analytics", 16<<30)
	if err != nil {
		return err
	}
	defer bs.Stop()
	conn := bs.Conn
	fmt.Fprintf(os.Stderr, "generating %d measurements inside ClickHouse...\n", n)
	t0 := time.Now()
	// In parts of 1,000,000 rows: one INSERT of 10,000,000 outlasts the
	// driver's 5-minute read timeout on a loaded machine. The rows are the
	// same (numbered 0..n-1).
	sql := benchrows.SQL(n, day, true)
	tail := fmt.Sprintf("FROM system.numbers LIMIT %d", n)
	if !strings.HasSuffix(sql, tail) {
		return fmt.Errorf("benchrows.SQL no longer ends with %q", tail)
	}
	for from := 0; from < n; from += 1_000_000 {
		k := min(1_000_000, n-from)
		part := strings.TrimSuffix(sql, tail) + fmt.Sprintf("FROM (SELECT number + %d AS number FROM system.numbers LIMIT %d)", from, k)
		if err := conn.Exec(ctx, part); err != nil {
			return err
		}
	}
	_ = conn.Exec(ctx, "OPTIMIZE TABLE speedtest FINAL")
	gen := time.Since(t0)

	// Debug: each step's time on stderr.
	job := &analytics.Job{Conn: conn, DrawKey: []byte("bench draw key, not a secret here"),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	var jobTime time.Duration
	var jobPeak uint64
	if full {
		fmt.Fprintln(os.Stderr, "the daily job (3 goodsets: agents' votes, 4 scopes, hourly profiles)...")
		t1 := time.Now()
		if err := job.RunDay(ctx, day); err != nil {
			return err
		}
		jobTime = time.Since(t1)
		jobPeak, _ = queryStats(ctx, conn, t1.Add(-time.Second), "INSERT INTO analytics_%")
	}

	// One step of the job against the hand-written query of the same
	// aggregate: per-ASN distributions of the three metrics over the
	// agents' votes (each agent's median of the day), all tests. The step
	// writes the votes (analytics_agent_days) and then the distributions.
	all := analytics.Goodsets[0]
	for _, t := range []string{"analytics_distributions", "analytics_agent_days"} {
		if err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DROP PARTITION '%s'", t, day)); err != nil {
			return err
		}
	}
	t2 := time.Now()
	if err := job.RunScope(ctx, day, all, "asn"); err != nil {
		return err
	}
	stepTime := time.Since(t2)
	hand := fmt.Sprintf(`SELECT asn, synthetic, sum(n), count(),
        avg(d), quantilesExact(0.1, 0.25, 0.5, 0.75, 0.9)(d), sumMap([toUInt16(greatest(0, least(59, floor(10 * log10(greatest(d, 0.000001))) + 20)))], [toUInt64(1)]),
        avg(u), quantilesExact(0.1, 0.25, 0.5, 0.75, 0.9)(u), sumMap([toUInt16(greatest(0, least(59, floor(10 * log10(greatest(u, 0.000001))) + 20)))], [toUInt64(1)]),
        avg(r), quantilesExact(0.1, 0.25, 0.5, 0.75, 0.9)(r), sumMap([toUInt16(greatest(0, least(59, floor(10 * log10(greatest(r, 0.000001))) + 20)))], [toUInt64(1)])
    FROM (
        SELECT client_asn AS asn, synthetic, agent_id, count() AS n,
            quantileExact(0.5)(download_mbps) AS d, quantileExact(0.5)(upload_mbps) AS u, quantileExact(0.5)(rtt_median_ms) AS r
        FROM speedtest FINAL WHERE toDate(start_time) = toDate('%s') AND %s GROUP BY asn, synthetic, agent_id
    )
    GROUP BY asn, synthetic`, day, analytics.EligibleSQL(analytics.Tests[0]))
	t3 := time.Now()
	rows, err := conn.Query(ctx, hand)
	if err != nil {
		return err
	}
	groups := 0
	for rows.Next() {
		groups++
	}
	rows.Close()
	handTime := time.Since(t3)

	// The results must agree: the job's per-ASN download medians.
	var jobGroups uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM analytics_distributions WHERE scope = 'asn' AND metric = 'download_mbps'").Scan(&jobGroups); err != nil {
		return err
	}

	fmt.Printf("\nAnalytics: one day of %d measurements (833,333 agents, 10 ISPs), ClickHouse 18.16 on 127.0.0.1, %d CPUs; rows generated in ClickHouse in %.1f s\n\n", n, runtime.NumCPU(), gen.Seconds())
	fmt.Println("| what | seconds | peak memory | ratio |")
	fmt.Println("|---|---|---|---|")
	if full {
		fmt.Printf("| full daily job: 3 goodsets x (asn, country, agent, all) distributions + hourly profiles | %.2f | ClickHouse %.0f MiB per query (max); neubot %s RSS | |\n", jobTime.Seconds(), float64(jobPeak)/(1<<20), peakRSS())
	}
	fmt.Printf("| job step: the agents' votes, then per-ASN distributions over them (3 metrics, percentiles, CI of the median, histogram, modes), inserted | %.2f | | %.2f |\n", stepTime.Seconds(), stepTime.Seconds()/handTime.Seconds())
	fmt.Printf("| hand-written SELECT of the same aggregate over the same rows (analytics.EligibleSQL): agents' medians (quantileExact), then per ASN (%d groups; job wrote %d) | %.2f | | 1.00 |\n", groups, jobGroups, handTime.Seconds())
	return nil
}
