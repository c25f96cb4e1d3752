package publish

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/neubot/neubot/internal/stats"
)

// VerdictSummary is the differentiation verdicts of one ISP over a period,
// per test and direction: the counts of each outcome, the share of
// differentiation among conclusive tests and its 95% Wilson interval
// (recomputed over the summed counts).
type VerdictSummary struct {
	Test            string  `json:"test"`
	Direction       string  `json:"direction"`
	Tests           uint64  `json:"tests"`
	Differentiation uint64  `json:"differentiation"`
	None            uint64  `json:"none"`
	Inconclusive    uint64  `json:"inconclusive"`
	Share           float64 `json:"share"`
	ShareLo         float64 `json:"share_lo"`
	ShareHi         float64 `json:"share_hi"`
}

// Verdicts is the answer of GET /api/v1/verdicts.
type Verdicts struct {
	ASN       string           `json:"asn"`
	Org       string           `json:"org"`
	Country   string           `json:"country"`
	Synthetic bool             `json:"synthetic"`
	From      string           `json:"from"`
	To        string           `json:"to"`
	Verdicts  []VerdictSummary `json:"verdicts"`
}

func (a *API) verdictsHandler(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	p := &params{q: r.URL.Query()}
	p.known("asn", "synthetic", "days", "from", "to")
	asn, err := strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(p.q.Get("asn")), "AS"), 10, 32)
	if err != nil || asn == 0 {
		p.fail(bad("asn", "must be an AS number like 3269"))
	}
	syn := p.boolean("synthetic")
	from, to := p.days(30, 366, now)
	if p.err != nil {
		a.replyErr(w, "verdicts", p.err)
		return
	}
	v, err := a.verdicts(r.Context(), uint32(asn), syn, from, to)
	if err != nil {
		a.replyErr(w, "verdicts", err)
		return
	}
	reply(w, http.StatusOK, cacheFor(to, now), v)
}

// verdicts sums an ISP's daily verdicts over a period.
func (a *API) verdicts(ctx context.Context, asn uint32, synthetic bool, from, to time.Time) (*Verdicts, error) {
	ctx, cancel := queryCtx(ctx)
	defer cancel()
	syn := uint8(0)
	if synthetic {
		syn = 1
	}
	out := &Verdicts{ASN: strconv.FormatUint(uint64(asn), 10), Synthetic: synthetic, From: from.Format("2006-01-02"), To: to.Format("2006-01-02"), Verdicts: []VerdictSummary{}}
	rows, err := a.cfg.Conn.Query(ctx, `SELECT test, direction, any(org), any(country), sum(tests), sum(differentiation_tests), sum(none_tests), sum(inconclusive_tests)
		FROM analytics_verdicts
		WHERE asn = ? AND synthetic = ? AND day >= toDate(?) AND day <= toDate(?)
		GROUP BY test, direction ORDER BY test, direction`, asn, syn, out.From, out.To)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var v VerdictSummary
		if err := rows.Scan(&v.Test, &v.Direction, &out.Org, &out.Country, &v.Tests, &v.Differentiation, &v.None, &v.Inconclusive); err != nil {
			return nil, err
		}
		if n := v.Differentiation + v.None; n > 0 {
			v.Share = float64(v.Differentiation) / float64(n)
			v.ShareLo, v.ShareHi = stats.Wilson(v.Differentiation, n, 1.96)
		}
		out.Verdicts = append(out.Verdicts, v)
	}
	return out, rows.Err()
}
