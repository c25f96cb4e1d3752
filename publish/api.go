// Package publish makes Neubot's data open, in three forms:
//
//   - daily dumps per test (dump.go): Parquet written with Arrow and CSV.gz,
//     a manifest per day and an index, atomic and idempotent, never holding
//     an unpublishable or synthetic row or a full address;
//   - the public query API under /api/v1/ (api.go, data.go), documented in
//     openapi.json: ISPs, distributions, histograms, hour-of-day profiles,
//     measurements with cursor pagination, datasets, the caller's network;
//   - dashboards (web.go, web/): the overview and per-ISP pages, whose
//     charts download as PNG, SVG and CSV and whose numbers are also in
//     server-rendered tables.
//
// New returns one handler for all of them, plus the datasets' files.
package publish

import (
	"context"
	_ "embed"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/collector/annotate"
	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/ratelimit"
	"github.com/neubot/neubot/proto/publicapi"
)

// OpenAPI is the API's OpenAPI document, served at /api/v1/openapi.json; a
// test checks that it lists every route of the router and nothing else.
//
//go:embed openapi.json
var OpenAPI []byte

// Config configures the API.
type Config struct {
	Conn driver.Conn
	IPDB *annotate.DB
	// TrustProxy takes the client address from X-Forwarded-For (the last
	// address, added by the proxy) instead of the connection: only behind
	// a proxy you run.
	TrustProxy bool
	// Rate and Burst limit requests per client address (default 10 per
	// second, burst 50); beyond, 429 with Retry-After.
	Rate  float64
	Burst int
	// CacheTTL keeps answers of the read-only endpoints in memory (default
	// one minute; negative: no cache).
	CacheTTL time.Duration
	// DatasetsDir is the tree of the real dumps, served at /datasets/;
	// SyntheticDatasetsDir the demo's (synthetic=1), at /datasets-synthetic/.
	DatasetsDir, SyntheticDatasetsDir string
	// Demo makes the dashboards show simulated data, said on every page.
	Demo   bool
	Logger *slog.Logger
}

// API is the public query API.
type API struct {
	cfg     Config
	router  http.Handler
	routes  []string // the router's patterns
	limiter *ratelimit.Limiter
	cache   *cache
	colDefs sync.Map // table -> []columnDef, for the measurements
}

// New builds the API.
func New(cfg Config) *API {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 10
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 50
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = time.Minute
	}
	a := &API{cfg: cfg, limiter: ratelimit.New(cfg.Rate, cfg.Burst), cache: newCache(cfg.CacheTTL)}
	r := httpx.NewMux()
	r.HandleFunc("GET "+publicapi.OpenAPIPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		_, _ = w.Write(OpenAPI)
	})
	r.HandleFunc("GET "+publicapi.WhoamiPath, a.whoami)
	r.HandleFunc("GET "+publicapi.MeasurementsPath, a.measurements)
	// Cached: time series of daily distributions, the distribution over a
	// period, the hour-of-day profile, verdicts, the table, ISPs, datasets.
	for path, h := range map[string]http.HandlerFunc{
		publicapi.DistributionsPath: bySelector(a, "distributions", (*API).distribution),
		publicapi.HistogramPath:     bySelector(a, "histogram", (*API).histogram),
		publicapi.HourlyPath:        bySelector(a, "hourly", (*API).hourly),
		publicapi.VerdictsPath:      a.verdictsHandler,
		publicapi.TablePath:         a.table,
		publicapi.ISPsPath:          a.isps,
		publicapi.DatasetsPath:      a.datasets,
	} {
		r.Handle("GET "+path, a.cache.middleware(h))
	}
	r.Handle("GET "+datasetsURL, datasetFiles(cfg.DatasetsDir, datasetsURL))
	r.Handle("GET "+syntheticDatasetsURL, datasetFiles(cfg.SyntheticDatasetsDir, syntheticDatasetsURL))
	a.routeDashboards(r)
	a.routes = r.Patterns()
	a.router = a.rateLimit(r)
	return a
}

