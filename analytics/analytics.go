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
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/stats"
	"github.com/neubot/neubot/schemas"
)

// Goodset is a named, versioned rule over measurements. Where is a SQL
// predicate over the metrics of a test, named alike for every test: down and
// up (goodput, Mbit/s) and rtt (ms); see Test.
type Goodset struct {
	Name        string `json:"name"`
	Version     int    `json:"version"`
	Description string `json:"description"`
	Where       string `json:"where"`
	// OnePerAgentDay keeps one test per agent per day among the agent's
	// tests inside the goodset (the rule applies first, then the draw):
	// the test with the least SipHash of the collector's secret draw key
	// and its measurement_uid, so that an agent, which chooses its
	// measurement_uid, cannot choose which of its tests is drawn.
	OnePerAgentDay bool `json:"one_per_agent_day"`
}

// Def is the definition stored with every result computed from g.
func (g Goodset) Def() string {
	b, _ := json.Marshal(g)
	return string(b)
}

// Goodsets are the rules computed by default, for every test apart.
var Goodsets = []Goodset{
	{Name: "all", Version: 1, Description: "every valid test", Where: "1"},
	{Name: "paper2011", Version: 2, Description: "the goodset of the Neubot paper (ISCC 2011): download < 20 Mbit/s and RTT < 100 ms",
		Where: "down < 20 AND rtt < 100"},
	{Name: "paper2011-daily", Version: 2, Description: "paper2011, then one test per agent per day drawn among the agent's tests inside it (keyed draw)",
		Where: "down < 20 AND rtt < 100", OnePerAgentDay: true},
}

// Test is a measurement table the analytics read, and where its three
// metrics are. Each test has its own distributions and goodsets: ndt7's
// figures are never mixed with the speedtest's.
type Test struct {
	Name  string // the test column of the results
	Table string
	Down  string // download goodput, Mbit/s
	Up    string // upload goodput, Mbit/s
	RTT   string // round-trip time, ms
	// Valid selects the tests that completed (failed tests carry no
	// goodput and are in no distribution).
	Valid string
}

const ndt7Valid = "download_present = 1 AND upload_present = 1 AND download_failure = '' AND upload_failure = '' AND download_srv_tcp_present = 1"

// Tests are the tests with distributions. ndt7's round-trip time is the
// minimum RTT TCP_INFO saw during the download (the speedtest's is the
// median of its HTTP round trips): another quantity, another test.
var Tests = []Test{
	{Name: schemas.SpeedtestName, Table: "speedtest", Down: "download_mbps", Up: "upload_mbps", RTT: "rtt_median_ms", Valid: "failure = ''"},
	{Name: "ndt7", Table: "ndt7", Down: "download_goodput_mbps", Up: "upload_goodput_mbps", RTT: "download_srv_tcp_min_rtt_ms", Valid: ndt7Valid},
	{Name: "ndt7-browser", Table: "ndt7_browser", Down: "download_goodput_mbps", Up: "upload_goodput_mbps", RTT: "download_srv_tcp_min_rtt_ms", Valid: ndt7Valid},
}

// LookupTest returns the test named name.
func LookupTest(name string) (Test, bool) {
	for _, t := range Tests {
		if t.Name == name {
			return t, true
		}
	}
	return Test{}, false
}

// Histogram layout: bucket i counts values in [10^((i-20)/10), 10^((i-19)/10)).
const (
	HistBuckets = 60
	histOffset  = 20
)

// BucketLow is the lower edge of histogram bucket i.
func BucketLow(i int) float64 { return math.Pow(10, float64(i-histOffset)/10) }

// Scopes of the distributions: over the agents' daily votes (asn,
// country, all), and of one agent over its own tests (agent).
var scopes = []struct{ name, key string }{
	{"asn", "toString(asn)"},
	{"country", "client_country"},
	{"agent", "agent_pseudonym"}, // never the clear agent_id (spec/trust.md)
	{"all", "''"},
}

// metrics that get distributions: their names in the results, the alias
// of the source column, the column of analytics_agent_days.
var metrics = []struct{ name, src, vote, sum string }{
	{"download_mbps", "down", "download_mbps", "download_sum"},
	{"upload_mbps", "up", "upload_mbps", "upload_sum"},
	{"rtt_ms", "rtt", "rtt_ms", "rtt_sum"},
}

func bucketExpr(col string) string {
	return fmt.Sprintf("toUInt16(greatest(0, least(%d, floor(10 * log10(greatest(%s, 0.000001))) + %d)))", HistBuckets-1, col, histOffset)
}

