package publish

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/schemas"
)

// Hour is one hour of the hour-of-day profile.
type Hour struct {
	Hour   int     `json:"hour"`
	Tests  uint64  `json:"tests"`
	Agents uint64  `json:"agents"`
	P50    float64 `json:"p50"`
}

// Hourly is the answer of GET /api/v1/hourly: per hour of the day, in Zone
// (the volunteers' local time where their country has one time zone, else
// UTC), the median of each day's hourly medians over agents, weighted by
// the agents that voted.
type Hourly struct {
	Selection
	Zone  string `json:"zone"`
	Hours []Hour `json:"hours"`
}

func (a *API) hourly(ctx context.Context, s selector) (*Hourly, error) {
	ctx, cancel := queryCtx(ctx)
	defer cancel()
	h := &Hourly{Selection: s.selection(), Zone: "UTC", Hours: []Hour{}}
	// The zone with most votes: a provider across zones (rare) is shown in
	// its main one.
	if err := a.cfg.Conn.QueryRow(ctx, `SELECT zone FROM analytics_hourly
		WHERE test = ? AND scope = ? AND key = ? AND metric = ? AND goodset = ? AND synthetic = ? AND day >= toDate(?) AND day <= toDate(?)
		GROUP BY zone ORDER BY sum(agents) DESC, zone LIMIT 1`, s.test, s.scope, s.key, s.metric, s.goodset, s.syn(), h.From, h.To).Scan(&h.Zone); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	hours, err := chdb.Select(ctx, a.cfg.Conn, func(rows driver.Rows, x *Hour) error {
		var hr uint8
		err := rows.Scan(&hr, &x.Tests, &x.Agents, &x.P50)
		x.Hour = int(hr)
		return err
	}, `SELECT hour, sum(tests), sum(agents), quantileExactWeighted(0.5)(p50, agents)
		FROM analytics_hourly
		WHERE test = ? AND scope = ? AND key = ? AND metric = ? AND goodset = ? AND synthetic = ? AND zone = ? AND day >= toDate(?) AND day <= toDate(?)
		GROUP BY hour ORDER BY hour`, s.test, s.scope, s.key, s.metric, s.goodset, s.syn(), h.Zone, h.From, h.To)
	h.Hours = append(h.Hours, hours...)
	return h, err
}

// Bucket is one bar of a histogram: votes (one per agent and day, the
// median of its tests inside the goodset; the field keeps its first name,
// tests) with a value in [Lower, Upper); the first bucket has no lower
// bound and the last no upper one (0 here).
type Bucket struct {
	Lower float64 `json:"lower"`
	Upper float64 `json:"upper"`
	Tests uint64  `json:"tests"`
}

// Histogram is the answer of GET /api/v1/histogram: the distribution of a
// metric over the whole range, on the log-scale buckets of the analytics
// (ten per decade).
type Histogram struct {
	Selection
	Tests   uint64   `json:"tests"`
	Buckets []Bucket `json:"buckets"`
}

// bucketEdge is the lower edge of log bucket i (analytics.BucketLow, the
// layout of analytics_distributions.hist), rounded.
func bucketEdge(i int) float64 {
	return math.Round(analytics.BucketLow(i)*1e4) / 1e4
}

