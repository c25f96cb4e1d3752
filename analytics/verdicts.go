package analytics

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/internal/stats"
	"github.com/neubot/neubot/schemas"
)

// The verdicts of the differential tests per ISP and day: how many tests
// said differentiation, none, inconclusive or blocked, and the share of
// differentiation among the conclusive ones with its 95% Wilson score
// interval. Inconclusive tests are counted but left out of the share: a test
// that could not decide says nothing about the ISP either way.
//
// Tests are not independent votes: one busy agent (a volunteer who runs a
// test every 15 minutes, or a broken line) would outvote the rest. So each
// agent also casts one vote per ISP and day: differentiation when most of
// its conclusive tests that day said differentiation or blocked, none when
// not (ties: none); agents without a conclusive test do not vote. Whether
// an ISP differentiates on a day is then a one-sided binomial test of the
// votes against NullRate, the rate at which an agent on a neutral line votes
// differentiation by chance; and since many ISPs and days are tested at
// once, the days flagged are those whose Benjamini–Hochberg q-value, over
// every ISP and day of the period asked (FDR), is at most FDRLevel
// (spec/bittorrent.md, "Verdicts per ISP").

// NullRate is the probability that an agent on a neutral line votes
// differentiation on a day: the test's false-alarm target (at most 1 in 20
// tests on a neutral link, bench/bittorrent).
const NullRate = 0.05

// FDRLevel is the false discovery rate the flags control.
const FDRLevel = 0.05

// wilsonZ is the normal quantile of the interval (95%).
const wilsonZ = 1.96

// verdictsSQL fills analytics_verdicts for one day from the bittorrent
// table: per ASN, synthetic flag and direction (any: the test's outcome),
// counting tests and agents' votes.
func verdictsSQL(day string) string {
	// Wilson: centre (p + z²/2n) / (1 + z²/n), half-width
	// z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²), with n = d + e conclusive
	// tests and p = d / n.
	z2 := wilsonZ * wilsonZ
	centre := fmt.Sprintf("(share + %[1]g / (2 * c)) / (1 + %[1]g / c)", z2)
	half := fmt.Sprintf("%[1]g / (1 + %[2]g / c) * sqrt(share * (1 - share) / c + %[2]g / (4 * c * c))", wilsonZ, z2)
	return fmt.Sprintf(`INSERT INTO analytics_verdicts (day, test, asn, org, country, synthetic, direction, tests, agents,
    differentiation_tests, none_tests, inconclusive_tests, share, share_lo, share_hi, blocked_tests, agent_votes, agents_differentiation)
SELECT day, 'bittorrent', asn, org, country, synthetic, direction, tests, agents, d, e, i,
    share, if(c = 0, 0, greatest(0, %[2]s - %[3]s)), if(c = 0, 1, least(1, %[2]s + %[3]s)), b, votes, vd
FROM (
    SELECT day, asn, org, country, synthetic, direction, tests, agents, d, e, i, b, votes, vd,
        toFloat64(d + e) AS c, if(c = 0, 0, d / c) AS share
    FROM (
        SELECT day, asn, min(a_org) AS org, min(a_country) AS country, synthetic, direction,
            sum(n) AS tests, count() AS agents, sum(ad) AS d, sum(ae) AS e, sum(ai) AS i, sum(ab) AS b,
            countIf(ad + ab + ae > 0) AS votes, countIf(ad + ab > ae) AS vd
        FROM (
            SELECT toDate(start_time, 'UTC') AS day, client_asn AS asn, min(client_org) AS a_org, min(client_country) AS a_country, synthetic,
                tupleElement(o, 1) AS direction, agent_id, count() AS n,
                countIf(tupleElement(o, 2) = 'differentiation') AS ad, countIf(tupleElement(o, 2) = 'none') AS ae,
                countIf(tupleElement(o, 2) = 'inconclusive') AS ai, countIf(tupleElement(o, 2) = 'blocked') AS ab
            FROM (SELECT * FROM bittorrent FINAL WHERE %[5]s AND %[4]s AND consent_can_publish = 1 AND server_peer = 0 AND %[6]s)
            ARRAY JOIN [('any', outcome), ('download', download_outcome), ('upload', upload_outcome)] AS o
            GROUP BY day, asn, synthetic, direction, agent_id
        )
        GROUP BY day, asn, synthetic, direction
    )
)`, day, centre, half, schemas.OnTimeSQL, DayCond(day), trustSQL("bittorrent", day))
}

// Verdict is one row of analytics_verdicts.
type Verdict struct {
	Day       time.Time `json:"day"`
	Test      string    `json:"test"`
	ASN       uint32    `json:"asn"`
	Org       string    `json:"org"`
	Country   string    `json:"country"`
	Synthetic bool      `json:"synthetic"`
	// Direction is "any" (the outcome of the test), "download" or "upload".
	Direction string `json:"direction"`
	Tests     uint64 `json:"tests"`
	Agents    uint64 `json:"agents"`
	VerdictCounts
	// PValue is the one-sided binomial p-value of the votes against
	// NullRate (1 without votes).
	PValue float64 `json:"p_value"`
}