func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// DayCond selects the rows of a UTC day ("YYYY-MM-DD"), whatever the
// server's time zone: a range of start_time in Unix seconds, which the
// tables' keys (toDate(start_time), toYYYYMM(start_time): monotonic in
// start_time) prune by.
func DayCond(day string) string {
	d, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return "0" // callers validate days; a bad one selects nothing
	}
	return fmt.Sprintf("start_time >= toDateTime(%d) AND start_time < toDateTime(%d)", d.Unix(), d.AddDate(0, 0, 1).Unix())
}

// EligibleSQL is the one filter of the rows every published figure is
// computed from, for test t: publishable (a volunteer who refused
// publication is in no figure), served by a platform server (peer tests
// measure two volunteers' lines at once), arrived before the day closed (a
// closed day's figures never change, schemas.ClosedAfter), and valid (a
// failed test has no goodput). Conditions on the rows (plausibility,
// verification) belong here, and only here.
func EligibleSQL(t Test) string {
	return fmt.Sprintf("consent_can_publish = 1 AND server_peer = 0 AND %s AND (%s)", schemas.OnTimeSQL, t.Valid)
}

// rowsSQL is the eligible rows of test t on day, deduplicated (FINAL: the
// authoritative copy of each measurement), with the metrics under the
// names the goodsets use. The analytics and the API read the same rows.
func rowsSQL(t Test, day string) string {
	return fmt.Sprintf(`SELECT measurement_uid, agent_id, agent_pseudonym, client_asn AS asn, client_org, client_country, synthetic, start_time, test_version,
        %s AS down, %s AS up, %s AS rtt
    FROM %s FINAL WHERE %s AND %s AND %s`, t.Down, t.Up, t.RTT, t.Table, DayCond(day), EligibleSQL(t), trustSQL(t.Table, day))
}

// stageSQL copies the eligible rows of test t on day (rowsSQL: FINAL, the
// trust filter and the daily cap, each computed once) into analytics_rows,
// narrow and sorted by a hash of the agent, which every later query of the
// day reads instead of the measurement table; with each row's local zone
// and hour (ZoneSQL), which the hourly profiles per ASN and country group
// by.
func stageSQL(t Test, day string) string {
	zone, hour := ZoneSQL()
	return fmt.Sprintf(`INSERT INTO analytics_rows (day, test, uid, agent_id, agent_hash, agent_pseudonym, asn, client_org, client_country,
    synthetic, start_time, test_version, down, up, rtt, local_zone, local_hour)
SELECT toDate('%s'), %s, measurement_uid, agent_id, cityHash64(toString(agent_id)), agent_pseudonym, asn, client_org, client_country,
    synthetic, start_time, test_version, down, up, rtt, %s, %s
FROM (%s)`, day, quote(t.Name), zone, hour, rowsSQL(t, day))
}

// stagedSQL is the staged rows of test t on day (stageSQL), of one chunk
// of agents: a range of agent_hash, which the table's sorting key prunes.
func stagedSQL(t Test, day string, ch chunk) string {
	where := ""
	if ch.of > 1 {
		step := math.MaxUint64 / uint64(ch.of)
		where = fmt.Sprintf(" AND agent_hash >= %d", uint64(ch.n)*step)
		if ch.n < ch.of-1 {
			where += fmt.Sprintf(" AND agent_hash < %d", uint64(ch.n+1)*step)
		}
	}
	return fmt.Sprintf(`SELECT uid AS measurement_uid, agent_id, agent_pseudonym, asn, client_org, client_country, synthetic, start_time, test_version, down, up, rtt,
        local_zone, local_hour
    FROM analytics_rows WHERE day = toDate('%s') AND test = %s%s`, day, quote(t.Name), where)
}

// source is the rows of one day with c, 1 for the tests in the goodset;
// for a goodset that draws, 1 only for the drawn test of each agent (and
// network) among its tests in the goodset. ch restricts it to one chunk of
// agents when the scope has many groups (see chunk); the draw is per agent,
// so within the chunk. The rows are the staged ones (stageSQL).
func source(t Test, g Goodset, day string, key []byte, ch chunk) string {
	rows := stagedSQL(t, day, ch)
	cond := "(" + g.Where + ")"
	if g.OnePerAgentDay {
		// GLOBAL: on a cluster the subquery must see every shard (it runs
		// once, where the query arrived); the same as IN on one node.
		cond += fmt.Sprintf(" AND measurement_uid GLOBAL IN (SELECT argMin(measurement_uid, %s) FROM (%s) WHERE %s GROUP BY agent_id, asn)",
			drawHash(key), rows, cond)
	}
	return fmt.Sprintf("(SELECT *, toUInt8(%s) AS c FROM (%s))", cond, rows)
}

