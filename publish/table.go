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
	analytics.TableHeader
	Overall   TableRowJSON   `json:"overall"`
	Providers []TableRowJSON `json:"providers"`
	Others    []TableRowJSON `json:"others"`
}

// TableRowJSON is one row of Table I (see analytics.TableRow), with the
// shares inside the goodset.
type TableRowJSON struct {
	analytics.RowCounts
	ShareAgentsInGoodset Number     `json:"share_agents_in_goodset"`
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

func jsonRows(rows []analytics.TableRow) []TableRowJSON {
	out := make([]TableRowJSON, 0, len(rows))
	for _, r := range rows {
		out = append(out, TableRowJSON{RowCounts: r.RowCounts, ShareAgentsInGoodset: Number(r.ShareAgents()), ShareTestsInGoodset: Number(r.ShareTests()),
			Download: jsonFigure(r.Download), Upload: jsonFigure(r.Upload), RTT: jsonFigure(r.RTT)})
	}
	return out
}

func jsonTable(t *analytics.Table) TableJSON {
	return TableJSON{TableHeader: t.TableHeader, Overall: jsonRows([]analytics.TableRow{t.Overall})[0], Providers: jsonRows(t.Providers), Others: jsonRows(t.Others)}
}

// ciText is a median's interval as the dashboards print it.
func ciText(lo, hi float64) string {
	return formatNum(lo) + "–" + formatNum(hi)
}