func (a *API) histogram(ctx context.Context, s selector) (*Histogram, error) {
	ctx, cancel := queryCtx(ctx)
	defer cancel()
	h := &Histogram{Selection: s.selection(), Buckets: []Bucket{}}
	var counts []uint64
	var n uint64
	err := a.cfg.Conn.QueryRow(ctx, `SELECT sumForEach(hist), count()
		FROM analytics_distributions
		WHERE test = ? AND scope = ? AND key = ? AND metric = ? AND goodset = ? AND synthetic = ? AND weighting = 'agents' AND day >= toDate(?) AND day <= toDate(?)`,
		s.test, s.scope, s.key, s.metric, s.goodset, s.syn(), h.From, h.To).Scan(&counts, &n)
	if err != nil {
		return nil, err
	}
	// Only the span of buckets holding tests, with the open ends marked 0.
	first, last := -1, -1
	for i, c := range counts {
		if c > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	for i := first; first >= 0 && i <= last; i++ {
		b := Bucket{Lower: bucketEdge(i), Upper: bucketEdge(i + 1), Tests: counts[i]}
		if i == 0 {
			b.Lower = 0
		}
		if i == len(counts)-1 {
			b.Upper = 0
		}
		h.Tests += counts[i]
		h.Buckets = append(h.Buckets, b)
	}
	return h, nil
}

// measurementsMaxDays bounds the range of one measurements query.
const measurementsMaxDays = 31

// cursor is where a page of measurements ends: (day, measurement_uid), the
// table's sorting key, so the next page starts right after it.
type cursor struct {
	day time.Time
	uid uuid.UUID
}

func (c cursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(c.day.Format(time.DateOnly) + "/" + c.uid.String()))
}

func parseCursor(s string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) > 64 {
		return c, bad("cursor", "is not a cursor of this API (copy next_cursor as is)")
	}
	d, u, ok := strings.Cut(string(b), "/")
	if !ok {
		return c, bad("cursor", "is not a cursor of this API (copy next_cursor as is)")
	}
	if c.day, err = time.Parse(time.DateOnly, d); err != nil {
		return c, bad("cursor", "is not a cursor of this API (copy next_cursor as is)")
	}
	if c.uid, err = uuid.Parse(u); err != nil {
		return c, bad("cursor", "is not a cursor of this API (copy next_cursor as is)")
	}
	return c, nil
}