// Handler is the API's HTTP handler.
func (a *API) Handler() http.Handler { return a.router }

// Routes lists the API's routes as "METHOD /path/{param}".
func (a *API) Routes() []string { return append([]string(nil), a.routes...) }

type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func reply(w http.ResponseWriter, code int, maxAge time.Duration, v any) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Access-Control-Expose-Headers", "Link, X-Next-Cursor, Retry-After")
	setCache(w, maxAge)
	httpx.WriteJSON(w, code, v)
}

// rateLimit answers 429 with Retry-After to an address over its rate.
func (a *API) rateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, datasetsURL) || strings.HasPrefix(r.URL.Path, syntheticDatasetsURL) || strings.HasPrefix(r.URL.Path, "/static/") {
			// Files: cheap to serve, and a reader of Parquet over HTTP
			// (DuckDB, arrow) makes many small Range requests.
			next.ServeHTTP(w, r)
			return
		}
		addr := ratelimit.Key(a.clientAddr(r))
		if !a.limiter.Allow(addr, time.Now()) {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(a.limiter.RetryAfter(addr).Seconds()))))
			reply(w, http.StatusTooManyRequests, 0, apiError{Error: "too many requests from this address: slow down"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// clientAddr is the caller's address, per the proxy policy.
func (a *API) clientAddr(r *http.Request) string { return httpx.ClientAddr(r, a.cfg.TrustProxy) }

func (a *API) whoami(w http.ResponseWriter, r *http.Request) {
	ann, err := a.cfg.IPDB.LookupString(a.clientAddr(r))
	if err != nil {
		reply(w, http.StatusBadRequest, 0, apiError{Error: "cannot tell the network of this address"})
		return
	}
	reply(w, http.StatusOK, 0, publicapi.Whoami{ASN: ann.ASN, Org: ann.Org, Country: ann.Country, Prefix: ann.Prefix})
}

// Day is one day of a distribution.
//
// Every agent votes once a day (the median of its tests inside the
// goodset); the percentiles are over the votes (internal/stats.Quantile),
// P50CILow..P50CIHigh the 95% confidence interval of the median.
type Day struct {
	Day         string    `json:"day"`
	TestsTotal  uint64    `json:"tests_total"`
	Tests       uint64    `json:"tests"`
	Agents      uint64    `json:"agents"`
	AgentsTotal uint64    `json:"agents_total"`
	Mean        float64   `json:"mean"`
	P10         float64   `json:"p10"`
	P25         float64   `json:"p25"`
	P50         float64   `json:"p50"`
	P50CILow    Number    `json:"p50_ci_low"`
	P50CIHigh   Number    `json:"p50_ci_high"`
	P75         float64   `json:"p75"`
	P90         float64   `json:"p90"`
	Modes       []float64 `json:"modes"`
}

// Distribution is the answer of GET /api/v1/distributions: the time
// series of the daily distributions of one metric.
type Distribution struct {
	Selection
	Weighting  string `json:"weighting"`
	Org        string `json:"org"`
	Country    string `json:"country"`
	GoodsetDef string `json:"goodset_definition"`
	// TestVersions are the methodology versions (test_version) of the
	// tests the figure pools over its days, sorted; the days computed
	// before the analytics recorded them add none.
	TestVersions []string `json:"test_versions"`
	Days         []Day    `json:"days"`
}

// Selection is what the selector of a figure's answer (distributions,
// histogram, hourly) asked for, given back at its top.
type Selection struct {
	Test      string `json:"test"`
	Scope     string `json:"scope"`
	Key       string `json:"key"`
	Metric    string `json:"metric"`
	Goodset   string `json:"goodset"`
	Synthetic bool   `json:"synthetic"`
	From      string `json:"from"` // first day, YYYY-MM-DD
	To        string `json:"to"`   // last day
}

var (
	keyRE     = regexp.MustCompile(`^[A-Za-z0-9]{0,16}$`)
	goodsetRE = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)
	metrics   = []string{"download_mbps", "upload_mbps", "rtt_ms"}
	tests     = []string{"speedtest", "ndt7", "ndt7-browser"}
)

// selector is what the per-scope endpoints select on.
type selector struct {
	test, scope, key, metric, goodset string
	synthetic                         bool
	from, to                          time.Time
}

// selection is what s asks for, as the answers give it back.
func (s selector) selection() Selection {
	return Selection{Test: s.test, Scope: s.scope, Key: s.key, Metric: s.metric, Goodset: s.goodset, Synthetic: s.synthetic,
		From: s.from.Format(time.DateOnly), To: s.to.Format(time.DateOnly)}
}

func (p *params) selector(now time.Time) selector {
	s := selector{scope: p.q.Get("scope"), key: p.q.Get("key")}
	switch {
	case s.scope != "asn" && s.scope != "country" && s.scope != "all":
		p.fail(bad("scope", "must be asn, country or all"))
	case !keyRE.MatchString(s.key) || (s.scope == "asn" && strings.Trim(s.key, "0123456789") != "") || (s.scope != "all" && s.key == ""):
		p.fail(bad("key", "must be an AS number (scope asn) or a country code (scope country)"))
	}
	if s.scope == "all" {
		s.key = ""
	}
	if s.scope == "country" {
		s.key = strings.ToUpper(s.key)
	}
	s.metric = p.oneOf("metric", "download_mbps", metrics...)
	s.test = p.oneOf("test", "speedtest", tests...)
	s.goodset = p.q.Get("goodset")
	if s.goodset == "" {
		s.goodset = "all"
	} else if !goodsetRE.MatchString(s.goodset) {
		p.fail(bad("goodset", "must be a goodset name like all or paper2011"))
	}
	s.synthetic = p.boolean("synthetic")
	s.from, s.to = p.days(30, 366, now)
	return s
}

func (s selector) syn() uint8 {
	if s.synthetic {
		return 1
	}
	return 0
}

// bySelector answers an endpoint that takes a selector (scope, key,
// metric, goodset, synthetic and a range of days) with what query finds.
func bySelector[T any](a *API, what string, query func(*API, context.Context, selector) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		p := &params{q: r.URL.Query()}
		p.known("test", "scope", "key", "metric", "goodset", "synthetic", "days", "from", "to")
		s := p.selector(now)
		if p.err != nil {
			a.replyErr(w, what, p.err)
			return
		}
		v, err := query(a, r.Context(), s)
		if err != nil {
			a.replyErr(w, what, err)
			return
		}
		reply(w, http.StatusOK, cacheFor(s.to, now), v)
	}
}

