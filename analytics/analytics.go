// Package analytics turns measurements into findings, as reproducible jobs
// over ClickHouse (the Neubot paper's Section IV): goodsets (named, versioned
// rules selecting tests), and per-day distributions per ISP (ASN), country,
// agent and overall: counts, mean, percentiles, a log-scale histogram with
// its modes, an hour-of-day profile and the share of tests in the goodset;
// and the differential tests' verdicts per ISP and day (verdicts.go).
//
// A day is computed by SQL inside ClickHouse (INSERT ... SELECT), so memory
// and time scale with ClickHouse, not with this process. Recomputing a day
// drops its partition first: the job is idempotent. The scheduler recomputes
// only days whose source rows changed since their last run.
package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/schemas"
)

// Goodset is a named, versioned rule over measurements. Where is a SQL
// predicate over the speedtest table's columns.
type Goodset struct {
	Name        string `json:"name"`
	Version     int    `json:"version"`
	Description string `json:"description"`
	Where       string `json:"where"`
	// OnePerAgentDay keeps one test per agent per day, chosen at random
	// (deterministically, by a hash of measurement_uid), so that heavy
	// testers do not dominate.
	OnePerAgentDay bool `json:"one_per_agent_day"`
}

// Def is the definition stored with every result computed from g.
func (g Goodset) Def() string {
	b, _ := json.Marshal(g)
	return string(b)
}

// Goodsets are the rules computed by default.
var Goodsets = []Goodset{
	{Name: "all", Version: 1, Description: "every valid test", Where: "1"},
	{Name: "paper2011", Version: 1, Description: "the goodset of the Neubot paper (ISCC 2011): download < 20 Mbit/s and RTT < 100 ms",
		Where: "download_mbps < 20 AND rtt_median_ms < 100"},
	{Name: "paper2011-daily", Version: 1, Description: "paper2011, one random test per agent per day (as M-Lab's statistics pipeline does)",
		Where: "download_mbps < 20 AND rtt_median_ms < 100", OnePerAgentDay: true},
}

// Histogram layout: bucket i counts values in [10^((i-20)/10), 10^((i-19)/10)).
const (
	HistBuckets = 60
	histOffset  = 20
)

// BucketLow is the lower edge of histogram bucket i.
func BucketLow(i int) float64 { return math.Pow(10, float64(i-histOffset)/10) }

// Scopes of the distributions.
var scopes = []struct{ name, key string }{
	{"asn", "toString(client_asn)"},
	{"country", "client_country"},
	{"agent", "agent_pseudonym"}, // never the clear agent_id (spec/trust.md)
	{"all", "''"},
}

// metrics of the speedtest that get distributions.
var metrics = []struct{ name, col string }{
	{"download_mbps", "download_mbps"},
	{"upload_mbps", "upload_mbps"},
	{"rtt_ms", "rtt_median_ms"},
}

func bucketExpr(col string) string {
	return fmt.Sprintf("toUInt16(greatest(0, least(%d, floor(10 * log10(greatest(%s, 0.000001))) + %d)))", HistBuckets-1, col, histOffset)
}

