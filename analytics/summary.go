package analytics

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// SummaryRow is one line of the summary table (the paper's Table I: the
// average per source), over a range of days.
type SummaryRow struct {
	ASN          string
	Org          string
	Country      string
	Tests        uint64
	Agents       uint64 // sum of daily distinct agents
	DownloadMean float64
	DownloadP50  float64 // test-weighted mean of the daily medians
	UploadMean   float64
	RTTMean      float64
	InGoodset    float64 // share of this ISP's tests inside the goodset
}

// Summary computes the table per ASN for a goodset, over real or simulated
// tests, from the materialised distributions.
func (j *Job) Summary(ctx context.Context, from, to time.Time, goodset string, synthetic bool, minTests uint64) ([]SummaryRow, error) {
	syn := 0
	if synthetic {
		syn = 1
	}
	q := `SELECT key, any(org), any(country),
        sumIf(tests, metric = 'download_mbps') AS n,
        sumIf(agents, metric = 'download_mbps'),
        sumIf(mean * tests, metric = 'download_mbps') / n,
        sumIf(p50 * tests, metric = 'download_mbps') / n,
        sumIf(mean * tests, metric = 'upload_mbps') / n,
        sumIf(mean * tests, metric = 'rtt_ms') / n,
        n / sumIf(tests_total, metric = 'download_mbps')
    FROM analytics_distributions
    WHERE scope = 'asn' AND goodset = ? AND synthetic = ? AND day >= toDate(?) AND day <= toDate(?)
    GROUP BY key HAVING n >= ? ORDER BY n DESC, key`
	rows, err := j.Conn.Query(ctx, q, goodset, uint8(syn), from.Format(time.DateOnly), to.Format(time.DateOnly), minTests)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []SummaryRow
	for rows.Next() {
		var r SummaryRow
		if err := rows.Scan(&r.ASN, &r.Org, &r.Country, &r.Tests, &r.Agents, &r.DownloadMean, &r.DownloadP50, &r.UploadMean, &r.RTTMean, &r.InGoodset); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// WriteSummary prints the table as Markdown or CSV.
func WriteSummary(w io.Writer, rows []SummaryRow, format string) error {
	switch format {
	case "csv":
		fmt.Fprintln(w, "asn,org,country,tests,agent_days,download_mean_mbps,download_median_mbps,upload_mean_mbps,rtt_mean_ms,share_in_goodset")
		for _, r := range rows {
			fmt.Fprintf(w, "%s,%q,%s,%d,%d,%.3f,%.3f,%.3f,%.2f,%.4f\n", r.ASN, r.Org, r.Country, r.Tests, r.Agents, r.DownloadMean, r.DownloadP50, r.UploadMean, r.RTTMean, r.InGoodset)
		}
	case "md":
		fmt.Fprintln(w, "| ASN | organisation | country | tests | agent-days | download mean Mbit/s | download median Mbit/s | upload mean Mbit/s | RTT mean ms | share in goodset |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
		for _, r := range rows {
			fmt.Fprintf(w, "| %s | %s | %s | %d | %d | %.2f | %.2f | %.2f | %.1f | %.1f%% |\n", r.ASN, strings.ReplaceAll(r.Org, "|", "/"), r.Country, r.Tests, r.Agents, r.DownloadMean, r.DownloadP50, r.UploadMean, r.RTTMean, 100*r.InGoodset)
		}
	default:
		return fmt.Errorf("format must be md or csv, not %q", format)
	}
	return nil
}
