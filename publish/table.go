package publish

import (
	"bytes"
	"context"
	"net/http"
	"time"

	"github.com/neubot/neubot/analytics"
)

// table answers GET /api/v1/table: the Neubot paper's Table I over a
// period (analytics.ReadTable, the same as `neubot-server analytics
// table`), as JSON or, with format=csv, as CSV.
func (a *API) table(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	p := &params{q: r.URL.Query()}
	p.known("test", "goodset", "synthetic", "days", "from", "to", "min_agents", "format")
	q := analytics.TableQuery{
		Test:      p.oneOf("test", "speedtest", tests...),
		Goodset:   p.oneOf("goodset", "all", goodsetNames()...),
		Synthetic: p.boolean("synthetic"),
		MinAgents: p.intIn("min_agents", analytics.MinAgents, 1, 1000000),
	}
	format := p.oneOf("format", "json", "json", "csv")
	q.From, q.To = p.days(30, 366, now)
	if p.err != nil {
		a.replyErr(w, "table", p.err)
		return
	}
	t, err := a.readTable(r.Context(), q)
	if err != nil {
		a.replyErr(w, "table", err)
		return
	}
	if format == "csv" {
		var buf bytes.Buffer
		if err := t.WriteCSV(&buf); err != nil {
			a.replyErr(w, "table", err)
			return
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="neubot-table1-`+t.Test+"-"+t.Goodset+"-"+t.From+"-"+t.To+`.csv"`)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		setCache(w, cacheFor(q.To, now))
		_, _ = w.Write(buf.Bytes())
		return
	}
	reply(w, http.StatusOK, cacheFor(q.To, now), jsonTable(t))
}

func (a *API) readTable(ctx context.Context, q analytics.TableQuery) (*analytics.Table, error) {
	ctx, cancel := queryCtx(ctx)
	defer cancel()
	return analytics.ReadTable(ctx, a.cfg.Conn, q)
}

func goodsetNames() []string {
	var out []string
	for _, g := range analytics.Goodsets {
		out = append(out, g.Name)
	}
	return out
}

// TableJSON is the answer of GET /api/v1/table: analytics.Table with
// numbers that are null when there is nothing to compute them over.
type TableJSON struct {
	Test      string `json:"test"`
	Goodset   string `json:"goodset"`
	Synthetic bool   `json:"synthetic"`
	From      string `json:"from"`
	To        string `json:"to"`
	MinAgents int    `json:"min_agents"`
	// TestVersions: the methodology versions the table pools.
	TestVersions []string       `json:"test_versions"`
	Overall      TableRowJSON   `json:"overall"`
	Providers    []TableRowJSON `json:"providers"`
	Others       []TableRowJSON `json:"others"`
}

// TableRowJSON is one row of Table I (see analytics.TableRow).
type TableRowJSON struct {
	ASN                  string     `json:"asn"`
	Org                  string     `json:"org"`
	Country              string     `json:"country"`
	Ranked               bool       `json:"ranked"`
	Agents               uint64     `json:"agents"`
	AgentsInGoodset      uint64     `json:"agents_in_goodset"`
	ShareAgentsInGoodset Number     `json:"share_agents_in_goodset"`
	Tests                uint64     `json:"tests"`
	TestsInGoodset       uint64     `json:"tests_in_goodset"`
	ShareTestsInGoodset  Number     `json:"share_tests_in_goodset"`
	Download             FigureJSON `json:"download_mbps"`
	Upload               FigureJSON `json:"upload_mbps"`
	RTT                  FigureJSON `json:"rtt_ms"`
}

// FigureJSON is a metric of a row: mean and median over agents (each one
// vote), the 95% interval of the median, and the mean over tests.
type FigureJSON struct {
	Mean             Number `json:"mean"`
	Median           Number `json:"median"`
	MedianCILow      Number `json:"median_ci_low"`
	MedianCIHigh     Number `json:"median_ci_high"`
	MeanTestWeighted Number `json:"mean_test_weighted"`
}

func jsonFigure(f analytics.Figure) FigureJSON {
	return FigureJSON{Number(f.Mean), Number(f.Median), Number(f.CILow), Number(f.CIHigh), Number(f.MeanTests)}
}

func jsonRow(r analytics.TableRow) TableRowJSON {
	return TableRowJSON{ASN: r.ASN, Org: r.Org, Country: r.Country, Ranked: r.Ranked, Agents: r.Agents, AgentsInGoodset: r.AgentsInGoodset,
		ShareAgentsInGoodset: Number(r.ShareAgents()), Tests: r.Tests, TestsInGoodset: r.TestsInGoodset, ShareTestsInGoodset: Number(r.ShareTests()),
		Download: jsonFigure(r.Download), Upload: jsonFigure(r.Upload), RTT: jsonFigure(r.RTT)}
}

func jsonTable(t *analytics.Table) TableJSON {
	out := TableJSON{Test: t.Test, Goodset: t.Goodset, Synthetic: t.Synthetic, From: t.From, To: t.To, MinAgents: t.MinAgents,
		TestVersions: t.TestVersions, Overall: jsonRow(t.Overall), Providers: []TableRowJSON{}, Others: []TableRowJSON{}}
	for _, r := range t.Providers {
		out.Providers = append(out.Providers, jsonRow(r))
	}
	for _, r := range t.Others {
		out.Others = append(out.Others, jsonRow(r))
	}
	return out
}

// ciText is a median's interval as the dashboards print it.
func ciText(lo, hi float64) string {
	return formatNum(lo) + "–" + formatNum(hi)
}
