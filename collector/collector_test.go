package collector_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/collector"
	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/internal/spool"
	"github.com/neubot/neubot/internal/webtest"
	"github.com/neubot/neubot/proto/ingest"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

func TestMain(m *testing.M) { os.Exit(localchtest.MainNoLeaks(m)) }

func post(t testing.TB, url string, body []byte, header ...string) (int, ingest.Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+ingest.Path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	code, b := webtest.Do(t, req)
	var out ingest.Response
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, b)
	}
	return code, out
}

type row struct {
	UID     string
	ASN     uint32
	Org     string
	Country string
	Prefix  string
	Count   uint64
}

func rows(t testing.TB, c *collectortest.Collector) []row {
	t.Helper()
	return localchtest.Select(t, c.Conn, func(r driver.Rows, x *row) error {
		return r.Scan(&x.UID, &x.ASN, &x.Org, &x.Country, &x.Prefix, &x.Count)
	}, "SELECT toString(measurement_uid), any(client_asn), any(client_org), any(client_country), any(client_prefix), count() FROM speedtest FINAL GROUP BY measurement_uid ORDER BY measurement_uid")
}

// TestIngestMixed is the curl of the README: a file mixing valid and invalid
// lines. The invalid ones come back with their line numbers and field
// paths; the valid ones are in ClickHouse exactly once, annotated.
func TestIngestMixed(t *testing.T) {
	c := collectortest.Start(t)
	body, err := os.ReadFile("testdata/mixed.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	code, resp := post(t, c.Server.URL, body)
	if code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", code)
	}
	type lf struct {
		line  int
		field string
	}
	var got []lf
	for _, r := range resp.Rejected {
		got = append(got, lf{r.Line, r.Field})
	}
	want := []lf{
		{2, "measurement_uid"}, {2, "test_keys.download.goodput_mbps"},
		{4, ""},
		{5, "test_keys.upload.samples[2].mbps"},
		{7, "start_time"}, {7, "consent.can_collect"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("rejected %v\nwant     %v\n(full answer %+v)", got, want, resp)
	}
	if resp.Accepted != 3 || resp.RejectedCount != 4 {
		t.Fatalf("accepted %d rejected %d; want 3 and 4", resp.Accepted, resp.RejectedCount)
	}
	// Send it again: still one row per measurement.
	post(t, c.Server.URL, body)
	c.WaitLoaded(t, 30*time.Second)
	rs := rows(t, c)
	if len(rs) != 3 {
		t.Fatalf("%d measurements in ClickHouse, want 3: %+v", len(rs), rs)
	}
	byUID := map[string]row{}
	for _, r := range rs {
		if r.Count != 1 {
			t.Errorf("measurement %s stored %d times (FINAL)", r.UID, r.Count)
		}
		byUID[r.UID] = r
	}
	for uid, w := range map[string]row{
		"38af1db8-1421-44e0-b4bf-6c8d17a08776": {ASN: 1267, Country: "IT", Prefix: "151.5.10.0/24"},
		"2a685858-b22b-4825-af27-80443ad66cb8": {ASN: 15169, Org: "Google LLC", Country: "US", Prefix: "8.8.8.0/24"},
		"67bb2360-93aa-44de-8553-73073b9d21eb": {ASN: 15169, Org: "Google LLC", Country: "US", Prefix: "2001:4860:4860::/48"},
	} {
		g := byUID[uid]
		if g.ASN != w.ASN || g.Country != w.Country || g.Prefix != w.Prefix || (w.Org != "" && g.Org != w.Org) {
			t.Errorf("%s annotated %+v; want %+v", uid, g, w)
		}
	}
	// The full client address is in no column of the table.
	for _, ip := range []string{"151.5.10.20", "8.8.8.8", "2001:4860:4860::8888"} {
		var n uint64
		q := "SELECT count() FROM speedtest WHERE position(concat(client_prefix, client_org, server_id, agent_software), ?) > 0"
		if err := c.Conn.QueryRow(context.Background(), q, ip).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("the full address %s is stored", ip)
		}
	}
}

