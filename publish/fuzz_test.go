package publish

import (
	"net/url"
	"testing"
	"time"
)

// FuzzQueryParams: whatever query string a caller sends, the parameter
// parsing of the API never panics, and what it accepts is within bounds:
// a known scope and metric, a range in order spanning at most its limit,
// and a cursor that round-trips.
func FuzzQueryParams(f *testing.F) {
	for _, s := range []string{
		"scope=asn&key=3269", "scope=country&key=it&metric=rtt_ms&days=7", "scope=all&from=2026-11-01&to=2026-11-20",
		"from=2026-11-20&to=2026-11-01", "days=0", "cursor=MjAyNi0xMS0yMC8wMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDA",
		"scope=asn&key=%00", "goodset=paper2011-daily&synthetic=1", "limit=1000&format=csv",
	} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p := &params{q: q}
		s := p.selector(now)
		p.intIn("limit", 100, 1, 1000)
		p.oneOf("format", "json", "json", "csv")
		if p.err == nil {
			switch {
			case s.scope != "asn" && s.scope != "country" && s.scope != "all":
				t.Fatalf("scope %q accepted", s.scope)
			case s.metric != "download_mbps" && s.metric != "upload_mbps" && s.metric != "rtt_ms":
				t.Fatalf("metric %q accepted", s.metric)
			case s.to.Before(s.from) || s.to.Sub(s.from) >= 366*24*time.Hour:
				t.Fatalf("range %v..%v accepted", s.from, s.to)
			case !keyRE.MatchString(s.key):
				t.Fatalf("key %q accepted", s.key)
			}
		} else if _, ok := p.err.(*badParam); !ok {
			t.Fatalf("error of the wrong kind: %v", p.err)
		}
		if v := q.Get("cursor"); v != "" {
			if c, err := parseCursor(v); err == nil {
				c2, err := parseCursor(c.String())
				if err != nil || c2 != c {
					t.Fatalf("cursor %q does not round-trip: %v", v, err)
				}
			}
		}
	})
}
