package analytics

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// MinAgents is how many distinct agents with a test inside the goodset a
// provider needs over a period to be ranked: below it, a median says more
// about a few volunteers' lines than about the provider, and its interval
// is wide (with 10 agents the 95% interval of the median runs from the 2nd
// to the 9th of them). Providers with fewer are listed apart.
const MinAgents = 10

// Figure is a metric over a period: each agent votes once, with the median
// of its daily votes (itself the median of its tests of the day inside the
// goodset); Mean and Median are over the agents, CILow and CIHigh the 95%
// confidence interval of the median (stats.MedianCI over the agents, who
// are independent where their days are not). MeanTests is the mean over
// the tests themselves, labelled so: one busy agent moves it.
type Figure struct {
	Mean      float64 `json:"mean"`
	Median    float64 `json:"median"`
	CILow     float64 `json:"median_ci_low"`
	CIHigh    float64 `json:"median_ci_high"`
	MeanTests float64 `json:"mean_test_weighted"`
}

// TableRow is one line of Table I: a provider (ASN), or every agent
// (Overall).
type TableRow struct {
	RowCounts
	Download Figure `json:"download_mbps"`
	Upload   Figure `json:"upload_mbps"`
	RTT      Figure `json:"rtt_ms"`
}

// RowCounts is who a row of Table I is about and how many agents and
// tests it counts: the part of a row that the API serves as it is.
type RowCounts struct {
	ASN     string `json:"asn"` // empty for the overall row
	Org     string `json:"org"`
	Country string `json:"country"`
	// Ranked: AgentsInGoodset >= MinAgents.
	Ranked bool `json:"ranked"`
	// Agents is the distinct agents with tests over the period, exactly
	// (uniqExact over analytics_agent_days); AgentsInGoodset those with at
	// least one test inside the goodset.
	Agents          uint64 `json:"agents"`
	AgentsInGoodset uint64 `json:"agents_in_goodset"`
	Tests           uint64 `json:"tests"`
	TestsInGoodset  uint64 `json:"tests_in_goodset"`
}

// ShareAgents is the share of the agents with a test inside the goodset.
func (r TableRow) ShareAgents() float64 { return ratio(r.AgentsInGoodset, r.Agents) }

// ShareTests is the share of the tests inside the goodset.
func (r TableRow) ShareTests() float64 { return ratio(r.TestsInGoodset, r.Tests) }