func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// source is the rows of one day with the goodset flag c, restricted to one
// chunk of agents when the scope has many groups (see chunk).
func source(g Goodset, day string, ch chunk) string {
	cond := "(" + g.Where + ")"
	if g.OnePerAgentDay {
		// GLOBAL: on a cluster the subquery must see every shard (it runs
		// once, where the query arrived); the same as IN on one node.
		cond += fmt.Sprintf(" AND measurement_uid GLOBAL IN (SELECT argMin(measurement_uid, sipHash64(toString(measurement_uid))) FROM speedtest FINAL WHERE toDate(start_time) = toDate('%s') AND %s AND consent_can_publish = 1 AND server_peer = 0 AND failure = '' GROUP BY agent_id)", day, schemas.OnTimeSQL)
	}
	// Only the rows that arrived before the day closed: a closed day's
	// figures never change (see schemas.ClosedAfter).
	// Public figures come from publishable tests only: a volunteer who
	// refused publication is not in any figure either. Peer tests
	// (server_peer = 1) measure the path between two volunteers, whose
	// uplink may be the bottleneck, not the access of one: they are
	// published as measurements, kept out of the figures per ISP.
	// A failure record (failure != '') measured no goodput: it is not a
	// test of zero Mbit/s, so no figure counts it (schema version 3).
	// Only rows signed by an enrolled server whose cross-check passed,
	// at most schemas.MaxTestsPerAgentDay a day of each agent (trustSQL).
	where := fmt.Sprintf("toDate(start_time) = toDate('%s') AND %s AND consent_can_publish = 1 AND server_peer = 0 AND failure = '' AND %s", day, schemas.OnTimeSQL, trustSQL("speedtest", day))
	if ch.of > 1 {
		where += fmt.Sprintf(" AND cityHash64(toString(agent_id)) %% %d = %d", ch.of, ch.n)
	}
	return fmt.Sprintf("(SELECT *, toUInt8(%s) AS c FROM speedtest FINAL WHERE %s)", cond, where)
}

// trustSQL is the condition of the rows of table on day that count in
// figures (spec/trust.md): verified and plausible (schemas.FiguresSQL), and
// among the first schemas.MaxTestsPerAgentDay of their agent that day, so
// that one agent testing in a loop weighs no more than a busy volunteer.
// A separate clause that the figures' queries keep.
func trustSQL(table, day string) string {
	return fmt.Sprintf(`%[3]s AND measurement_uid GLOBAL IN (SELECT arrayJoin(arraySlice(arrayMap(t -> tupleElement(t, 2), arraySort(groupArray((start_time, measurement_uid)))), 1, %[4]d))
        FROM %[1]s FINAL WHERE toDate(start_time) = toDate('%[2]s') AND %[5]s AND %[3]s GROUP BY agent_id)`,
		table, day, schemas.FiguresSQL, schemas.MaxTestsPerAgentDay, schemas.OnTimeSQL)
}

// chunk n of `of`: a scope with many groups (agents) is computed in parts,
// so that ClickHouse 18.16, which turns a GROUP BY result into one block,
// never holds the histograms of every agent at once.
type chunk struct{ n, of int }

// groupsPerChunk bounds the groups of one query of the agent scope.
var groupsPerChunk uint64 = 50_000

