// Package publish serves Neubot's open data. This first part is the public
// query API's per-ISP distributions and the caller's own network ("whoami"),
// which the agent uses to put a volunteer's results against their ISP's.
// Dumps, the rest of the API and the dashboards come next.
package publish

import (
	"context"
	_ "embed"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/go-chi/chi/v5"

	"github.com/neubot/neubot/collector/annotate"
	"github.com/neubot/neubot/internal/ratelimit"
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
	Rate   float64
	Burst  int
	Logger *slog.Logger
}

// API is the public query API.
type API struct {
	cfg     Config
	router  chi.Router
	limiter *ratelimit.Limiter
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
	a := &API{cfg: cfg, limiter: ratelimit.New(cfg.Rate, cfg.Burst)}
	r := chi.NewRouter()
	r.Use(a.rateLimit)
	r.Get("/api/v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		_, _ = w.Write(OpenAPI)
	})
	r.Get("/api/v1/whoami", a.whoami)
	r.Get("/api/v1/distributions", a.distributions)
	r.Get("/api/v1/isps", a.isps)
	a.router = r
	return a
}

// Handler is the API's HTTP handler.
func (a *API) Handler() http.Handler { return a.router }

type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func reply(w http.ResponseWriter, code int, maxAge time.Duration, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if maxAge > 0 {
		w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(maxAge.Seconds())))
	} else {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// rateLimit answers 429 with Retry-After to an address over its rate.
func (a *API) rateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := a.clientAddr(r)
		if !a.limiter.Allow(addr, time.Now()) {
			w.Header().Set("Retry-After", strconv.Itoa(int(a.limiter.RetryAfter(addr).Seconds())))
			reply(w, http.StatusTooManyRequests, 0, apiError{Error: "too many requests from this address: slow down"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// clientAddr is the caller's address, per the proxy policy.
func (a *API) clientAddr(r *http.Request) string {
	if a.cfg.TrustProxy {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			parts := strings.Split(xff, ",")
			return strings.TrimSpace(parts[len(parts)-1])
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Whoami is the caller's network, as Neubot annotates measurements; the
// full address is not returned, only its truncated prefix.
type Whoami struct {
	ASN     uint32 `json:"asn"`
	Org     string `json:"org"`
	Country string `json:"country"`
	Prefix  string `json:"prefix"`
}

func (a *API) whoami(w http.ResponseWriter, r *http.Request) {
	ann, err := a.cfg.IPDB.LookupString(a.clientAddr(r))
	if err != nil {
		reply(w, http.StatusBadRequest, 0, apiError{Error: "cannot tell the network of this address"})
		return
	}
	reply(w, http.StatusOK, 0, Whoami{ASN: ann.ASN, Org: ann.Org, Country: ann.Country, Prefix: ann.Prefix})
}

// Day is one day of a distribution.
type Day struct {
	Day    string  `json:"day"`
	Tests  uint64  `json:"tests"`
	Agents uint64  `json:"agents"`
	Mean   float64 `json:"mean"`
	P10    float64 `json:"p10"`
	P25    float64 `json:"p25"`
	P50    float64 `json:"p50"`
	P75    float64 `json:"p75"`
	P90    float64 `json:"p90"`
}

// Distribution is the answer of GET /api/v1/distributions.
type Distribution struct {
	Scope     string `json:"scope"`
	Key       string `json:"key"`
	Org       string `json:"org"`
	Country   string `json:"country"`
	Metric    string `json:"metric"`
	Goodset   string `json:"goodset"`
	Synthetic bool   `json:"synthetic"`
	Days      []Day  `json:"days"`
}

var (
	keyRE     = regexp.MustCompile(`^[A-Za-z0-9]{0,16}$`)
	metrics   = map[string]bool{"download_mbps": true, "upload_mbps": true, "rtt_ms": true}
	scopesAPI = map[string]bool{"asn": true, "country": true, "all": true}
)

// distributions answers the daily distributions of one ISP, country or
// everything, over the last `days` days (default 30, at most 366).
func (a *API) distributions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := Distribution{Scope: q.Get("scope"), Key: q.Get("key"), Metric: q.Get("metric"), Goodset: q.Get("goodset")}
	if d.Metric == "" {
		d.Metric = "download_mbps"
	}
	if d.Goodset == "" {
		d.Goodset = "all"
	}
	days := 30
	switch {
	case !scopesAPI[d.Scope]:
		reply(w, http.StatusBadRequest, 0, apiError{Error: "scope must be asn, country or all", Field: "scope"})
		return
	case !keyRE.MatchString(d.Key) || (d.Scope == "asn" && strings.Trim(d.Key, "0123456789") != "") || (d.Scope != "all" && d.Key == ""):
		reply(w, http.StatusBadRequest, 0, apiError{Error: "key must be an AS number (scope asn) or a country code (scope country)", Field: "key"})
		return
	case !metrics[d.Metric]:
		reply(w, http.StatusBadRequest, 0, apiError{Error: "metric must be download_mbps, upload_mbps or rtt_ms", Field: "metric"})
		return
	case len(d.Goodset) > 64:
		reply(w, http.StatusBadRequest, 0, apiError{Error: "goodset is too long", Field: "goodset"})
		return
	}
	if v := q.Get("days"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 366 {
			reply(w, http.StatusBadRequest, 0, apiError{Error: "days must be an integer from 1 to 366", Field: "days"})
			return
		}
		days = n
	}
	switch q.Get("synthetic") {
	case "", "0", "false":
	case "1", "true":
		d.Synthetic = true
	default:
		reply(w, http.StatusBadRequest, 0, apiError{Error: "synthetic must be 0 or 1", Field: "synthetic"})
		return
	}
	if d.Scope == "all" {
		d.Key = ""
	}
	ctx := clickhouse.Context(r.Context(), clickhouse.WithSettings(clickhouse.Settings{"max_execution_time": 10}))
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	syn := uint8(0)
	if d.Synthetic {
		syn = 1
	}
	rows, err := a.cfg.Conn.Query(ctx, `SELECT toString(day), tests, agents, mean, p10, p25, p50, p75, p90, org, country
		FROM analytics_distributions
		WHERE scope = ? AND key = ? AND metric = ? AND goodset = ? AND synthetic = ? AND day >= today() - ?
		ORDER BY day`, d.Scope, d.Key, d.Metric, d.Goodset, syn, days)
	if err != nil {
		a.cfg.Logger.Error("publish: distributions query", "err", err)
		reply(w, http.StatusServiceUnavailable, 0, apiError{Error: "the data store is not available now"})
		return
	}
	defer rows.Close()
	d.Days = []Day{}
	for rows.Next() {
		var x Day
		if err := rows.Scan(&x.Day, &x.Tests, &x.Agents, &x.Mean, &x.P10, &x.P25, &x.P50, &x.P75, &x.P90, &d.Org, &d.Country); err != nil {
			reply(w, http.StatusServiceUnavailable, 0, apiError{Error: "the data store answered badly"})
			return
		}
		d.Days = append(d.Days, x)
	}
	reply(w, http.StatusOK, 5*time.Minute, d)
}

// ISP is one entry of GET /api/v1/isps.
type ISP struct {
	ASN     string `json:"asn"`
	Org     string `json:"org"`
	Country string `json:"country"`
	Tests   uint64 `json:"tests"`
}

// isps searches the ISPs with tests in the last 30 days by name fragment,
// AS number or country code (q), most tested first.
func (a *API) isps(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	term := strings.TrimSpace(q.Get("q"))
	if len(term) > 64 {
		reply(w, http.StatusBadRequest, 0, apiError{Error: "q is longer than 64 bytes", Field: "q"})
		return
	}
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			reply(w, http.StatusBadRequest, 0, apiError{Error: "limit must be an integer from 1 to 500", Field: "limit"})
			return
		}
		limit = n
	}
	syn := uint8(0)
	switch q.Get("synthetic") {
	case "", "0", "false":
	case "1", "true":
		syn = 1
	default:
		reply(w, http.StatusBadRequest, 0, apiError{Error: "synthetic must be 0 or 1", Field: "synthetic"})
		return
	}
	ctx := clickhouse.Context(r.Context(), clickhouse.WithSettings(clickhouse.Settings{"max_execution_time": 10}))
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	term = strings.TrimPrefix(strings.ToUpper(term), "AS")
	rows, err := a.cfg.Conn.Query(ctx, `SELECT key, any(org), any(country), sum(tests) AS n
		FROM analytics_distributions
		WHERE scope = 'asn' AND goodset = 'all' AND metric = 'download_mbps' AND synthetic = ? AND day >= today() - 30
		GROUP BY key
		HAVING ? = '' OR key = ? OR upper(any(country)) = ? OR positionCaseInsensitive(any(org), ?) > 0
		ORDER BY n DESC, key LIMIT ?`, syn, term, term, term, q.Get("q"), limit)
	if err != nil {
		a.cfg.Logger.Error("publish: isps query", "err", err)
		reply(w, http.StatusServiceUnavailable, 0, apiError{Error: "the data store is not available now"})
		return
	}
	defer rows.Close()
	out := []ISP{}
	for rows.Next() {
		var x ISP
		if err := rows.Scan(&x.ASN, &x.Org, &x.Country, &x.Tests); err != nil {
			reply(w, http.StatusServiceUnavailable, 0, apiError{Error: "the data store answered badly"})
			return
		}
		out = append(out, x)
	}
	reply(w, http.StatusOK, 5*time.Minute, map[string]any{"isps": out})
}