func ratio(a, b uint64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// Table is the Neubot paper's Table I over a period: an overall row, then
// the providers with at least MinAgents agents in the goodset (most agents
// first), then the others apart.
type Table struct {
	TableHeader
	Overall   TableRow   `json:"overall"`
	Providers []TableRow `json:"providers"`
	Others    []TableRow `json:"others"`
}

// TableHeader is what a Table I is over; the API serves it as it is.
type TableHeader struct {
	Test      string `json:"test"`
	Goodset   string `json:"goodset"`
	Synthetic bool   `json:"synthetic"`
	From      string `json:"from"`
	To        string `json:"to"`
	MinAgents int    `json:"min_agents"`
	// TestVersions are the methodology versions (test_version) of the
	// tests inside the goodset that the table pools, sorted (none for
	// votes computed before they were recorded).
	TestVersions []string `json:"test_versions"`
}

// TableQuery selects a Table.
type TableQuery struct {
	Test      string // speedtest when empty
	Goodset   string // all when empty
	Synthetic bool
	From, To  time.Time
	MinAgents int // MinAgents when 0
	// ASN, when not 0, restricts the table to that provider (and leaves
	// the overall row empty).
	ASN uint32
}

// tableSQL is the rows of Table I keyed by keyExpr over analytics_agent_days.
func tableSQL(keyExpr string) string {
	var inner, mid, outer []string
	for i, m := range metrics {
		inner = append(inner, fmt.Sprintf("%s AS v%d", medianOf(m.vote, "tests > 0"), i),
			fmt.Sprintf("sum(%s) AS sum%d", m.sum, i))
		mid = append(mid, fmt.Sprintf("avgIf(v%[1]d, n > 0) AS mean%[1]d, arraySort(groupArrayIf(v%[1]d, n > 0)) AS s%[1]d, sum(sum%[1]d) AS tsum%[1]d", i))
		lo, hi := ciSQL(fmt.Sprintf("s%d", i), fmt.Sprintf("length(s%d)", i))
		outer = append(outer, fmt.Sprintf("mean%[1]d, %[2]s, %[3]s, %[4]s, if(tg = 0, nan, tsum%[1]d / tg)",
			i, QuantileSQL(fmt.Sprintf("s%d", i), fmt.Sprintf("length(s%d)", i), 0.5), lo, hi))
	}
	return fmt.Sprintf(`SELECT key, porg, pcountry, agents, agents_gs, tt, tg, %[1]s
FROM (
    SELECT key, any(aorg) AS porg, any(acountry) AS pcountry, count() AS agents, countIf(n > 0) AS agents_gs, sum(att) AS tt, sum(atg) AS tg, %[2]s
    FROM (
        SELECT %[3]s AS key, agent_id, any(org) AS aorg, any(country) AS acountry, sum(tests_total) AS att, sum(tests) AS atg, countIf(tests > 0) AS n, %[4]s
        FROM analytics_agent_days
        WHERE test = ? AND goodset = ? AND goodset_version = ? AND synthetic = ? AND day >= toDate(?) AND day <= toDate(?) AND (? = 0 OR asn = ?)
        GROUP BY key, agent_id
    )
    GROUP BY key
)`, strings.Join(outer, ", "), strings.Join(mid, ", "), keyExpr, strings.Join(inner, ", "))
}

// ReadTable computes Table I from the votes of the period.
func ReadTable(ctx context.Context, conn driver.Conn, q TableQuery) (*Table, error) {
	if q.Test == "" {
		q.Test = Tests[0].Name
	}
	if q.Goodset == "" {
		q.Goodset = "all"
	}
	if q.MinAgents == 0 {
		q.MinAgents = MinAgents
	}
	if _, ok := LookupTest(q.Test); !ok {
		return nil, fmt.Errorf("analytics: unknown test %q", q.Test)
	}
	version := -1
	for _, g := range Goodsets {
		if g.Name == q.Goodset {
			version = g.Version
		}
	}
	if version < 0 {
		return nil, fmt.Errorf("analytics: unknown goodset %q", q.Goodset)
	}
	syn := uint8(0)
	if q.Synthetic {
		syn = 1
	}
	t := &Table{TableHeader: TableHeader{Test: q.Test, Goodset: q.Goodset, Synthetic: q.Synthetic, From: q.From.Format(time.DateOnly), To: q.To.Format(time.DateOnly),
		MinAgents: q.MinAgents}, Providers: []TableRow{}, Others: []TableRow{}}
	if err := conn.QueryRow(ctx, `SELECT arraySort(groupUniqArrayArray(test_versions)) FROM analytics_agent_days
        WHERE test = ? AND goodset = ? AND goodset_version = ? AND synthetic = ? AND day >= toDate(?) AND day <= toDate(?) AND (? = 0 OR asn = ?)`,
		q.Test, q.Goodset, uint32(version), syn, t.From, t.To, q.ASN, q.ASN).Scan(&t.TestVersions); err != nil {
		return nil, fmt.Errorf("analytics: table: %w", err)
	}
	if t.TestVersions == nil {
		t.TestVersions = []string{}
	}
	var all []TableRow
	keys := []string{"''", "toString(asn)"}
	if q.ASN != 0 {
		keys = keys[1:]
	}
	for _, key := range keys {
		rows, err := conn.Query(ctx, tableSQL(key), q.Test, q.Goodset, uint32(version), syn, t.From, t.To, q.ASN, q.ASN)
		if err != nil {
			return nil, fmt.Errorf("analytics: table: %w", err)
		}
		for rows.Next() {
			var r TableRow
			dest := []any{&r.ASN, &r.Org, &r.Country, &r.Agents, &r.AgentsInGoodset, &r.Tests, &r.TestsInGoodset}
			for _, f := range []*Figure{&r.Download, &r.Upload, &r.RTT} {
				dest = append(dest, &f.Mean, &f.Median, &f.CILow, &f.CIHigh, &f.MeanTests)
			}
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return nil, err
			}
			r.Ranked = r.AgentsInGoodset >= uint64(q.MinAgents)
			if key == "''" {
				r.Org, r.Country = "all", ""
				t.Overall = r
				continue
			}
			all = append(all, r)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Agents != all[j].Agents {
			return all[i].Agents > all[j].Agents
		}
		return all[i].ASN < all[j].ASN
	})
	for _, r := range all {
		if r.Ranked {
			t.Providers = append(t.Providers, r)
		} else {
			t.Others = append(t.Others, r)
		}
	}
	return t, nil
}

