package analytics

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/schemas"
)

// The verdicts of the differential tests per ISP and day: how many tests
// said differentiation, none or inconclusive, and the share of
// differentiation among the conclusive ones with its 95% Wilson score
// interval. Inconclusive tests are counted but left out of the share: a test
// that could not decide says nothing about the ISP either way.

// wilsonZ is the normal quantile of the interval (95%).
const wilsonZ = 1.96

// verdictsSQL fills analytics_verdicts for one day from the bittorrent
// table: per ASN, synthetic flag and direction (any: the test's outcome).
func verdictsSQL(day string) string {
	// Wilson: centre (p + z²/2n) / (1 + z²/n), half-width
	// z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²), with n = d + e conclusive
	// tests and p = d / n.
	z2 := wilsonZ * wilsonZ
	centre := fmt.Sprintf("(share + %[1]g / (2 * c)) / (1 + %[1]g / c)", z2)
	half := fmt.Sprintf("%[1]g / (1 + %[2]g / c) * sqrt(share * (1 - share) / c + %[2]g / (4 * c * c))", wilsonZ, z2)
	return fmt.Sprintf(`INSERT INTO analytics_verdicts (day, test, asn, org, country, synthetic, direction, tests, agents,
    differentiation_tests, none_tests, inconclusive_tests, share, share_lo, share_hi)
SELECT day, 'bittorrent', asn, org, country, synthetic, direction, tests, agents, d, e, i,
    share, if(c = 0, 0, greatest(0, %[2]s - %[3]s)), if(c = 0, 1, least(1, %[2]s + %[3]s))
FROM (
    SELECT day, asn, org, country, synthetic, direction, tests, agents, d, e, i,
        toFloat64(d + e) AS c, if(c = 0, 0, d / c) AS share
    FROM (
        SELECT toDate(start_time, 'UTC') AS day, client_asn AS asn, min(client_org) AS org, min(client_country) AS country, synthetic,
            tupleElement(o, 1) AS direction, count() AS tests, uniqExact(agent_id) AS agents,
            countIf(tupleElement(o, 2) = 'differentiation') AS d, countIf(tupleElement(o, 2) = 'none') AS e,
            countIf(tupleElement(o, 2) = 'inconclusive') AS i
        FROM (SELECT * FROM bittorrent FINAL WHERE %[5]s AND %[4]s AND consent_can_publish = 1 AND server_peer = 0 AND %[6]s)
        ARRAY JOIN [('any', outcome), ('download', download_outcome), ('upload', upload_outcome)] AS o
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
	Direction       string `json:"direction"`
	Tests           uint64 `json:"tests"`
	Agents          uint64 `json:"agents"`
	Differentiation uint64 `json:"differentiation"`
	None            uint64 `json:"none"`
	Inconclusive    uint64 `json:"inconclusive"`
	// Share is Differentiation / (Differentiation + None); ShareLo and
	// ShareHi bound it (95% Wilson score interval).
	Share   float64 `json:"share"`
	ShareLo float64 `json:"share_lo"`
	ShareHi float64 `json:"share_hi"`
}

// Verdicts returns the verdicts of ASN asn for the days from..to
// (inclusive, UTC), real and synthetic, ordered by day, test, direction.
func Verdicts(ctx context.Context, conn driver.Conn, asn uint32, from, to time.Time) ([]Verdict, error) {
	rows, err := conn.Query(ctx, `SELECT day, test, asn, org, country, synthetic, direction, tests, agents,
    differentiation_tests, none_tests, inconclusive_tests, share, share_lo, share_hi
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
			&v.Differentiation, &v.None, &v.Inconclusive, &v.Share, &v.ShareLo, &v.ShareHi); err != nil {
			return nil, fmt.Errorf("analytics: verdicts: %w", err)
		}
		v.Synthetic = synth == 1
		out = append(out, v)
	}
	return out, rows.Err()
}