// measurements pages through the published measurements of one test (the
// rows of the dumps: can_publish only, real or synthetic as asked), in the
// order of the table: day, then measurement_uid.
func (a *API) measurements(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	p := &params{q: r.URL.Query()}
	p.known("test", "from", "to", "days", "asn", "country", "served_by", "limit", "cursor", "format", "synthetic")
	testName := p.q.Get("test")
	if testName == "" {
		testName = schemas.SpeedtestName
	}
	test, ok := schemas.Lookup(testName)
	if !ok {
		var names []string
		for _, t := range schemas.Tests() {
			names = append(names, t.Name)
		}
		p.fail(bad("test", "must be one of %s", strings.Join(names, ", ")))
	}
	from, to := p.days(1, measurementsMaxDays, now)
	limit := p.intIn("limit", 100, 1, 1000)
	var asn uint64
	if v := p.q.Get("asn"); v != "" {
		var err error
		if asn, err = strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(v), "AS"), 10, 32); err != nil {
			p.fail(bad("asn", "must be an AS number from 0 to 4294967295"))
		}
	}
	country := strings.ToUpper(p.q.Get("country"))
	if country != "" && (len(country) != 2 || strings.Trim(country, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "") {
		p.fail(bad("country", "must be an ISO 3166-1 alpha-2 code like IT"))
	}
	servedBy := p.oneOf("served_by", "any", "any", "platform", "peer")
	format := p.oneOf("format", "json", "json", "csv")
	syn := p.boolean("synthetic")
	var cur *cursor
	if v := p.q.Get("cursor"); v != "" {
		c, err := parseCursor(v)
		if err != nil {
			p.fail(err)
		}
		cur = &c
	}
	if p.err != nil {
		a.replyErr(w, "measurements", p.err)
		return
	}
	cols, err := a.columnsOf(r.Context(), test.Table)
	if err != nil {
		a.replyErr(w, "measurements", err)
		return
	}
	// UTC days whatever the server's zone: a range of Unix seconds.
	where := []string{"start_time >= toDateTime(?)", "start_time < toDateTime(?)", selection(syn)}
	args := []any{from.Unix(), to.AddDate(0, 0, 1).Unix()}
	if asn > 0 {
		where, args = append(where, "client_asn = ?"), append(args, uint32(asn))
	}
	if country != "" {
		where, args = append(where, "client_country = ?"), append(args, country)
	}
	switch servedBy {
	case "platform":
		where = append(where, "server_peer = 0")
	case "peer":
		where = append(where, "server_peer = 1")
	}
	if cur != nil {
		where = append(where, "(toDate(start_time, 'UTC') > toDate(?) OR (toDate(start_time, 'UTC') = toDate(?) AND measurement_uid > toUUID(?)))")
		args = append(args, cur.day.Format(time.DateOnly), cur.day.Format(time.DateOnly), cur.uid.String())
	}
	names := make([]string, len(cols))
	dests := make([]any, len(cols))
	for i, c := range cols {
		names[i], dests[i] = c.name, c.dest
	}
	ctx, cancel := queryCtx(r.Context())
	defer cancel()
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(finalSettings(clickhouse.Settings{"max_execution_time": int(maxExecution.Seconds()), "max_threads": 1})))
	q := fmt.Sprintf("SELECT %s FROM %s FINAL WHERE %s ORDER BY toDate(start_time, 'UTC'), measurement_uid LIMIT %d",
		strings.Join(names, ", "), test.Table, strings.Join(where, " AND "), limit+1)
	rows, err := a.cfg.Conn.Query(ctx, q, args...)
	if err != nil {
		a.replyErr(w, "measurements", err)
		return
	}
	defer rows.Close()
	// The page is built in memory (at most 1000 rows) so that an error
	// midway is a clean 503, not a truncated 200.
	var body bytes.Buffer
	var field []byte
	var next *cursor
	iUID, iStart := indexOfColumn(cols, "measurement_uid"), indexOfColumn(cols, "start_time")
	n, more := 0, false
	if format == "csv" {
		body.WriteString(strings.Join(names, ",") + "\n")
	} else {
		body.WriteString(`{"test":` + strconv.Quote(test.Name) + `,"measurements":[`)
	}
	for rows.Next() {
		if err := rows.Scan(dests...); err != nil {
			a.replyErr(w, "measurements", err)
			return
		}
		if n == limit {
			// One more row exists: the page ends at the previous one.
			more = true
			break
		}
		n++
		if format == "csv" {
			for i, c := range cols {
				if i > 0 {
					body.WriteByte(',')
				}
				field = c.csv(field[:0])
				body.Write(appendCSVField(nil, field, c.text))
			}
			body.WriteByte('\n')
		} else {
			if n > 1 {
				body.WriteByte(',')
			}
			body.WriteByte('{')
			for i, c := range cols {
				if i > 0 {
					body.WriteByte(',')
				}
				body.WriteString(strconv.Quote(c.name) + ":")
				body.Write(c.json(field[:0]))
			}
			body.WriteByte('}')
		}
		if iUID >= 0 && iStart >= 0 {
			t := *cols[iStart].dest.(*time.Time)
			next = &cursor{day: t.UTC().Truncate(24 * time.Hour), uid: *cols[iUID].dest.(*uuid.UUID)}
		}
	}
	if err := rows.Err(); err != nil {
		a.replyErr(w, "measurements", err)
		return
	}
	if !more {
		next = nil
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("X-Content-Type-Options", "nosniff")
	if next != nil {
		u := *r.URL
		qq := u.Query()
		qq.Set("cursor", next.String())
		// The window as absolute days: "the last day" moves at midnight.
		qq.Del("days")
		qq.Set("from", from.Format(time.DateOnly))
		qq.Set("to", to.Format(time.DateOnly))
		u.RawQuery = qq.Encode()
		h.Set("Link", "<"+u.RequestURI()+`>; rel="next"`)
		h.Set("X-Next-Cursor", next.String())
	}
	setCache(w, cacheFor(to, now))
	if format == "csv" {
		h.Set("Content-Type", "text/csv; charset=utf-8")
		h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s-%s.csv"`, test.Name, from.Format(time.DateOnly), to.Format(time.DateOnly)))
		_, _ = w.Write(body.Bytes())
		return
	}
	body.WriteString(`],"count":` + strconv.Itoa(n) + `,"next_cursor":`)
	if next != nil {
		body.WriteString(strconv.Quote(next.String()))
	} else {
		body.WriteString("null")
	}
	body.WriteString("}\n")
	h.Set("Content-Type", "application/json")
	_, _ = w.Write(body.Bytes())
}