func genBody(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		b.Write(schemastest.Line(schemastest.Speedtest(rng, time.Now().Add(-time.Hour), "151.5.10.20", 7)))
	}
	return b.Bytes()
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

func TestIngestStatusCodes(t *testing.T) {
	c := collectortest.New(t, collector.Config{MaxBodyBytes: 2 << 20, MaxDecodedBytes: 4 << 20, MaxLines: 1000})
	ten := genBody(10, 1)
	zeros := gz(make([]byte, 8<<20)) // 8 MiB of zeros, ~8 KiB compressed
	for _, tc := range []struct {
		name   string
		body   []byte
		header []string
		code   int
		accept int
		reason string
	}{
		{"plain", ten, nil, 202, 10, ""},
		{"gzip", gz(genBody(10, 2)), []string{"Content-Encoding", "gzip"}, 202, 10, ""},
		{"jsonl type", genBody(3, 3), []string{"Content-Type", "application/jsonl; charset=utf-8"}, 202, 3, ""},
		{"form type", ten, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, 0, "Content-Type"},
		{"no type", ten, []string{"Content-Type", ""}, 415, 0, "Content-Type"},
		{"brotli", ten, []string{"Content-Encoding", "br"}, 415, 0, "Content-Encoding"},
		{"bad gzip", []byte("not gzip at all"), []string{"Content-Encoding", "gzip"}, 400, 0, "gzip"},
		{"truncated gzip", gz(ten)[:200], []string{"Content-Encoding", "gzip"}, 400, 0, "cannot read"},
		{"oversized", bytes.Repeat(ten, 400), nil, 413, 0, "limit"},
		{"gzip bomb", zeros, []string{"Content-Encoding", "gzip"}, 413, 0, "limit"},
		{"too many lines", bytes.Repeat([]byte("\n"), 1001), nil, 413, 0, "lines"},
		{"empty", nil, nil, 400, 0, "no records"},
		{"only blank lines", []byte("\n\n  \n"), nil, 400, 0, "no records"},
		{"long line", append(bytes.Repeat([]byte(" "), 1<<20+10), append([]byte("\n"), ten...)...), nil, 400, 10, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, resp := post(t, c.Server.URL, tc.body, tc.header...)
			if code != tc.code || resp.Accepted != tc.accept || !strings.Contains(resp.Error, tc.reason) {
				t.Fatalf("got %d accepted %d error %q; want %d accepted %d error containing %q", code, resp.Accepted, resp.Error, tc.code, tc.accept, tc.reason)
			}
		})
	}
}

// TestAuthoritativeCopyWins: the agent's copy (no server view) and the
// server's merged copy of one measurement, signed by the enrolled server,
// are stored once, as the server's, whichever arrives first.
func TestAuthoritativeCopyWins(t *testing.T) {
	c := collectortest.Start(t)
	rng := rand.New(rand.NewPCG(9, 9))
	for _, serverFirst := range []bool{true, false} {
		rec := schemastest.Speedtest(rng, time.Now().Add(-time.Minute), "8.8.8.8", 50)
		server := schemastest.Signed(rec)
		keys := *rec.TestKeys.(*schemas.Speedtest)
		keys.ServerView = nil
		rec.TestKeys = &keys
		agent := schemastest.Line(rec)
		first, second := server, agent
		if !serverFirst {
			first, second = agent, server
		}
		for _, body := range [][]byte{first, second} {
			if code, resp := post(t, c.Server.URL, body); code != 202 {
				t.Fatalf("status %d: %+v", code, resp)
			}
			c.WaitLoaded(t, 30*time.Second) // separate inserts, as in life
		}
		var n uint64
		var authority uint8
		q := "SELECT count(), any(authority) FROM speedtest FINAL WHERE measurement_uid = toUUID(?)"
		if err := c.Conn.QueryRow(context.Background(), q, rec.MeasurementUID).Scan(&n, &authority); err != nil {
			t.Fatal(err)
		}
		if n != 1 || authority != 1 {
			t.Fatalf("serverFirst=%v: %d rows, authority %d; want 1 row with the server's view", serverFirst, n, authority)
		}
	}
}