// distributionsSQL computes one goodset and scope for one day. It is built
// in layers because ClickHouse 18.16's lambdas cannot see a column defined
// at their own level: aggregate; split the sparse histogram; make it dense;
// unpivot the metrics; find the modes. The modes compare each bucket with
// its neighbours through shifted copies of the histogram, not a lambda that
// indexes it: a lambda capturing an array column copies it once per
// element (60 x 60 per row, 130 GB for 833,333 agents).
func distributionsSQL(g Goodset, scope, keyExpr, day string, ch chunk) string {
	var aggs, split, dense, tuples []string
	base := "day, key, org, country, synthetic, tests_total, tests, agents"
	l2, l3 := base, base // the columns each layer passes on, by name
	for i, m := range metrics {
		p := fmt.Sprintf("m%d_", i)
		aggs = append(aggs,
			fmt.Sprintf("avgIf(%s, c) AS %smean", m.col, p),
			fmt.Sprintf("quantilesExactIf(0.1, 0.25, 0.5, 0.75, 0.9)(%s, c) AS %sq", m.col, p),
			fmt.Sprintf("sumMapIf([%s], [toUInt64(1)], c) AS %ssm", bucketExpr(m.col), p))
		split = append(split, fmt.Sprintf("tupleElement(%[1]ssm, 1) AS %[1]sk, tupleElement(%[1]ssm, 2) AS %[1]sv", p))
		// "0 * length(...)": ClickHouse 18.16 drops subquery columns that
		// only a lambda uses; naming them outside it keeps them.
		dense = append(dense, fmt.Sprintf("arrayMap(i -> if(indexOf(%[1]sk, toUInt16(i)) = 0, toUInt64(0), %[1]sv[indexOf(%[1]sk, toUInt16(i))]), range(toUInt64(%[2]d + 0 * (length(%[1]sk) + length(%[1]sv))))) AS %[1]shist", p, HistBuckets))
		tuples = append(tuples, fmt.Sprintf("(%s, %smean, %sq, %shist)", quote(m.name), p, p, p))
		l2 += fmt.Sprintf(", %[1]smean, %[1]sq", p)
		l3 += fmt.Sprintf(", %[1]smean, %[1]sq, %[1]sk, %[1]sv", p)
	}
	return fmt.Sprintf(`INSERT INTO analytics_distributions (day, test, goodset, goodset_version, goodset_def, scope, key, org, country,
    synthetic, metric, tests_total, tests, agents, mean, p10, p25, p50, p75, p90, hist, modes)
SELECT day, 'speedtest', %[1]s, %[2]d, %[3]s, %[4]s, key, org, country, synthetic, metric, tests_total, tests, agents,
    mean, p10, p25, p50, p75, p90, hist,
    arrayMap(i -> round(pow(10, (i - 1 - %[5]d + 0.5) / 10), 3),
        arrayFilter((i, h, prev, next) -> h >= 0.05 * tests AND h > prev AND h >= next,
            arrayEnumerate(hist), hist, arrayPushFront(arrayPopBack(hist), toUInt64(0)), arrayPushBack(arrayPopFront(hist), toUInt64(0)))) AS modes
FROM (
    SELECT day, key, org, country, synthetic, tests_total, tests, agents,
        tupleElement(m, 1) AS metric, tupleElement(m, 2) AS mean,
        tupleElement(m, 3)[1] AS p10, tupleElement(m, 3)[2] AS p25, tupleElement(m, 3)[3] AS p50,
        tupleElement(m, 3)[4] AS p75, tupleElement(m, 3)[5] AS p90, tupleElement(m, 4) AS hist
    FROM (
        SELECT %[13]s, %[10]s
        FROM (
            SELECT %[12]s, %[11]s
            FROM (
                SELECT toDate(start_time) AS day, %[6]s AS key, min(client_org) AS org, min(client_country) AS country, synthetic,
                    count() AS tests_total, countIf(c) AS tests, uniqExactIf(agent_id, c) AS agents,
                    %[7]s
                FROM %[8]s
                GROUP BY day, key, synthetic
            )
        )
    )
    ARRAY JOIN [%[9]s] AS m
    WHERE tests > 0
)`,
		quote(g.Name), g.Version, quote(g.Def()), quote(scope), histOffset, keyExpr,
		strings.Join(aggs, ",\n                    "), source(g, day, ch), strings.Join(tuples, ", "),
		strings.Join(dense, ", "), strings.Join(split, ", "), l2, l3)
}

// hourlySQL computes the hour-of-day profile of one goodset and scope.
func hourlySQL(g Goodset, scope, keyExpr, day string) string {
	ch := chunk{0, 1}
	var aggs, tuples []string
	for i, m := range metrics {
		aggs = append(aggs, fmt.Sprintf("quantileExactIf(0.5)(%s, c) AS m%d", m.col, i))
		tuples = append(tuples, fmt.Sprintf("(%s, m%d)", quote(m.name), i))
	}
	return fmt.Sprintf(`INSERT INTO analytics_hourly (day, test, goodset, goodset_version, scope, key, synthetic, metric, hour, tests, p50)
SELECT day, 'speedtest', %[1]s, %[2]d, %[3]s, key, synthetic, tupleElement(m, 1), hour, tests, tupleElement(m, 2)
FROM (
    SELECT toDate(start_time) AS day, %[4]s AS key, synthetic, toHour(start_time) AS hour, countIf(c) AS tests,
        %[5]s
    FROM %[6]s
    GROUP BY day, key, synthetic, hour
)
ARRAY JOIN [%[7]s] AS m
WHERE tests > 0`, quote(g.Name), g.Version, quote(scope), keyExpr, strings.Join(aggs, ", "), source(g, day, ch), strings.Join(tuples, ", "))
}