func indexOfColumn(cols []*column, name string) int {
	for i, c := range cols {
		if c.name == name {
			return i
		}
	}
	return -1
}

// columnsOf is the published columns of a table. Their definitions are
// read from ClickHouse once per table (migrations run before the API
// starts); each request gets its own columns: they carry the scan
// destinations.
func (a *API) columnsOf(ctx context.Context, table string) ([]*column, error) {
	if defs, ok := a.colDefs.Load(table); ok {
		return newColumns(defs.([]columnDef))
	}
	ctx, cancel := queryCtx(ctx)
	defer cancel()
	defs, err := columnDefs(ctx, a.cfg.Conn, table)
	if err != nil {
		return nil, err
	}
	a.colDefs.Store(table, defs)
	return newColumns(defs)
}

// Dataset is one day of one test in GET /api/v1/datasets, with the URLs of
// its files.
type Dataset struct {
	Test     string        `json:"test"`
	Day      string        `json:"day"`
	Rows     uint64        `json:"rows"`
	Manifest string        `json:"manifest_url"`
	Files    []DatasetFile `json:"files"`
}

// DatasetFile is a file of a dataset.
type DatasetFile struct {
	URL    string `json:"url"`
	Format string `json:"format"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// datasetsURL is where the datasets trees are served.
const (
	datasetsURL          = "/datasets/"
	syntheticDatasetsURL = "/datasets-synthetic/"
)

func (a *API) datasets(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	p := &params{q: r.URL.Query()}
	p.known("test", "from", "to", "days", "synthetic")
	test := p.q.Get("test")
	if _, ok := schemas.Lookup(test); test != "" && !ok {
		p.fail(bad("test", "is not a test of Neubot"))
	}
	from, to := p.days(366, 3660, now)
	syn := p.boolean("synthetic")
	if p.err != nil {
		a.replyErr(w, "datasets", p.err)
		return
	}
	out, err := a.datasetList(test, from, to, syn)
	if err != nil {
		a.replyErr(w, "datasets", err)
		return
	}
	reply(w, http.StatusOK, 5*time.Minute, map[string]any{"licence": DataLicence, "datasets": out})
}

func (a *API) datasetList(test string, from, to time.Time, synthetic bool) ([]Dataset, error) {
	root, base := a.cfg.DatasetsDir, datasetsURL
	if synthetic {
		root, base = a.cfg.SyntheticDatasetsDir, syntheticDatasetsURL
	}
	out := []Dataset{}
	if root == "" {
		return out, nil
	}
	idx, err := ReadIndex(root)
	if err != nil {
		return nil, err
	}
	f, t := from.Format(time.DateOnly), to.Format(time.DateOnly)
	for _, e := range idx.Days {
		if (test != "" && e.Test != test) || e.Day < f || e.Day > t {
			continue
		}
		d := Dataset{Test: e.Test, Day: e.Day, Rows: e.Rows, Manifest: base + escapePath(e.Manifest)}
		for _, x := range e.Files {
			d.Files = append(d.Files, DatasetFile{URL: base + escapePath(x.Name), Format: x.Format, Bytes: x.Bytes, SHA256: x.SHA256})
		}
		out = append(out, d)
	}
	return out, nil
}

func escapePath(p string) string {
	parts := strings.Split(path.Clean(p), "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// jsonString is s as a JSON string.
func jsonString(dst []byte, s []byte) []byte {
	b, _ := json.Marshal(string(s))
	return append(dst, b...)
}
