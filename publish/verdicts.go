package publish

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/internal/stats"
)

// VerdictSummary is the differentiation verdicts of one ISP over a period,
// per test and direction: the counts of each outcome, the share of
// differentiation among conclusive tests and its 95% Wilson interval
// (recomputed over the summed counts).
type VerdictSummary struct {
	Test      string `json:"test"`
	Direction string `json:"direction"`
	Tests     uint64 `json:"tests"`
	// The counts summed over the days; agents' votes (analytics/verdicts.go):
	// one per agent and day.
	analytics.VerdictCounts
	AgentShare   float64 `json:"agent_share"`
	AgentShareLo float64 `json:"agent_share_lo"`
	AgentShareHi float64 `json:"agent_share_hi"`
	Days         int     `json:"days"`
	DaysFlagged  int     `json:"days_flagged"`
	MinQ         float64 `json:"min_q"`
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

// verdicts sums an ISP's daily verdicts (analytics.Verdicts) over a
// period, per test and direction, recomputes the shares' intervals over
// the sums, and flags the days whose Benjamini–Hochberg q-value over every
// ISP and day of the period (analytics.QValues) is at most
// analytics.FDRLevel.
func (a *API) verdicts(ctx context.Context, asn uint32, synthetic bool, from, to time.Time) (*Verdicts, error) {
	ctx, cancel := queryCtx(ctx)
	defer cancel()
	days, err := analytics.Verdicts(ctx, a.cfg.Conn, asn, from, to)
	if err != nil {
		return nil, err
	}
	out := &Verdicts{ASN: strconv.FormatUint(uint64(asn), 10), Synthetic: synthetic, From: from.Format(time.DateOnly), To: to.Format(time.DateOnly), Verdicts: []VerdictSummary{}}
	sums := map[[2]string]*VerdictSummary{}
	qs := map[[2]string]map[analytics.DayKey]float64{}
	for _, d := range days {
		if d.Synthetic != synthetic {
			continue
		}
		out.Org, out.Country = d.Org, d.Country
		v := sums[[2]string{d.Test, d.Direction}]
		if v == nil {
			v = &VerdictSummary{Test: d.Test, Direction: d.Direction, MinQ: 1}
			sums[[2]string{d.Test, d.Direction}] = v
		}
		v.Tests += d.Tests
		v.Add(d.VerdictCounts)
		if d.AgentVotes > 0 {
			v.Days++
			key := [2]string{d.Test, d.Direction}
			if qs[key] == nil {
				if qs[key], err = analytics.QValues(ctx, a.cfg.Conn, d.Test, d.Direction, synthetic, from, to); err != nil {
					return nil, err
				}
			}
			q, ok := qs[key][analytics.DayKey{ASN: asn, Day: d.Day.UTC().Format("2006-01-02")}]
			if ok {
				v.MinQ = min(v.MinQ, q)
				if q <= analytics.FDRLevel {
					v.DaysFlagged++
				}
			}
		}
	}
	for _, v := range sums {
		if n := v.AgentVotes; n > 0 {
			v.AgentShare = float64(v.AgentsDifferentiation) / float64(n)
			v.AgentShareLo, v.AgentShareHi = stats.Wilson(v.AgentsDifferentiation, n, 1.96)
		}
		out.Verdicts = append(out.Verdicts, *v)
	}
	slices.SortFunc(out.Verdicts, func(x, y VerdictSummary) int {
		return cmp.Or(cmp.Compare(x.Test, y.Test), cmp.Compare(x.Direction, y.Direction))
	})
	return out, nil
}