func f2(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "-"
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

func pct(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	return strconv.FormatFloat(100*x, 'f', 1, 64) + "%"
}

func (r TableRow) name() string {
	if r.ASN == "" {
		return "All"
	}
	return fmt.Sprintf("AS%s %s", r.ASN, r.Org)
}

// WriteText prints the table in the paper's layout: one line per source
// (overall first), its agents and tests, the shares inside the goodset,
// then mean and median of download, upload and RTT; the 95% intervals of
// the medians under them.
func (t *Table) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "Table I: %s, goodset %s, %s to %s (UTC days)%s\n", t.Test, t.Goodset, t.From, t.To, map[bool]string{true: ", simulated tests", false: ""}[t.Synthetic])
	fmt.Fprintf(w, "each agent votes once: the median of its daily medians; mean and median over agents; [95%% CI of the median]\n")
	versions := strings.Join(t.TestVersions, ", ")
	if versions == "" {
		versions = "not recorded"
	}
	fmt.Fprintf(w, "methodology versions pooled (test_version): %s\n\n", versions)
	head := fmt.Sprintf("%-34s %7s %8s %7s %7s | %-24s | %-24s | %-24s", "Source", "agents", "tests", "%agents", "%tests",
		"download Mbit/s mean/med", "upload Mbit/s mean/med", "RTT ms mean/med")
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, strings.Repeat("-", len([]rune(head))))
	line := func(r TableRow) {
		name := r.name()
		if len(name) > 34 {
			name = name[:34]
		}
		fig := func(f Figure) string { return fmt.Sprintf("%9s %9s", f2(f.Mean), f2(f.Median)) }
		ci := func(f Figure) string { return fmt.Sprintf("[%s, %s]", f2(f.CILow), f2(f.CIHigh)) }
		fmt.Fprintf(w, "%-34s %7d %8d %7s %7s | %-24s | %-24s | %-24s\n", name, r.Agents, r.Tests, pct(r.ShareAgents()), pct(r.ShareTests()),
			fig(r.Download), fig(r.Upload), fig(r.RTT))
		fmt.Fprintf(w, "%-34s %7s %8s %7s %7s | %24s | %24s | %24s\n", "", "", "", "", "", ci(r.Download), ci(r.Upload), ci(r.RTT))
	}
	line(t.Overall)
	for _, r := range t.Providers {
		line(r)
	}
	// The paper's Table I itself is one number per source: the mean
	// download over the goodset's tests (test-weighted).
	fmt.Fprintf(w, "\nAll, mean over the tests inside the goodset (test-weighted, as the paper's Table I): download %s Mbit/s, upload %s Mbit/s, RTT %s ms\n",
		f2(t.Overall.Download.MeanTests), f2(t.Overall.Upload.MeanTests), f2(t.Overall.RTT.MeanTests))
	if len(t.Others) > 0 {
		fmt.Fprintf(w, "\nfewer than %d agents inside the goodset (not ranked):\n", t.MinAgents)
		for _, r := range t.Others {
			line(r)
		}
	}
	return nil
}

// CSVHeader is the header of Table I as CSV.
var CSVHeader = []string{"asn", "org", "country", "ranked", "agents", "agents_in_goodset", "share_agents_in_goodset", "tests", "tests_in_goodset", "share_tests_in_goodset",
	"download_mean_mbps", "download_median_mbps", "download_median_ci_low", "download_median_ci_high", "download_mean_test_weighted",
	"upload_mean_mbps", "upload_median_mbps", "upload_median_ci_low", "upload_median_ci_high", "upload_mean_test_weighted",
	"rtt_mean_ms", "rtt_median_ms", "rtt_median_ci_low", "rtt_median_ci_high", "rtt_mean_test_weighted"}

// WriteCSV writes the table as CSV: the overall row (asn empty), the
// ranked providers, the others.
func (t *Table) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(CSVHeader)
	num := func(x float64) string {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return ""
		}
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	rows := append(append([]TableRow{t.Overall}, t.Providers...), t.Others...)
	for _, r := range rows {
		rec := []string{r.ASN, r.Org, r.Country, strconv.FormatBool(r.Ranked), strconv.FormatUint(r.Agents, 10), strconv.FormatUint(r.AgentsInGoodset, 10),
			num(r.ShareAgents()), strconv.FormatUint(r.Tests, 10), strconv.FormatUint(r.TestsInGoodset, 10), num(r.ShareTests())}
		for _, f := range []Figure{r.Download, r.Upload, r.RTT} {
			rec = append(rec, num(f.Mean), num(f.Median), num(f.CILow), num(f.CIHigh), num(f.MeanTests))
		}
		_ = cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}