// VerdictCounts are the outcomes of the tests of a verdict and the votes
// of its agents; publish sums them over days (VerdictCounts.Add).
type VerdictCounts struct {
	Differentiation uint64 `json:"differentiation"`
	None            uint64 `json:"none"`
	Inconclusive    uint64 `json:"inconclusive"`
	// Share is Differentiation / (Differentiation + None); ShareLo and
	// ShareHi bound it (95% Wilson score interval).
	Share   float64 `json:"share"`
	ShareLo float64 `json:"share_lo"`
	ShareHi float64 `json:"share_hi"`
	// Blocked counts the tests whose outcome is blocked.
	Blocked uint64 `json:"blocked"`
	// AgentVotes is the agents with a conclusive test, one vote each;
	// AgentsDifferentiation those whose vote is differentiation.
	AgentVotes            uint64 `json:"agent_votes"`
	AgentsDifferentiation uint64 `json:"agents_differentiation"`
}

// Add adds the counts of x to c and sets the share and its interval over
// the sums.
func (c *VerdictCounts) Add(x VerdictCounts) {
	c.Differentiation += x.Differentiation
	c.None += x.None
	c.Inconclusive += x.Inconclusive
	c.Blocked += x.Blocked
	c.AgentVotes += x.AgentVotes
	c.AgentsDifferentiation += x.AgentsDifferentiation
	c.Share, c.ShareLo, c.ShareHi = 0, 0, 0
	if n := c.Differentiation + c.None; n > 0 {
		c.Share = float64(c.Differentiation) / float64(n)
		c.ShareLo, c.ShareHi = stats.Wilson(c.Differentiation, n, 1.96)
	}
}

// Verdicts returns the verdicts of ASN asn for the days from..to
// (inclusive, UTC), real and synthetic, ordered by day, test, direction.
func Verdicts(ctx context.Context, conn driver.Conn, asn uint32, from, to time.Time) ([]Verdict, error) {
	rows, err := conn.Query(ctx, `SELECT day, test, asn, org, country, synthetic, direction, tests, agents,
    differentiation_tests, none_tests, inconclusive_tests, share, share_lo, share_hi, blocked_tests, agent_votes, agents_differentiation
FROM analytics_verdicts
WHERE asn = ? AND day >= toDate(?) AND day <= toDate(?)
ORDER BY day, test, direction, synthetic`, asn, from.UTC().Format("2006-01-02"), to.UTC().Format("2006-01-02"))
	if err != nil {
		return nil, fmt.Errorf("analytics: verdicts: %w", err)
	}
	defer rows.Close()
	out := []Verdict{}
	for rows.Next() {
		var v Verdict
		var synth uint8
		if err := rows.Scan(&v.Day, &v.Test, &v.ASN, &v.Org, &v.Country, &synth, &v.Direction, &v.Tests, &v.Agents,
			&v.Differentiation, &v.None, &v.Inconclusive, &v.Share, &v.ShareLo, &v.ShareHi, &v.Blocked, &v.AgentVotes, &v.AgentsDifferentiation); err != nil {
			return nil, fmt.Errorf("analytics: verdicts: %w", err)
		}
		v.Synthetic = synth == 1
		v.PValue = stats.BinomialTail(v.AgentsDifferentiation, v.AgentVotes, NullRate)
		out = append(out, v)
	}
	return out, rows.Err()
}

// DayKey names one hypothesis of a family: an ISP on a day.
type DayKey struct {
	ASN uint32
	Day string // 2006-01-02
}

// QValues returns the Benjamini–Hochberg q-values of every ISP and day of
// from..to with agent votes, for one test, direction and synthetic flag:
// the family over which FDRLevel is controlled. A day is flagged when its
// q-value is at most FDRLevel.
func QValues(ctx context.Context, conn driver.Conn, test, direction string, synthetic bool, from, to time.Time) (map[DayKey]float64, error) {
	var syn uint8
	if synthetic {
		syn = 1
	}
	rows, err := conn.Query(ctx, `SELECT asn, toString(day), agent_votes, agents_differentiation FROM analytics_verdicts
WHERE test = ? AND direction = ? AND synthetic = ? AND agent_votes > 0 AND day >= toDate(?) AND day <= toDate(?)`,
		test, direction, syn, from.UTC().Format("2006-01-02"), to.UTC().Format("2006-01-02"))
	if err != nil {
		return nil, fmt.Errorf("analytics: q-values: %w", err)
	}
	defer rows.Close()
	var keys []DayKey
	var ps []float64
	for rows.Next() {
		var k DayKey
		var votes, vd uint64
		if err := rows.Scan(&k.ASN, &k.Day, &votes, &vd); err != nil {
			return nil, fmt.Errorf("analytics: q-values: %w", err)
		}
		keys = append(keys, k)
		ps = append(ps, stats.BinomialTail(vd, votes, NullRate))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("analytics: q-values: %w", err)
	}
	out := make(map[DayKey]float64, len(keys))
	for i, q := range stats.BenjaminiHochberg(ps) {
		out[keys[i]] = q
	}
	return out, nil
}