// drawHash orders an agent's tests for the draw: SipHash of the secret key
// (hex) and the measurement_uid. ClickHouse 18.16 has no keyed SipHash, so
// the key prefixes the message; without the key, the order cannot be
// predicted, and so not steered by choosing measurement_uids.
func drawHash(key []byte) string {
	return fmt.Sprintf("sipHash64(concat('%s', toString(measurement_uid)))", hex.EncodeToString(key))
}

// QuantileSQL is internal/stats.Quantile in ClickHouse: the p-quantile
// (type 7) of the sorted array arr of n elements; nan when n is 0.
func QuantileSQL(arr, n string, p float64) string {
	h := fmt.Sprintf("((%s - 1) * %v)", n, p)
	return fmt.Sprintf("if(%[2]s = 0, nan, %[1]s[toUInt64(floor(%[3]s)) + 1] + (%[3]s - floor(%[3]s)) * (%[1]s[least(toUInt64(floor(%[3]s)) + 2, toUInt64(%[2]s))] - %[1]s[toUInt64(floor(%[3]s)) + 1]))", arr, n, h)
}

// ciRankSQL is the lower rank of stats.MedianCIRanks for n votes: looked
// up for up to stats.MedianCIExact votes (transform: a hash table built
// once per block, where indexing a constant array would copy it per row),
// the normal approximation above.
func ciRankSQL(n string) string {
	var from, to strings.Builder
	for i := 1; i <= stats.MedianCIExact; i++ {
		lo, _ := stats.MedianCIRanks(i)
		if i > 1 {
			from.WriteString(",")
			to.WriteString(",")
		}
		from.WriteString(strconv.Itoa(i))
		to.WriteString(strconv.Itoa(lo))
	}
	return fmt.Sprintf("if(%[1]s > %[2]d, toUInt64(floor(%[1]s / 2 - 0.98 * sqrt(%[1]s) + 0.5)), toUInt64(transform(toUInt16(least(greatest(%[1]s, 1), %[2]d)), [%[3]s], [%[4]s], toUInt16(1))))",
		n, stats.MedianCIExact, from.String(), to.String())
}

// ciSQL is the 95% confidence interval of the median of the sorted array
// arr of n elements (stats.MedianCI); nan, nan for none.
func ciSQL(arr, n string) (lo, hi string) {
	r := ciRankSQL(n)
	return fmt.Sprintf("if(%[2]s = 0, nan, %[1]s[%[3]s])", arr, n, r),
		fmt.Sprintf("if(%[2]s = 0, nan, %[1]s[toUInt64(%[2]s + 1 - %[3]s)])", arr, n, r)
}

// medianOf is the median (stats.Median) of the values of col for which
// cond holds, in a GROUP BY; nan for none. ClickHouse's quantileExact(p)
// is the order statistic of rank floor(p n) + 1: at p = 0.5 the upper of
// the two middle values for an even n, and just below 0.5 the lower one
// (for n below 5·10^7), so their mean is the type-7 median, without
// building and sorting an array per group.
func medianOf(col, cond string) string {
	return fmt.Sprintf("if(countIf(%[2]s) = 0, nan, (quantileExactIf(0.49999999)(%[1]s, %[2]s) + quantileExactIf(0.5)(%[1]s, %[2]s)) / 2)", col, cond)
}

// agentDaysSQL computes the votes: per agent (and network), its tests and
// the median of its day inside the goodset.
func agentDaysSQL(t Test, g Goodset, day string, key []byte) string {
	var aggs, sums []string
	for _, m := range metrics {
		aggs = append(aggs, medianOf(m.src, "c"))
		sums = append(sums, fmt.Sprintf("sumIf(%s, c)", m.src))
	}
	return fmt.Sprintf(`INSERT INTO analytics_agent_days (day, test, goodset, goodset_version, synthetic, agent_id, asn, org, country,
    tests_total, tests, test_versions, download_mbps, upload_mbps, rtt_ms, download_sum, upload_sum, rtt_sum)
SELECT toDate('%[1]s'), %[2]s, %[3]s, %[4]d, synthetic, agent_id, asn, min(client_org), min(client_country), count(), countIf(c),
    arraySort(groupUniqArrayIf(test_version, c = 1)), %[5]s, %[6]s
FROM %[7]s
GROUP BY synthetic, agent_id, asn`, day, quote(t.Name), quote(g.Name), g.Version, strings.Join(aggs, ", "), strings.Join(sums, ", "), source(t, g, day, key, chunk{0, 1}))
}