func TestMetrics(t *testing.T) {
	c := collectortest.Start(t)
	post(t, c.Server.URL, genBody(5, 11))
	post(t, c.Server.URL, []byte("{}\n"))
	c.WaitLoaded(t, 30*time.Second)
	resp, err := http.Get(c.Server.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	for _, want := range []string{
		"neubot_collector_records_accepted_total 5",
		"neubot_collector_records_rejected_total 1",
		`neubot_collector_rows_inserted_total{test="speedtest"} 5`,
		"neubot_collector_spool_bytes 0",
		"neubot_collector_spool_records 0",
		"neubot_collector_loader_lag_seconds 0",
		"neubot_collector_insert_errors_total 0",
		`neubot_collector_ingest_requests_total{code="400"} 1`,
	} {
		if !strings.Contains(string(b), want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// FuzzIngest posts arbitrary bodies: the answer is always 202, 400 or 413,
// never a panic or a 5xx, and every valid line of a body is accepted.
func FuzzIngest(f *testing.F) {
	// The handler alone, on a spool without fsync: the fuzzer is after the
	// decoder and the validator, and needs speed rather than ClickHouse.
	c, err := collector.New(collector.Config{
		SpoolDir: f.TempDir(), Spool: spool.Options{NoSync: true},
		MaxBodyBytes: 256 << 10, MaxDecodedBytes: 512 << 10, MaxLines: 100,
	})
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	h := c.Handler()
	valid := genBody(2, 5)
	f.Add(valid, false)
	f.Add(append(append([]byte("{\"a\":\n"), valid...), 0xff, '\n'), false)
	f.Add(gz(valid), true)
	mixed, _ := os.ReadFile("testdata/mixed.ndjson")
	f.Add(mixed, false)
	f.Add([]byte(strings.Repeat("[", 100000)), false)
	bt := schemastest.Line(schemastest.BitTorrent(rand.New(rand.NewPCG(3, 3)), time.Now().Add(-time.Hour), "151.5.10.20", 20, schemas.OutcomeDifferentiation))
	f.Add(append(bt, valid...), false)
	f.Fuzz(func(t *testing.T, body []byte, gzipped bool) {
		req := httptest.NewRequest(http.MethodPost, ingest.Path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-ndjson")
		if gzipped {
			req.Header.Set("Content-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		code := rec.Code
		var resp ingest.Response
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("answer is not JSON: %s", rec.Body.Bytes())
		}
		switch code {
		case 202, 400, 413:
		default:
			t.Fatalf("status %d for body %q", code, body)
		}
		if gzipped || code == 413 {
			return
		}
		// Count valid lines independently; all must have been accepted.
		want := 0
		for _, line := range bytes.Split(body, []byte("\n")) {
			if _, err := schemas.DecodeRecord(bytes.TrimRight(line, "\r"), time.Now()); err == nil {
				want++
			}
		}
		if resp.Accepted != want {
			t.Fatalf("accepted %d of %d valid lines (%+v)", resp.Accepted, want, resp)
		}
	})
}

// TestBadBodies posts the deliberately bad inputs of testdata/bad: each
// holds one valid record (line 1) and one bad line (line 2). The bad line
// is refused with a 400 naming it; the valid record is stored.
func TestBadBodies(t *testing.T) {
	c := collectortest.Start(t)
	files, _ := filepath.Glob("testdata/bad/*.ndjson")
	if len(files) < 4 {
		t.Fatalf("testdata/bad holds %d files", len(files))
	}
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		code, resp := post(t, c.Server.URL, body)
		if code != 400 || resp.Accepted != 1 || resp.RejectedCount != 1 || len(resp.Rejected) == 0 || resp.Rejected[0].Line != 2 {
			t.Errorf("%s: %d %+v; want 400, 1 accepted, line 2 refused", f, code, resp)
		}
		t.Logf("%s: line %d %s: %s", filepath.Base(f), resp.Rejected[0].Line, resp.Rejected[0].Field, resp.Rejected[0].Reason)
	}
	c.WaitLoaded(t, 30*time.Second)
	if rs := rows(t, c); len(rs) != 1 || rs[0].Count != 1 {
		t.Fatalf("stored %+v; want the one valid record once", rs)
	}
}
