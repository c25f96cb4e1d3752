package publish

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/neubot/neubot/schemas"
)

// ClosedAfter is how long after its end a day closes: from then on its
// dumps, measurements and figures do not change, and answers about it are
// immutable (see schemas.ClosedAfter).
const ClosedAfter = schemas.ClosedAfter

// badParam is a 400 naming the parameter.
type badParam struct{ field, msg string }

func (e *badParam) Error() string { return e.field + ": " + e.msg }

func bad(field, format string, args ...any) error {
	return &badParam{field: field, msg: fmt.Sprintf(format, args...)}
}

// params reads and validates query parameters; the first error wins.
type params struct {
	q   url.Values
	err error
}

func (p *params) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

// known refuses parameters the endpoint does not take: a typo must not
// silently widen a query.
func (p *params) known(names ...string) {
	for k := range p.q {
		ok := false
		for _, n := range names {
			ok = ok || k == n
		}
		if !ok {
			p.fail(bad(k, "unknown parameter (this endpoint takes %s)", strings.Join(names, ", ")))
		}
	}
}

func (p *params) intIn(name string, def, lo, hi int) int {
	v := p.q.Get(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.fail(bad(name, "must be an integer from %d to %d", lo, hi))
		return def
	}
	return n
}

func (p *params) boolean(name string) bool {
	switch p.q.Get(name) {
	case "", "0", "false":
		return false
	case "1", "true":
		return true
	}
	p.fail(bad(name, "must be 0 or 1"))
	return false
}

func (p *params) oneOf(name, def string, allowed ...string) string {
	v := p.q.Get(name)
	if v == "" {
		return def
	}
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	p.fail(bad(name, "must be one of %s", strings.Join(allowed, ", ")))
	return def
}

// days reads from/to (YYYY-MM-DD, inclusive) or, without them, the last
// `days` days up to today; the range spans at most maxDays.
func (p *params) days(defDays, maxDays int, now time.Time) (from, to time.Time) {
	today := now.UTC().Truncate(24 * time.Hour)
	fs, ts := p.q.Get("from"), p.q.Get("to")
	if fs == "" && ts == "" {
		n := p.intIn("days", defDays, 1, maxDays)
		return today.AddDate(0, 0, -(n - 1)), today
	}
	if p.q.Has("days") {
		p.fail(bad("days", "give either days or from/to"))
	}
	parse := func(name, s string) time.Time {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			p.fail(bad(name, "must be a day like 2026-11-20"))
		}
		return d
	}
	from = parse("from", fs)
	to = today
	if ts != "" {
		to = parse("to", ts)
	}
	switch {
	case p.err != nil:
	case to.Before(from):
		p.fail(bad("to", "is before from"))
	case to.Sub(from) >= time.Duration(maxDays)*24*time.Hour:
		p.fail(bad("to", "the range spans more than %d days", maxDays))
	case from.Year() < 2000 || to.After(today.AddDate(0, 0, 1)):
		p.fail(bad("from", "the range must lie between 2000 and tomorrow"))
	}
	return from, to
}

// cacheFor is how long an answer about days up to `to` may be cached:
// for ever once they are all closed, else five minutes.
func cacheFor(to, now time.Time) time.Duration {
	if now.Sub(to.Add(24*time.Hour)) >= ClosedAfter {
		return immutable
	}
	return 5 * time.Minute
}

// immutable marks an answer that will not change.
const immutable = 365 * 24 * time.Hour

func setCache(w http.ResponseWriter, maxAge time.Duration) {
	switch {
	case maxAge == immutable:
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	case maxAge > 0:
		w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(maxAge.Seconds())))
	default:
		w.Header().Set("Cache-Control", "no-store")
	}
}

// replyErr answers a parameter error with 400, anything else with 503.
func (a *API) replyErr(w http.ResponseWriter, what string, err error) {
	if bp, ok := err.(*badParam); ok {
		reply(w, http.StatusBadRequest, 0, apiError{Error: bp.Error(), Field: bp.field})
		return
	}
	a.cfg.Logger.Error("publish: query failed", "what", what, "err", err)
	reply(w, http.StatusServiceUnavailable, 0, apiError{Error: "the data store is not available now"})
}

// queryCtx bounds a query: ClickHouse stops it after maxExecution, and the
// request gives up a little later. The API's queries read a few granules
// each: one thread apiece serves many callers at once better than a pool
// of threads per query, which ClickHouse 18.16 creates anew every time.
func queryCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_execution_time": int(maxExecution.Seconds()), "max_threads": 1}))
	return context.WithTimeout(ctx, maxExecution+5*time.Second)
}

const maxExecution = 10 * time.Second