// chunk n of `of`: a scope with many groups (agents) is computed in parts,
// so that ClickHouse 18.16, which turns a GROUP BY result into one block,
// never holds the histograms of every agent at once.
type chunk struct{ n, of int }

// groupsPerChunk bounds the groups of one query of the agent scope.
var groupsPerChunk uint64 = 50_000

// distSpec is what a distributions query aggregates: from where, by what
// key, how each row votes.
type distSpec struct {
	from      string // a table or subquery
	group     string // GROUP BY beyond day, key, synthetic
	key       string
	base      string // tests_total, tests, agents, agents_total, votes, test_versions AS expressions
	value     func(m int) string
	cond      string // a row votes when cond holds
	weighting string
}

// distributionsSQL computes one goodset and scope for one day. It is built
// in layers because ClickHouse 18.16's lambdas cannot see a column defined
// at their own level: aggregate; split the sparse histogram; make it dense;
// unpivot the metrics; take the percentiles from the sorted votes; find the
// modes. The modes compare each bucket with its neighbours through shifted
// copies of the histogram, not a lambda that indexes it: a lambda capturing
// an array column copies it once per element (60 x 60 per row, 130 GB for
// 833,333 agents).
func distributionsSQL(t Test, g Goodset, scope, day string, sp distSpec) string {
	var aggs, split, dense, tuples []string
	base := "day, key, org, country, synthetic, tests_total, tests, agents, agents_total, votes, test_versions"
	l2, l3 := base, base // the columns each layer passes on, by name
	for i := range metrics {
		p := fmt.Sprintf("m%d_", i)
		v := sp.value(i)
		aggs = append(aggs,
			fmt.Sprintf("avgIf(%s, %s) AS %smean", v, sp.cond, p),
			fmt.Sprintf("arraySort(groupArrayIf(%s, %s)) AS %ss", v, sp.cond, p),
			fmt.Sprintf("sumMapIf([%s], [toUInt64(1)], %s) AS %ssm", bucketExpr(v), sp.cond, p))
		split = append(split, fmt.Sprintf("tupleElement(%[1]ssm, 1) AS %[1]sk, tupleElement(%[1]ssm, 2) AS %[1]sv", p))
		// "0 * length(...)": ClickHouse 18.16 drops subquery columns that
		// only a lambda uses; naming them outside it keeps them.
		dense = append(dense, fmt.Sprintf("arrayMap(i -> if(indexOf(%[1]sk, toUInt16(i)) = 0, toUInt64(0), %[1]sv[indexOf(%[1]sk, toUInt16(i))]), range(toUInt64(%[2]d + 0 * (length(%[1]sk) + length(%[1]sv))))) AS %[1]shist", p, HistBuckets))
		tuples = append(tuples, fmt.Sprintf("(%s, %smean, %ss, %shist)", quote(metrics[i].name), p, p, p))
		l2 += fmt.Sprintf(", %[1]smean, %[1]ss", p)
		l3 += fmt.Sprintf(", %[1]smean, %[1]ss, %[1]sk, %[1]sv", p)
	}
	ciLo, ciHi := ciSQL("s", "n")
	group := "key, synthetic"
	if sp.group != "" {
		group += ", " + sp.group
	}
	return fmt.Sprintf(`INSERT INTO analytics_distributions (day, test, goodset, goodset_version, goodset_def, scope, key, org, country,
    synthetic, metric, weighting, tests_total, tests, agents, agents_total, test_versions, mean, p10, p25, p50, p50_ci_low, p50_ci_high, p75, p90, hist, modes)
SELECT day, %[14]s, %[1]s, %[2]d, %[3]s, %[4]s, key, org, country, synthetic, metric, %[15]s, tests_total, tests, agents, agents_total, test_versions,
    mean, %[16]s, %[17]s, %[18]s, %[19]s, %[20]s, %[21]s, %[22]s, hist,
    arrayMap(i -> round(pow(10, (i - 1 - %[5]d + 0.5) / 10), 3),
        arrayFilter((i, h, prev, next) -> h >= 0.05 * votes AND h > prev AND h >= next,
            arrayEnumerate(hist), hist, arrayPushFront(arrayPopBack(hist), toUInt64(0 * votes)), arrayPushBack(arrayPopFront(hist), toUInt64(0)))) AS modes
FROM (
    SELECT day, key, org, country, synthetic, tests_total, tests, agents, agents_total, votes, test_versions,
        tupleElement(m, 1) AS metric, tupleElement(m, 2) AS mean, tupleElement(m, 3) AS s, length(s) AS n, tupleElement(m, 4) AS hist
    FROM (
        SELECT %[13]s, %[10]s
        FROM (
            SELECT %[12]s, %[11]s
            FROM (
                SELECT toDate('%[23]s') AS day, %[6]s AS key, min(client_org) AS org, min(client_country) AS country, synthetic,
                    %[24]s,
                    %[7]s
                FROM %[8]s
                GROUP BY %[25]s
            )
        )
    )
    ARRAY JOIN [%[9]s] AS m
    WHERE votes > 0
)`,
		quote(g.Name), g.Version, quote(g.Def()), quote(scope), histOffset, sp.key,
		strings.Join(aggs, ",\n                    "), sp.from, strings.Join(tuples, ", "),
		strings.Join(dense, ", "), strings.Join(split, ", "), l2, l3,
		quote(t.Name), quote(sp.weighting),
		QuantileSQL("s", "n", 0.1), QuantileSQL("s", "n", 0.25), QuantileSQL("s", "n", 0.5), ciLo, ciHi,
		QuantileSQL("s", "n", 0.75), QuantileSQL("s", "n", 0.9), day, sp.base, group)
}