// distribution reads the daily distributions a selector names. Every
// query of the analytics tables names the test: it leads their sorting key,
// so ClickHouse reads only the granules of the key asked for.
func (a *API) distribution(ctx context.Context, s selector) (*Distribution, error) {
	ctx, cancel := queryCtx(ctx)
	defer cancel()
	d := &Distribution{Selection: s.selection(), Weighting: "agents", Days: []Day{}, TestVersions: []string{}}
	days, err := chdb.Select(ctx, a.cfg.Conn, func(rows driver.Rows, x *Day) error {
		var lo, hi float64
		var versions []string
		err := rows.Scan(&x.Day, &x.TestsTotal, &x.Tests, &x.Agents, &x.AgentsTotal, &x.Mean, &x.P10, &x.P25, &x.P50, &lo, &hi, &x.P75, &x.P90, &x.Modes, &d.Org, &d.Country, &d.GoodsetDef, &versions)
		x.P50CILow, x.P50CIHigh = Number(lo), Number(hi)
		for _, v := range versions {
			if !slices.Contains(d.TestVersions, v) {
				d.TestVersions = append(d.TestVersions, v)
			}
		}
		return err
	}, `SELECT toString(day), tests_total, tests, agents, agents_total, mean, p10, p25, p50, p50_ci_low, p50_ci_high, p75, p90, modes, org, country, goodset_def, test_versions
		FROM analytics_distributions
		WHERE test = ? AND scope = ? AND key = ? AND metric = ? AND goodset = ? AND synthetic = ? AND weighting = 'agents' AND day >= toDate(?) AND day <= toDate(?)
		ORDER BY day`, s.test, s.scope, s.key, s.metric, s.goodset, s.syn(), d.From, d.To)
	d.Days = append(d.Days, days...)
	slices.Sort(d.TestVersions)
	return d, err
}

