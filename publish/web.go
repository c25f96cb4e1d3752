package publish

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/httpx"
)

// The dashboards are server-rendered HTML: every number is in a table that
// works without JavaScript and reads well in a screen reader. A small script
// (web/static/dash.js) draws the same numbers as charts with uPlot, which
// scripts/setup vendors from the npm registry into web/static/vendor (no
// CDN), and offers each chart as PNG; the server renders each chart as SVG
// and its numbers as CSV too.

//go:embed web
var webFS embed.FS

var pageTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"num": func(v any) string {
		switch x := v.(type) {
		case Number:
			return formatNum(float64(x))
		case float64:
			return formatNum(x)
		}
		return fmt.Sprint(v)
	},
	"json":    func(v any) (template.JS, error) { b, err := json.Marshal(v); return template.JS(b), err },
	"lower":   strings.ToLower,
	"pct":     func(a, b uint64) string { return formatNum(100 * float64(a) / math.Max(float64(b), 1)) },
	"add":     func(a, b int) int { return a + b },
	"metricL": func(m string) string { return metricLabels[m] },
	"pctf":    func(x float64) string { return formatNum(100 * x) },
	"pctn":    func(x Number) string { return formatNum(100 * float64(x)) },
	"ci":      func(lo, hi Number) string { return ciText(float64(lo), float64(hi)) },
}).ParseFS(webFS, "web/templates/*.html"))

// dashboardCSP: scripts and styles only from this server; the chart data
// come in <script type="application/json">, which is not executed.
const dashboardCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

var metricLabels = map[string]string{
	"download_mbps": "Download speed (Mbit/s)",
	"upload_mbps":   "Upload speed (Mbit/s)",
	"rtt_ms":        "Round-trip time (ms)",
}

func formatNum(x float64) string {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0):
		return "–"
	case x == math.Trunc(x) && math.Abs(x) < 1e15:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case math.Abs(x) >= 100:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case math.Abs(x) >= 10:
		return strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

func (a *API) routeDashboards(r *httpx.Mux) {
	static, _ := fs.Sub(webFS, "web/static")
	r.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/static/")
		b, err := fs.ReadFile(static, name)
		ct := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}[path.Ext(name)]
		if err != nil || ct == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(b)
	})
	r.HandleFunc("GET /{$}", a.indexPage)
	r.HandleFunc("GET /data", a.dataPage)
	r.HandleFunc("GET /isp/{asn}", a.ispPage)
	r.HandleFunc("GET /isp/{asn}/charts/{file}", a.ispChartFile)
}

// page is what every template gets.
type page struct {
	Title      string
	Demo       bool
	Freshness  freshness
	HasCharts  bool
	ChartLib   bool
	Body       any
	Canonical  string
	MetricLink func(string) string
}

type freshness struct {
	Computed string // when the analytics last ran, UTC
	Through  string // the newest day with results
}

func (a *API) freshness(ctx context.Context) freshness {
	ctx, cancel := queryCtx(ctx)
	defer cancel()
	var f freshness
	var run time.Time
	var day string
	if err := a.cfg.Conn.QueryRow(ctx, "SELECT max(run_at), toString(max(day)) FROM analytics_runs").Scan(&run, &day); err == nil && run.Year() > 1971 {
		f.Computed = run.UTC().Format("2006-01-02 15:04 UTC")
		f.Through = day
	}
	return f
}

func chartLibInstalled() bool {
	_, err := fs.Stat(webFS, "web/static/vendor/uPlot.iife.min.js")
	return err == nil
}