// agentsSpec: the distribution over the agents' votes of the day (one per
// agent and network), from analytics_agent_days.
func agentsSpec(t Test, g Goodset, scope, key, day string) distSpec {
	return distSpec{
		// The votes' counts renamed: the aggregates take their names.
		from: fmt.Sprintf(`(SELECT agent_id, asn, org AS client_org, country AS client_country, synthetic, tests_total AS vtotal, tests AS vtests, test_versions AS vversions, download_mbps, upload_mbps, rtt_ms
    FROM analytics_agent_days WHERE day = toDate('%s') AND test = %s AND goodset = %s AND goodset_version = %d)`,
			day, quote(t.Name), quote(g.Name), g.Version),
		key:       key,
		base:      "sum(vtotal) AS tests_total, sum(vtests) AS tests, uniqExactIf(agent_id, vtests > 0) AS agents, uniqExact(agent_id) AS agents_total, countIf(vtests > 0) AS votes, arraySort(groupUniqArrayArray(vversions)) AS test_versions",
		value:     func(m int) string { return metrics[m].vote },
		cond:      "vtests > 0",
		weighting: "agents",
	}
}

// testsSpec: the distribution over one agent's own tests (scope agent).
func testsSpec(t Test, g Goodset, key, day string, drawKey []byte, ch chunk) distSpec {
	return distSpec{
		from:      source(t, g, day, drawKey, ch),
		key:       key,
		base:      "count() AS tests_total, countIf(c) AS tests, toUInt64(tests > 0) AS agents, toUInt64(1) AS agents_total, tests AS votes, arraySort(groupUniqArrayIf(test_version, c = 1)) AS test_versions",
		value:     func(m int) string { return metrics[m].src },
		cond:      "c",
		weighting: "tests",
	}
}

// CountryZones maps a country (ISO 3166-1 alpha-2) with a single time zone
// to it: hour-of-day profiles of its volunteers are in its local time.
// Countries with several zones (US, CA, RU, BR, AU, MX, ES, PT, ID, ...)
// are not here: their profiles, and the overall one, are in UTC.
var CountryZones = map[string]string{
	"AT": "Europe/Vienna", "BE": "Europe/Brussels", "BG": "Europe/Sofia", "CH": "Europe/Zurich", "CZ": "Europe/Prague",
	"DE": "Europe/Berlin", "DK": "Europe/Copenhagen", "EE": "Europe/Tallinn", "FI": "Europe/Helsinki", "FR": "Europe/Paris",
	"GB": "Europe/London", "GR": "Europe/Athens", "HR": "Europe/Zagreb", "HU": "Europe/Budapest", "IE": "Europe/Dublin",
	"IT": "Europe/Rome", "LT": "Europe/Vilnius", "LU": "Europe/Luxembourg", "LV": "Europe/Riga", "NL": "Europe/Amsterdam",
	"NO": "Europe/Oslo", "PL": "Europe/Warsaw", "RO": "Europe/Bucharest", "RS": "Europe/Belgrade", "SE": "Europe/Stockholm",
	"SI": "Europe/Ljubljana", "SK": "Europe/Bratislava", "UA": "Europe/Kyiv", "IL": "Asia/Jerusalem", "IN": "Asia/Kolkata",
	"JP": "Asia/Tokyo", "KR": "Asia/Seoul", "CN": "Asia/Shanghai", "ZA": "Africa/Johannesburg", "NZ": "Pacific/Auckland",
}