// ISP is one entry of GET /api/v1/isps: an AS with tests in the period,
// with the median of its daily medians per metric weighted by the agents
// that voted each day (goodset all; GET /api/v1/table has the median over
// distinct agents, with its interval).
type ISP struct {
	ASN          string `json:"asn"`
	Org          string `json:"org"`
	Country      string `json:"country"`
	Tests        uint64 `json:"tests"`
	AgentDays    uint64 `json:"agent_days"`
	DownloadMbps Number `json:"download_mbps"`
	UploadMbps   Number `json:"upload_mbps"`
	RTTMS        Number `json:"rtt_ms"`
}

// Number is a float that is null in JSON when it is not a number (a
// median over no tests).
type Number float64

// MarshalJSON writes null for NaN and infinities.
func (n Number) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(n)) || math.IsInf(float64(n), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(n))
}

// isps searches the ISPs with tests in the last 30 days by name fragment,
// AS number or country code (q), most tested first.
func (a *API) isps(w http.ResponseWriter, r *http.Request) {
	p := &params{q: r.URL.Query()}
	p.known("q", "limit", "synthetic", "days")
	term := strings.TrimSpace(p.q.Get("q"))
	if len(term) > 64 {
		p.fail(bad("q", "is longer than 64 bytes"))
	}
	limit := p.intIn("limit", 50, 1, 500)
	days := p.intIn("days", 30, 1, 366)
	syn := p.boolean("synthetic")
	if p.err != nil {
		a.replyErr(w, "isps", p.err)
		return
	}
	out, err := a.ispList(r.Context(), term, syn, days, limit)
	if err != nil {
		a.replyErr(w, "isps", err)
		return
	}
	reply(w, http.StatusOK, 5*time.Minute, map[string]any{"isps": out})
}

// ispList is the ISPs matching term (empty: all) over the last days.
func (a *API) ispList(ctx context.Context, term string, synthetic bool, days, limit int) ([]ISP, error) {
	ctx, cancel := queryCtx(ctx)
	defer cancel()
	syn := uint8(0)
	if synthetic {
		syn = 1
	}
	up := strings.TrimPrefix(strings.ToUpper(term), "AS")
	out, err := chdb.Select(ctx, a.cfg.Conn, func(rows driver.Rows, x *ISP) error {
		var down, up, rtt float64
		if err := rows.Scan(&x.ASN, &x.Org, &x.Country, &x.Tests, &x.AgentDays, &down, &up, &rtt); err != nil {
			return err
		}
		x.DownloadMbps, x.UploadMbps, x.RTTMS = Number(down), Number(up), Number(rtt)
		return nil
	}, `SELECT key, any(org), any(country),
			sumIf(tests, metric = 'download_mbps') AS n, sumIf(agents, metric = 'download_mbps'),
			quantileExactWeightedIf(0.5)(p50, agents, metric = 'download_mbps'),
			quantileExactWeightedIf(0.5)(p50, agents, metric = 'upload_mbps'),
			quantileExactWeightedIf(0.5)(p50, agents, metric = 'rtt_ms')
		FROM analytics_distributions
		WHERE test = 'speedtest' AND scope = 'asn' AND goodset = 'all' AND weighting = 'agents' AND synthetic = ? AND day > toDate(now(), 'UTC') - ?
		GROUP BY key
		HAVING n > 0 AND (? = '' OR key = ? OR upper(any(country)) = ? OR positionCaseInsensitive(any(org), ?) > 0)
		ORDER BY n DESC, key LIMIT ?`, syn, days, up, up, up, term, limit)
	if out == nil && err == nil {
		out = []ISP{}
	}
	return out, err
}