// Job computes the analytics of days.
type Job struct {
	Conn     driver.Conn
	Logger   *slog.Logger
	Goodsets []Goodset // Goodsets when nil
}

func (j *Job) goodsets() []Goodset {
	if j.Goodsets != nil {
		return j.Goodsets
	}
	return Goodsets
}

func (j *Job) log() *slog.Logger {
	if j.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return j.Logger
}

// SourceState is what a day's source rows looked like.
type SourceState struct {
	Rows        uint64
	MaxIngested time.Time
}

// Sources returns the state of every day that has measurements.
func (j *Job) Sources(ctx context.Context) (map[string]SourceState, error) {
	// Every measurement table counts: a day with only BitTorrent tests
	// still has verdicts to compute. Only rows that arrived before their
	// day closed (schemas.OnTimeSQL).
	rows, err := j.Conn.Query(ctx, fmt.Sprintf(`SELECT d, sum(n), max(m) FROM (
    SELECT toString(toDate(start_time)) AS d, countIf(%[1]s) AS n, maxIf(ingested_at, %[1]s) AS m FROM speedtest GROUP BY d
    UNION ALL
    SELECT toString(toDate(start_time)) AS d, countIf(%[1]s) AS n, maxIf(ingested_at, %[1]s) AS m FROM bittorrent GROUP BY d
) GROUP BY d`, schemas.OnTimeSQL))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]SourceState{}
	for rows.Next() {
		var d string
		var s SourceState
		if err := rows.Scan(&d, &s.Rows, &s.MaxIngested); err != nil {
			return nil, err
		}
		out[d] = s
	}
	return out, rows.Err()
}