// ZoneSQL is the zone of a row's country and the hour of its start there
// (columns client_country and start_time).
func ZoneSQL() (zone, hour string) {
	cs := make([]string, 0, len(CountryZones))
	for c := range CountryZones {
		cs = append(cs, c)
	}
	sort.Strings(cs)
	var z, h []string
	for _, c := range cs {
		z = append(z, fmt.Sprintf("client_country = '%s', '%s'", c, CountryZones[c]))
		h = append(h, fmt.Sprintf("client_country = '%s', toHour(start_time, '%s')", c, CountryZones[c]))
	}
	return "multiIf(" + strings.Join(z, ", ") + ", 'UTC')", "multiIf(" + strings.Join(h, ", ") + ", toHour(start_time, 'UTC'))"
}

// hourlySQL computes the hour-of-day profile of one goodset and scope:
// per hour, the median over agents of each agent's median in that hour,
// in local time where the country has one zone (the staged local_zone and
// local_hour, stageSQL; scope all: UTC).
func hourlySQL(t Test, g Goodset, scope, keyExpr, day string, key []byte) string {
	zone, hour := "local_zone", "local_hour"
	if scope == "all" {
		zone, hour = "'UTC'", "toHour(start_time, 'UTC')"
	}
	var med, arrs, tuples []string
	for i, m := range metrics {
		med = append(med, fmt.Sprintf("%s AS v%d", medianOf(m.src, "c"), i))
		arrs = append(arrs, fmt.Sprintf("arraySort(groupArray(v%d)) AS s%d", i, i))
		tuples = append(tuples, fmt.Sprintf("(%s, s%d)", quote(m.name), i))
	}
	return fmt.Sprintf(`INSERT INTO analytics_hourly (day, test, goodset, goodset_version, scope, key, synthetic, metric, hour, zone, tests, agents, p50)
SELECT day, %[1]s, %[2]s, %[3]d, %[4]s, key, synthetic, tupleElement(m, 1), hour, zone, tests, agents, %[5]s
FROM (
    SELECT day, key, synthetic, hour, zone, tests, agents, m, length(tupleElement(m, 2)) AS n
    FROM (
        SELECT toDate('%[6]s') AS day, key, synthetic, hour, zone, sum(nt) AS tests, count() AS agents, %[7]s
        FROM (
            SELECT %[8]s AS key, synthetic, %[9]s AS hour, %[10]s AS zone, agent_id, countIf(c) AS nt, %[11]s
            FROM %[12]s
            GROUP BY key, synthetic, hour, zone, agent_id
            HAVING nt > 0
        )
        GROUP BY key, synthetic, hour, zone
    )
    ARRAY JOIN [%[13]s] AS m
)`, quote(t.Name), quote(g.Name), g.Version, quote(scope), QuantileSQL("tupleElement(m, 2)", "n", 0.5), day,
		strings.Join(arrs, ", "), keyExpr, hour, zone, strings.Join(med, ", "), source(t, g, day, key, chunk{0, 1}), strings.Join(tuples, ", "))
}

// Job computes the analytics of days.
type Job struct {
	Conn     driver.Conn
	Logger   *slog.Logger
	Goodsets []Goodset // Goodsets when nil
	// DrawKey is the collector's secret that keys the one-per-agent-per-day
	// draw (see Goodset.OnePerAgentDay). Without it the goodsets that draw
	// are not computed (an unkeyed draw could be steered).
	DrawKey []byte
	// PerAgent also computes the agent scope: one agent's distribution over
	// its own tests (test-weighted), the speedtest's, once a day for the
	// first goodset. Off by default: nothing serves it (the API and the
	// pages serve asn, country and all), and at 10 M rows a day it cost more
	// than every other figure of the goodset together.
	PerAgent bool
}

func (j *Job) goodsets() []Goodset {
	if j.Goodsets != nil {
		return j.Goodsets
	}
	return Goodsets
}

// exec runs one step of the job, logging how long it took (debug level).
func (j *Job) exec(ctx context.Context, what, sql string) error {
	start := time.Now()
	err := j.Conn.Exec(ctx, sql)
	j.log().Debug("analytics: step", "what", what, "bytes", len(sql), "took", time.Since(start).Round(time.Millisecond), "err", err)
	return err
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
	var parts []string
	for _, t := range append([]string{"bittorrent"}, testTables()...) {
		parts = append(parts, fmt.Sprintf("SELECT toString(toDate(start_time, 'UTC')) AS d, countIf(%[1]s) AS n, maxIf(ingested_at, %[1]s) AS m FROM %[2]s GROUP BY d", schemas.OnTimeSQL, t))
	}
	return j.sourceStates(ctx, "SELECT d, sum(n), max(m) FROM (\n"+strings.Join(parts, "\nUNION ALL\n")+"\n) GROUP BY d")
}