func (a *API) render(w http.ResponseWriter, code int, name string, p page) {
	var buf bytes.Buffer
	p.ChartLib = chartLibInstalled()
	if err := pageTemplates.ExecuteTemplate(&buf, name, p); err != nil {
		a.cfg.Logger.Error("publish: template", "name", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	httpx.PageHeaders(h, dashboardCSP)
	if code == http.StatusOK {
		h.Set("Cache-Control", "public, max-age=300")
	} else {
		h.Set("Cache-Control", "no-store")
	}
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func (a *API) errorPage(w http.ResponseWriter, code int, msg string) {
	a.render(w, code, "error.html", page{Title: http.StatusText(code), Demo: a.cfg.Demo, Body: msg})
}

// series is one line or set of bars of a chart.
type series struct {
	Name   string    `json:"name"`
	Values []float64 `json:"values"`
	Plot   bool      `json:"plot"` // false: in the table and CSV only
}

// chart is a figure of a dashboard: its numbers, and how to draw them.
type chart struct {
	ID      string   `json:"id"`
	Title   string   `json:"title"`
	Desc    string   `json:"desc"`
	Kind    string   `json:"kind"` // line or bars
	XName   string   `json:"xname"`
	XLabel  string   `json:"xlabel"`
	YLabel  string   `json:"ylabel"`
	X       []string `json:"x"`
	Series  []series `json:"series"`
	CSVURL  string   `json:"-"`
	SVGURL  string   `json:"-"`
	Caption string   `json:"-"`
}

// csvText neutralises a text cell that a spreadsheet would run as a
// formula (see appendCSVField).
func csvText(s string) string {
	if s != "" && strings.IndexByte("=+-@\t\r", s[0]) >= 0 {
		return "'" + s
	}
	return s
}

func (c *chart) csv() []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	head := []string{csvText(c.XName)}
	for _, s := range c.Series {
		head = append(head, csvText(s.Name))
	}
	_ = w.Write(head)
	for i, x := range c.X {
		rec := []string{csvText(x)}
		for _, s := range c.Series {
			rec = append(rec, strconv.FormatFloat(s.Values[i], 'f', -1, 64))
		}
		_ = w.Write(rec)
	}
	w.Flush()
	return buf.Bytes()
}

// ispData is everything the ISP page shows.
type ispData struct {
	ASN, Org, Country string
	Metric            string
	Metrics           []string
	Days              int
	DayChoices        []int
	From, To          string
	Tests, Agents     uint64 // Agents: distinct over the period
	Median            float64
	CILow, CIHigh     float64
	Ranked            bool
	MinAgents         int
	Zone              string
	Charts            []*chart
	Goodsets          []goodsetRow
	Verdicts          *Verdicts
	Synthetic         bool
	Query             string
}

type goodsetRow struct {
	Name       string
	Def        string // as JSON, stored with every figure computed from it
	Rule       goodsetRule
	TestsTotal uint64
	Tests      uint64
	AgentDays  uint64
	Median     float64
	// Versions: the methodology versions (test_version) pooled.
	Versions []string
}

func (a *API) ispSelector(r *http.Request) (selector, *params, int) {
	p := &params{q: r.URL.Query()}
	p.known("metric", "days", "synthetic")
	asn := strings.TrimPrefix(strings.ToUpper(r.PathValue("asn")), "AS")
	if n, err := strconv.ParseUint(asn, 10, 32); err != nil || n == 0 {
		p.fail(bad("asn", "must be an AS number like 3269 or AS3269"))
	} else {
		asn = strconv.FormatUint(n, 10) // AS03269 is AS3269
	}
	days := p.intIn("days", 30, 1, 366)
	s := selector{test: "speedtest", scope: "asn", key: asn, metric: p.oneOf("metric", "download_mbps", metrics...), goodset: "all"}
	s.synthetic = a.cfg.Demo
	if p.q.Has("synthetic") {
		s.synthetic = p.boolean("synthetic")
	}
	today := time.Now().UTC().Truncate(24 * time.Hour)
	s.from, s.to = today.AddDate(0, 0, -(days-1)), today
	return s, p, days
}

// ispCharts computes the ISP page's charts from the same functions the API
// answers with, so the numbers are the API's.
func (a *API) ispCharts(ctx context.Context, s selector, days int) (*ispData, error) {
	d, err := a.distribution(ctx, s)
	if err != nil {
		return nil, err
	}
	h, err := a.histogram(ctx, s)
	if err != nil {
		return nil, err
	}
	hr, err := a.hourly(ctx, s)
	if err != nil {
		return nil, err
	}
	out := &ispData{ASN: s.key, Org: d.Org, Country: d.Country, Metric: s.metric, Metrics: metrics, Days: days,
		DayChoices: []int{7, 30, 90, 365}, From: d.From, To: d.To, Synthetic: s.synthetic}
	label := metricLabels[s.metric]
	q := fmt.Sprintf("?metric=%s&days=%d", s.metric, days)
	if s.synthetic != a.cfg.Demo {
		q += fmt.Sprintf("&synthetic=%d", s.syn())
	}
	out.Query = q
	base := "/isp/" + s.key + "/charts/"

	daily := &chart{ID: "daily", Title: label + ", day by day", Kind: "line", XName: "day", XLabel: "Day (UTC)", YLabel: label,
		Desc: "Daily percentiles over the agents of each day (each agent one vote: the median of its tests that day): the middle line is the median, " +
			"with its 95% confidence interval (p50_ci_low, p50_ci_high); half of the agents lie between the 25th and 75th percentiles."}
	var tests, agents, p10, p25, p50, lo, hi, p75, p90 []float64
	for _, x := range d.Days {
		daily.X = append(daily.X, x.Day)
		tests, agents = append(tests, float64(x.Tests)), append(agents, float64(x.Agents))
		p10, p25, p50, p75, p90 = append(p10, x.P10), append(p25, x.P25), append(p50, x.P50), append(p75, x.P75), append(p90, x.P90)
		lo, hi = append(lo, float64(x.P50CILow)), append(hi, float64(x.P50CIHigh))
		out.Tests += x.Tests
	}
	daily.Series = []series{{"tests", tests, false}, {"agents", agents, false}, {"p10", p10, true}, {"p25", p25, true}, {"p50", p50, true},
		{"p50_ci_low", lo, true}, {"p50_ci_high", hi, true}, {"p75", p75, true}, {"p90", p90, true}}

	hist := &chart{ID: "histogram", Title: "Distribution of " + lowerFirst(label) + ", whole period", Kind: "bars", XName: "bucket", XLabel: label, YLabel: "Tests",
		Desc: "How many tests measured each value, on a logarithmic scale of ten buckets per tenfold; peaks are the speeds of common plans."}
	var counts, lowers, uppers []float64
	for _, b := range h.Buckets {
		hist.X = append(hist.X, bucketLabel(b))
		counts, lowers, uppers = append(counts, float64(b.Tests)), append(lowers, b.Lower), append(uppers, b.Upper)
	}
	hist.Series = []series{{"tests", counts, true}, {"lower", lowers, false}, {"upper", uppers, false}}
	// The period's figure: Table I's row of this provider (distinct
	// agents, each one vote; the 95% interval of the median).
	asn, _ := strconv.ParseUint(s.key, 10, 32)
	t, err := a.readTable(ctx, analytics.TableQuery{Test: s.test, Goodset: s.goodset, Synthetic: s.synthetic, From: s.from, To: s.to, ASN: uint32(asn)})
	if err != nil {
		return nil, err
	}
	out.Median, out.CILow, out.CIHigh, out.MinAgents = math.NaN(), math.NaN(), math.NaN(), t.MinAgents
	for _, r := range append(t.Providers, t.Others...) {
		f := map[string]analytics.Figure{"download_mbps": r.Download, "upload_mbps": r.Upload, "rtt_ms": r.RTT}[s.metric]
		out.Agents, out.Median, out.CILow, out.CIHigh, out.Ranked = r.Agents, f.Median, f.CILow, f.CIHigh, r.Ranked
	}

	out.Zone = hr.Zone
	where := "local time, " + hr.Zone
	if hr.Zone == "UTC" {
		where = "UTC: the country has several time zones, or none is known"
	}
	hourly := &chart{ID: "hourly", Title: label + " by hour of the day", Kind: "line", XName: "hour", XLabel: "Hour of the day (" + where + ")", YLabel: label,
		Desc: "Median per hour of the day over the period (each agent one vote per hour), in the volunteers' local time where their country has one time zone: a dip in the evening is congestion at peak time."}
	var htests, hagents, hp50 []float64
	for _, x := range hr.Hours {
		hourly.X = append(hourly.X, strconv.Itoa(x.Hour))
		htests, hagents, hp50 = append(htests, float64(x.Tests)), append(hagents, float64(x.Agents)), append(hp50, x.P50)
	}
	hourly.Series = []series{{"tests", htests, false}, {"agents", hagents, false}, {"p50", hp50, true}}

	for _, c := range []*chart{daily, hist, hourly} {
		c.CSVURL, c.SVGURL = base+c.ID+".csv"+q, base+c.ID+".svg"+q
		out.Charts = append(out.Charts, c)
	}
	return out, nil
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

func bucketLabel(b Bucket) string {
	switch {
	case b.Lower == 0:
		return "< " + formatNum(b.Upper)
	case b.Upper == 0:
		return "≥ " + formatNum(b.Lower)
	}
	return formatNum(b.Lower) + "–" + formatNum(b.Upper)
}

// nanLow puts NaN below every number, for sorting.
func nanLow(x float64) float64 {
	if math.IsNaN(x) {
		return math.Inf(-1)
	}
	return x
}

// goodsetRule is the part of a goodset definition a reader needs.
type goodsetRule struct {
	Version        int    `json:"version"`
	Description    string `json:"description"`
	Where          string `json:"where"`
	OnePerAgentDay bool   `json:"one_per_agent_day"`
}

func (a *API) goodsetRows(ctx context.Context, s selector) ([]goodsetRow, error) {
	ctx, cancel := queryCtx(ctx)
	defer cancel()
	return chdb.Select(ctx, a.cfg.Conn, func(rows driver.Rows, g *goodsetRow) error {
		if err := rows.Scan(&g.Name, &g.Def, &g.TestsTotal, &g.Tests, &g.AgentDays, &g.Median, &g.Versions); err != nil {
			return err
		}
		_ = json.Unmarshal([]byte(g.Def), &g.Rule)
		return nil
	}, `SELECT goodset, any(goodset_def), sum(tests_total), sum(tests), sum(agents), quantileExactWeighted(0.5)(p50, agents), arraySort(groupUniqArrayArray(test_versions))
		FROM analytics_distributions
		WHERE test = ? AND scope = ? AND key = ? AND metric = ? AND synthetic = ? AND weighting = 'agents' AND day >= toDate(?) AND day <= toDate(?)
		GROUP BY goodset ORDER BY goodset`, s.test, s.scope, s.key, s.metric, s.syn(), s.from.Format(time.DateOnly), s.to.Format(time.DateOnly))
}

func (a *API) ispPage(w http.ResponseWriter, r *http.Request) {
	s, p, days := a.ispSelector(r)
	if p.err != nil {
		a.errorPage(w, http.StatusBadRequest, p.err.Error())
		return
	}
	d, err := a.ispCharts(r.Context(), s, days)
	if err != nil {
		a.cfg.Logger.Error("publish: isp page", "err", err)
		a.errorPage(w, http.StatusServiceUnavailable, "The data store is not available now; try again in a minute.")
		return
	}
	if d.Goodsets, err = a.goodsetRows(r.Context(), s); err != nil {
		a.errorPage(w, http.StatusServiceUnavailable, "The data store is not available now; try again in a minute.")
		return
	}
	asn, _ := strconv.ParseUint(s.key, 10, 32)
	if d.Verdicts, err = a.verdicts(r.Context(), uint32(asn), s.synthetic, s.from, s.to); err != nil {
		a.errorPage(w, http.StatusServiceUnavailable, "The data store is not available now; try again in a minute.")
		return
	}
	if d.Org == "" && d.Tests == 0 {
		a.errorPage(w, http.StatusNotFound, fmt.Sprintf("No published tests from AS%s in the last %d days.", s.key, days))
		return
	}
	title := fmt.Sprintf("%s (AS%s)", d.Org, d.ASN)
	a.render(w, http.StatusOK, "isp.html", page{Title: title, Demo: s.synthetic, Freshness: a.freshness(r.Context()), HasCharts: true, Body: d})
}

// ispChartFile answers /isp/{asn}/charts/{daily,histogram,hourly}.{csv,svg}.
func (a *API) ispChartFile(w http.ResponseWriter, r *http.Request) {
	s, p, days := a.ispSelector(r)
	file := r.PathValue("file")
	id, ext, _ := strings.Cut(file, ".")
	if p.err != nil || (ext != "csv" && ext != "svg") {
		msg := "the file must be daily, histogram or hourly .csv or .svg"
		if p.err != nil {
			msg = p.err.Error()
		}
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	d, err := a.ispCharts(r.Context(), s, days)
	if err != nil {
		http.Error(w, "the data store is not available now", http.StatusServiceUnavailable)
		return
	}
	var c *chart
	for _, x := range d.Charts {
		if x.ID == id {
			c = x
		}
	}
	if c == nil {
		http.NotFound(w, r)
		return
	}
	name := fmt.Sprintf("neubot-AS%s-%s-%s-%s.%s", s.key, s.metric, c.ID, d.To, ext)
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if ext == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		_, _ = w.Write(c.csv())
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	sub := fmt.Sprintf("%s (AS%s, %s) · %s to %s · Neubot open data, CC BY 4.0", d.Org, d.ASN, d.Country, d.From, d.To)
	_, _ = w.Write(renderSVG(c, sub))
}

// indexData is the overview page.
type indexData struct {
	Query     string
	Countries []countryRow
	ISPs      []ISP
	Ranked    []TableRowJSON // providers with at least MinAgents agents, by median download
	Others    []TableRowJSON // the others, most agents first
	Overall   TableRowJSON
	MinAgents int
	Chart     *chart
	Synthetic bool
	Days      int
}

type countryRow struct {
	Country                 string
	Tests                   uint64
	Download, Upload, RTTMS Number
}

func (a *API) countries(ctx context.Context, synthetic bool, days int) ([]countryRow, error) {
	ctx, cancel := queryCtx(ctx)
	defer cancel()
	syn := uint8(0)
	if synthetic {
		syn = 1
	}
	return chdb.Select(ctx, a.cfg.Conn, func(rows driver.Rows, c *countryRow) error {
		var down, up, rtt float64
		err := rows.Scan(&c.Country, &c.Tests, &down, &up, &rtt)
		c.Download, c.Upload, c.RTTMS = Number(down), Number(up), Number(rtt)
		return err
	}, `SELECT key, sumIf(tests, metric = 'download_mbps') AS n,
			quantileExactWeightedIf(0.5)(p50, agents, metric = 'download_mbps'),
			quantileExactWeightedIf(0.5)(p50, agents, metric = 'upload_mbps'),
			quantileExactWeightedIf(0.5)(p50, agents, metric = 'rtt_ms')
		FROM analytics_distributions
		WHERE test = 'speedtest' AND scope = 'country' AND goodset = 'all' AND weighting = 'agents' AND synthetic = ? AND day > toDate(now(), 'UTC') - ?
		GROUP BY key HAVING n > 0 ORDER BY n DESC, key LIMIT 300`, syn, days)
}

func (a *API) indexPage(w http.ResponseWriter, r *http.Request) {
	p := &params{q: r.URL.Query()}
	p.known("q", "synthetic")
	term := strings.TrimSpace(p.q.Get("q"))
	if len(term) > 64 {
		p.fail(bad("q", "is longer than 64 bytes"))
	}
	syn := a.cfg.Demo
	if p.q.Has("synthetic") {
		syn = p.boolean("synthetic")
	}
	if p.err != nil {
		a.errorPage(w, http.StatusBadRequest, p.err.Error())
		return
	}
	d := &indexData{Query: term, Synthetic: syn, Days: 30, MinAgents: analytics.MinAgents}
	var err error
	ctx := r.Context()
	if d.ISPs, err = a.ispList(ctx, term, syn, d.Days, 100); err == nil {
		// The search results: by median download speed (an ISP without one last).
		slices.SortStableFunc(d.ISPs, func(x, y ISP) int {
			return cmp.Compare(nanLow(float64(y.DownloadMbps)), nanLow(float64(x.DownloadMbps)))
		})
		d.Countries, err = a.countries(ctx, syn, d.Days)
	}
	if err == nil && term == "" {
		// The ranking: Table I of the period, each agent one vote; only
		// providers with enough agents are ranked.
		today := time.Now().UTC().Truncate(24 * time.Hour)
		var t *analytics.Table
		if t, err = a.readTable(ctx, analytics.TableQuery{Synthetic: syn, From: today.AddDate(0, 0, -(d.Days - 1)), To: today}); err == nil {
			tj := jsonTable(t)
			d.Ranked, d.Others, d.Overall = tj.Providers, tj.Others, tj.Overall
			slices.SortStableFunc(d.Ranked, func(x, y TableRowJSON) int {
				return cmp.Compare(nanLow(float64(y.Download.Median)), nanLow(float64(x.Download.Median)))
			})
		}
	}
	var dist *Distribution
	if err == nil {
		today := time.Now().UTC().Truncate(24 * time.Hour)
		dist, err = a.distribution(ctx, selector{test: "speedtest", scope: "all", metric: "download_mbps", goodset: "all", synthetic: syn, from: today.AddDate(0, 0, -(d.Days - 1)), to: today})
	}
	if err != nil {
		a.cfg.Logger.Error("publish: index page", "err", err)
		a.errorPage(w, http.StatusServiceUnavailable, "The data store is not available now; try again in a minute.")
		return
	}
	c := &chart{ID: "overview", Title: "Download speed of all tests, day by day", Kind: "line", XName: "day", XLabel: "Day (UTC)", YLabel: metricLabels["download_mbps"],
		Desc: "Daily median, 25th and 75th percentiles of the download speed over every published test."}
	var tests, p25, p50, p75 []float64
	for _, x := range dist.Days {
		c.X = append(c.X, x.Day)
		tests, p25, p50, p75 = append(tests, float64(x.Tests)), append(p25, x.P25), append(p50, x.P50), append(p75, x.P75)
	}
	c.Series = []series{{"tests", tests, false}, {"p25", p25, true}, {"p50", p50, true}, {"p75", p75, true}}
	d.Chart = c
	a.render(w, http.StatusOK, "index.html", page{Title: "Internet access quality by provider", Demo: syn, Freshness: a.freshness(ctx), HasCharts: true, Body: d})
}

func (a *API) dataPage(w http.ResponseWriter, r *http.Request) {
	today := time.Now().UTC().Truncate(24 * time.Hour)
	real, _ := a.datasetList("", today.AddDate(-10, 0, 0), today, false)
	syn, _ := a.datasetList("", today.AddDate(-10, 0, 0), today, true)
	type body struct {
		Real, Synthetic []Dataset
		Example         string
		Licence         string
	}
	b := body{Real: real, Synthetic: syn, Example: "speedtest/2026/11/20/speedtest-2026-11-20", Licence: DataLicence}
	if len(real) > 0 && len(real[0].Files) > 0 {
		b.Example = strings.TrimSuffix(strings.TrimPrefix(real[0].Files[0].URL, datasetsURL), ".parquet")
	}
	a.render(w, http.StatusOK, "data.html", page{Title: "Open data: daily dumps", Demo: a.cfg.Demo, Freshness: a.freshness(r.Context()), Body: b})
}