// Pending returns, oldest first, the days whose source rows changed since
// they were last computed (or were never computed).
func (j *Job) Pending(ctx context.Context) ([]string, error) {
	src, err := j.Sources(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := j.Conn.Query(ctx, "SELECT toString(day), argMax(source_rows, run_at), argMax(source_max_ingested, run_at) FROM analytics_runs GROUP BY day")
	if err != nil {
		return nil, err
	}
	done := map[string]SourceState{}
	for rows.Next() {
		var d string
		var s SourceState
		if err := rows.Scan(&d, &s.Rows, &s.MaxIngested); err != nil {
			rows.Close()
			return nil, err
		}
		done[d] = s
	}
	rows.Close()
	var out []string
	for d, s := range src {
		if prev, ok := done[d]; !ok || prev.Rows != s.Rows || !prev.MaxIngested.Equal(s.MaxIngested) {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out, nil
}

// jobContext carries the settings of the job's queries. On a cluster
// (docs/cluster.md) the results are ReplicatedMergeTree tables, which would
// drop a recomputed day's rows as a duplicate of the block inserted before
// the DROP PARTITION: insert_deduplicate=0, a no-op on a single node.
func jobContext(ctx context.Context) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_deduplicate": 0}))
}

// RunDay (re)computes one day ("YYYY-MM-DD"): drops its partitions and
// inserts every goodset and scope again, then logs the run.
func (j *Job) RunDay(ctx context.Context, day string) error {
	if _, err := time.Parse(time.DateOnly, day); err != nil {
		return fmt.Errorf("analytics: bad day %q: %w", day, err)
	}
	start := time.Now()
	ctx = jobContext(ctx)
	src, err := j.Sources(ctx)
	if err != nil {
		return err
	}
	for _, t := range []string{"analytics_distributions", "analytics_hourly", "analytics_verdicts"} {
		if err := j.Conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DROP PARTITION '%s'", t, day)); err != nil {
			return fmt.Errorf("analytics: drop %s %s: %w", t, day, err)
		}
	}
	var agents uint64
	if err := j.Conn.QueryRow(ctx, fmt.Sprintf("SELECT uniq(agent_id) FROM speedtest WHERE toDate(start_time) = toDate('%s')", day)).Scan(&agents); err != nil {
		return fmt.Errorf("analytics: count agents of %s: %w", day, err)
	}
	for _, g := range j.goodsets() {
		for _, sc := range scopes {
			if err := j.runScope(ctx, day, g, sc.name, sc.key, agents); err != nil {
				return err
			}
			if sc.name == "agent" {
				continue
			}
			if err := j.Conn.Exec(ctx, hourlySQL(g, sc.name, sc.key, day)); err != nil {
				return fmt.Errorf("analytics: hourly %s %s %s: %w", day, g.Name, sc.name, err)
			}
		}
	}
	if err := j.Conn.Exec(ctx, verdictsSQL(day)); err != nil {
		return fmt.Errorf("analytics: verdicts %s: %w", day, err)
	}
	s := src[day]
	if err := j.logRun(ctx, day, s, time.Since(start)); err != nil {
		return err
	}
	j.log().Info("analytics: day computed", "day", day, "source_rows", s.Rows, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (j *Job) logRun(ctx context.Context, day string, s SourceState, took time.Duration) error {
	d, _ := time.Parse(time.DateOnly, day)
	batch, err := j.Conn.PrepareBatch(ctx, "INSERT INTO analytics_runs (day, source_rows, source_max_ingested, run_at, duration_s)")
	if err != nil {
		return err
	}
	defer batch.Close()
	if err := batch.Append(d, s.Rows, s.MaxIngested.UTC(), time.Now().UTC(), took.Seconds()); err != nil {
		return err
	}
	return batch.Send()
}

// runScope inserts the distributions of one goodset and scope, in chunks
// of agents for the agent scope.
func (j *Job) runScope(ctx context.Context, day string, g Goodset, scope, key string, agents uint64) error {
	of := 1
	if scope == "agent" {
		of = int(agents/groupsPerChunk) + 1
	}
	for n := 0; n < of; n++ {
		if err := j.Conn.Exec(ctx, distributionsSQL(g, scope, key, day, chunk{n, of})); err != nil {
			return fmt.Errorf("analytics: %s %s %s (part %d of %d): %w", day, g.Name, scope, n+1, of, err)
		}
	}
	return nil
}

// RunScope inserts the distributions of one goodset and scope for a day,
// without dropping what is there: one step of RunDay, for benchmarks.
func (j *Job) RunScope(ctx context.Context, day string, g Goodset, scope string) error {
	ctx = jobContext(ctx)
	for _, sc := range scopes {
		if sc.name == scope {
			return j.runScope(ctx, day, g, sc.name, sc.key, 0)
		}
	}
	return fmt.Errorf("analytics: unknown scope %q", scope)
}

// RunRange recomputes every day from..to (inclusive) that has data,
// reporting progress after each day.
func (j *Job) RunRange(ctx context.Context, from, to time.Time, progress func(done, total int, day string)) error {
	src, err := j.Sources(ctx)
	if err != nil {
		return err
	}
	var days []string
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		if _, ok := src[d.Format(time.DateOnly)]; ok {
			days = append(days, d.Format(time.DateOnly))
		}
	}
	for i, d := range days {
		if err := j.RunDay(ctx, d); err != nil {
			return err
		}
		if progress != nil {
			progress(i+1, len(days), d)
		}
	}
	return nil
}

// RunPending computes the days that changed; what the scheduler calls.
func (j *Job) RunPending(ctx context.Context) (int, error) {
	days, err := j.Pending(ctx)
	if err != nil {
		return 0, err
	}
	for _, d := range days {
		if err := j.RunDay(ctx, d); err != nil {
			return 0, err
		}
	}
	return len(days), nil
}