// sourceStates runs query, whose rows are a day (a string) and its
// SourceState's two fields, and returns them by day.
func (j *Job) sourceStates(ctx context.Context, query string) (map[string]SourceState, error) {
	type dayState struct {
		day   string
		state SourceState
	}
	days, err := chdb.Select(ctx, j.Conn, func(rows driver.Rows, x *dayState) error {
		return rows.Scan(&x.day, &x.state.Rows, &x.state.MaxIngested)
	}, query)
	if err != nil {
		return nil, err
	}
	out := make(map[string]SourceState, len(days))
	for _, x := range days {
		out[x.day] = x.state
	}
	return out, nil
}

// Pending returns, oldest first, the days whose source rows changed since
// they were last computed (or were never computed).
func (j *Job) Pending(ctx context.Context) ([]string, error) {
	src, err := j.Sources(ctx)
	if err != nil {
		return nil, err
	}
	done, err := j.sourceStates(ctx, "SELECT toString(day), argMax(source_rows, run_at), argMax(source_max_ingested, run_at) FROM analytics_runs GROUP BY day")
	if err != nil {
		return nil, err
	}
	// Days computed before migration 9 hold test-weighted figures outside
	// the agent scope: they are computed again, by the current method.
	old := map[string]bool{}
	rows, err := j.Conn.Query(ctx, "SELECT DISTINCT toString(day) FROM analytics_distributions WHERE weighting = 'tests' AND scope != 'agent'")
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			return nil, err
		}
		old[d] = true
	}
	rows.Close()
	var out []string
	for d, s := range src {
		if prev, ok := done[d]; !ok || old[d] || prev.Rows != s.Rows || !prev.MaxIngested.Equal(s.MaxIngested) {
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
	if _, err := time.Parse("2006-01-02", day); err != nil {
		return fmt.Errorf("analytics: bad day %q: %w", day, err)
	}
	start := time.Now()
	ctx = jobContext(ctx)
	src, err := j.Sources(ctx)
	if err != nil {
		return err
	}
	for _, t := range []string{"analytics_rows", "analytics_agent_days", "analytics_distributions", "analytics_hourly", "analytics_verdicts"} {
		if err := j.Conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DROP PARTITION '%s'", t, day)); err != nil {
			return fmt.Errorf("analytics: drop %s %s: %w", t, day, err)
		}
	}
	for _, t := range Tests {
		rows, agents, err := j.stage(ctx, t, day)
		if err != nil {
			return err
		}
		if rows == 0 {
			continue
		}
		perAgent := j.PerAgent && t.Name == schemas.SpeedtestName // one agent's own distribution: the speedtest's only
		for _, g := range j.goodsets() {
			if g.OnePerAgentDay && len(j.DrawKey) == 0 {
				j.log().Warn("analytics: no draw key, goodset not computed", "goodset", g.Name)
				continue
			}
			if err := j.runGoodset(ctx, day, t, g, agents, perAgent); err != nil {
				return err
			}
			perAgent = false
		}
	}
	if err := j.Conn.Exec(ctx, verdictsSQL(day)); err != nil {
		return fmt.Errorf("analytics: verdicts %s: %w", day, err)
	}
	if err := j.unstage(ctx, day); err != nil {
		return err
	}
	s := src[day]
	if err := j.logRun(ctx, day, s, time.Since(start)); err != nil {
		return err
	}
	j.log().Info("analytics: day computed", "day", day, "source_rows", s.Rows, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (j *Job) logRun(ctx context.Context, day string, s SourceState, took time.Duration) error {
	d, _ := time.Parse("2006-01-02", day)
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

// stage copies the eligible rows of test t on day into analytics_rows
// (stageSQL) and returns how many rows and (about) how many agents it has.
func (j *Job) stage(ctx context.Context, t Test, day string) (rows, agents uint64, err error) {
	if err := j.exec(ctx, "stage", stageSQL(t, day)); err != nil {
		return 0, 0, fmt.Errorf("analytics: stage %s %s: %w", day, t.Name, err)
	}
	q := fmt.Sprintf("SELECT count(), uniq(agent_id) FROM analytics_rows WHERE day = toDate('%s') AND test = %s", day, quote(t.Name))
	if err := j.Conn.QueryRow(ctx, q).Scan(&rows, &agents); err != nil {
		return 0, 0, fmt.Errorf("analytics: count %s of %s: %w", t.Name, day, err)
	}
	return rows, agents, nil
}

// unstage drops the staged rows of day: a scratch copy, kept only while
// the day is computed.
func (j *Job) unstage(ctx context.Context, day string) error {
	if err := j.Conn.Exec(ctx, fmt.Sprintf("ALTER TABLE analytics_rows DROP PARTITION '%s'", day)); err != nil {
		return fmt.Errorf("analytics: drop analytics_rows %s: %w", day, err)
	}
	return nil
}

// testTables are the measurement tables with distributions.
func testTables() []string {
	var out []string
	for _, t := range Tests {
		out = append(out, t.Table)
	}
	return out
}

// runGoodset computes the votes of one test and goodset, then every scope;
// the agent scope only with perAgent (see Job.PerAgent).
func (j *Job) runGoodset(ctx context.Context, day string, t Test, g Goodset, agents uint64, perAgent bool) error {
	if err := j.exec(ctx, "votes", agentDaysSQL(t, g, day, j.DrawKey)); err != nil {
		return fmt.Errorf("analytics: votes %s %s %s: %w", day, t.Name, g.Name, err)
	}
	for _, sc := range scopes {
		if sc.name == "agent" && !perAgent {
			continue
		}
		if err := j.runScope(ctx, day, t, g, sc.name, sc.key, agents); err != nil {
			return err
		}
		if sc.name == "agent" {
			continue
		}
		if err := j.exec(ctx, "hourly", hourlySQL(t, g, sc.name, sc.key, day, j.DrawKey)); err != nil {
			return fmt.Errorf("analytics: hourly %s %s %s %s: %w", day, t.Name, g.Name, sc.name, err)
		}
	}
	return nil
}

// runScope inserts the distributions of one goodset and scope: over the
// agents' votes, or for the agent scope over each agent's own tests, in
// chunks of agents.
func (j *Job) runScope(ctx context.Context, day string, t Test, g Goodset, scope, key string, agents uint64) error {
	if scope != "agent" {
		if err := j.exec(ctx, "distributions", distributionsSQL(t, g, scope, day, agentsSpec(t, g, scope, key, day))); err != nil {
			return fmt.Errorf("analytics: %s %s %s %s: %w", day, t.Name, g.Name, scope, err)
		}
		return nil
	}
	of := int(agents/groupsPerChunk) + 1
	for n := 0; n < of; n++ {
		sp := testsSpec(t, g, key, day, j.DrawKey, chunk{n, of})
		sp.group = "agent_id"
		if err := j.exec(ctx, "agent distributions", distributionsSQL(t, g, scope, day, sp)); err != nil {
			return fmt.Errorf("analytics: %s %s %s %s (part %d of %d): %w", day, t.Name, g.Name, scope, n+1, of, err)
		}
	}
	return nil
}

// RunScope stages the speedtest's rows of one day, computes their votes
// for goodset g, then the distributions of one scope, without dropping the
// results that are there: one step of RunDay, for benchmarks.
func (j *Job) RunScope(ctx context.Context, day string, g Goodset, scope string) error {
	ctx = jobContext(ctx)
	t := Tests[0]
	for _, sc := range scopes {
		if sc.name == scope {
			if err := j.unstage(ctx, day); err != nil {
				return err
			}
			_, agents, err := j.stage(ctx, t, day)
			if err != nil {
				return err
			}
			if err := j.exec(ctx, "votes", agentDaysSQL(t, g, day, j.DrawKey)); err != nil {
				return err
			}
			if err := j.runScope(ctx, day, t, g, sc.name, sc.key, agents); err != nil {
				return err
			}
			return j.unstage(ctx, day)
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
		if _, ok := src[d.Format("2006-01-02")]; ok {
			days = append(days, d.Format("2006-01-02"))
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

// trustSQL is the condition of the rows of table on day that count in
// figures (spec/trust.md): verified and plausible (schemas.FiguresSQL), and
// among the first schemas.MaxTestsPerAgentDay of their agent that day, so
// that one agent testing in a loop weighs no more than a busy volunteer.
// A separate clause that the figures' queries keep.
func trustSQL(table, day string) string {
	return fmt.Sprintf(`%[3]s AND measurement_uid GLOBAL IN (SELECT arrayJoin(arraySlice(arrayMap(t -> tupleElement(t, 2), arraySort(groupArray((start_time, measurement_uid)))), 1, %[4]d))
        FROM %[1]s FINAL WHERE %[2]s AND %[5]s AND %[3]s GROUP BY agent_id)`,
		table, DayCond(day), schemas.FiguresSQL, schemas.MaxTestsPerAgentDay, schemas.OnTimeSQL)
}
