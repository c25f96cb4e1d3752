package publish_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/internal/webtest"
	"github.com/neubot/neubot/proto/publicapi"
	"github.com/neubot/neubot/publish"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

// TestMeasurementsAndDatasets: paging through a day's measurements (JSON
// and CSV, following the cursor and the Link header) gives exactly the rows
// of that day's dump, in the same order; bad parameters get 400 naming the
// field; closed days are immutable; the datasets are listed and served with
// Range and an ETag equal to the manifest's SHA-256; the cache answers
// repeated questions.
func TestMeasurementsAndDatasets(t *testing.T) {
	srv, dir := publishedSite(t)
	yesterday := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -1).Format(time.DateOnly)

	// The dump's measurement_uids, in order.
	dump := readCSV(t, filepath.Join(dir, "speedtest", yesterday[:4], yesterday[5:7], yesterday[8:], "speedtest-"+yesterday+".csv.gz"))
	uidCol := indexOf(dump[0], "measurement_uid")
	var want []string
	for _, r := range dump[1:] {
		want = append(want, r[uidCol])
	}

	// JSON pages of 97.
	var got []string
	url := fmt.Sprintf("%s/api/v1/measurements?from=%s&to=%s&limit=97", srv.URL, yesterday, yesterday)
	pages := 0
	for cursor := ""; ; pages++ {
		var page struct {
			Measurements []map[string]any `json:"measurements"`
			Count        int              `json:"count"`
			NextCursor   *string          `json:"next_cursor"`
		}
		u := url
		if cursor != "" {
			u += "&cursor=" + cursor
		}
		webtest.GetJSON(t, u, &page)
		if page.Count != len(page.Measurements) || page.Count > 97 {
			t.Fatalf("page %d: count %d, %d rows", pages, page.Count, len(page.Measurements))
		}
		for _, m := range page.Measurements {
			got = append(got, m["measurement_uid"].(string))
			if m["synthetic"].(float64) != 0 || m["consent_can_publish"].(float64) != 1 {
				t.Fatalf("unpublishable row served: %v", m["measurement_uid"])
			}
			if _, ok := m["client_prefix"].(string); !ok {
				t.Fatal("no client_prefix")
			}
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	if strings.Join(got, " ") != strings.Join(want, " ") || pages < 2 {
		t.Fatalf("JSON pages: %d rows in %d pages, the dump %d", len(got), pages+1, len(want))
	}

	// CSV pages of 500 through the Link header: the same rows and columns.
	got = got[:0]
	next := fmt.Sprintf("/api/v1/measurements?from=%s&to=%s&limit=500&format=csv", yesterday, yesterday)
	for next != "" {
		resp, err := http.Get(srv.URL + next)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(resp.Body).ReadAll()
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || strings.Join(recs[0], ",") != strings.Join(dump[0], ",") {
			t.Fatalf("CSV page: %d %v header %v", resp.StatusCode, err, recs[0])
		}
		for _, r := range recs[1:] {
			got = append(got, r[uidCol])
		}
		next = ""
		if l := resp.Header.Get("Link"); l != "" {
			if !strings.Contains(l, "from="+yesterday) || !strings.Contains(l, "to="+yesterday) {
				t.Fatalf("the next page's window is not absolute: %s", l)
			}
			next = strings.TrimSuffix(strings.TrimPrefix(strings.Split(l, ";")[0], "<"), ">")
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("CSV pages: %d rows, the dump %d", len(got), len(want))
	}

	// Filters and bad parameters.
	var page struct {
		Measurements []map[string]any `json:"measurements"`
	}
	peerCol, peers := indexOf(dump[0], "server_peer"), 0
	for _, r := range dump[1:] {
		if r[peerCol] == "1" {
			peers++
		}
	}
	for servedBy, want := range map[string]int{"peer": peers, "platform": len(dump) - 1 - peers} {
		webtest.GetJSON(t, fmt.Sprintf("%s/api/v1/measurements?from=%s&to=%s&served_by=%s&limit=1000", srv.URL, yesterday, yesterday, servedBy), &page)
		for _, m := range page.Measurements {
			if (m["server_peer"].(float64) == 1) != (servedBy == "peer") {
				t.Fatalf("served_by=%s let a row with server_peer=%v through", servedBy, m["server_peer"])
			}
		}
		// Peer tests have no platform server's signature: stored, never
		// published (spec/trust.md).
		if len(page.Measurements) != want || peers != 0 {
			t.Fatalf("served_by=%s: %d rows, the dump has %d (%d peer tests)", servedBy, len(page.Measurements), want, peers)
		}
	}
	webtest.GetJSON(t, fmt.Sprintf("%s/api/v1/measurements?from=%s&asn=64497&limit=1000", srv.URL, yesterday), &page)
	if len(page.Measurements) == 0 {
		t.Fatal("asn filter: nothing")
	}
	for _, m := range page.Measurements {
		if m["client_asn"].(float64) != 64497 {
			t.Fatalf("asn filter let AS%v through", m["client_asn"])
		}
	}
	for q, field := range map[string]string{
		"limit=0": "limit", "limit=1001": "limit", "from=2026-13-01": "from", "from=2026-01-01&to=2026-03-01": "to",
		"cursor=@@@": "cursor", "cursor=bm90LWEtY3Vyc29y": "cursor", "format=xml": "format", "served_by=friends": "served_by", "test=nope": "test",
		"country=ITA": "country", "asn=-1": "asn", "color=red": "color", "days=40": "days",
	} {
		resp, err := http.Get(srv.URL + "/api/v1/measurements?" + q)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error, Field string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 400 || e.Field != field || e.Error == "" {
			t.Errorf("%s: %d %+v, want 400 naming %s", q, resp.StatusCode, e, field)
		}
	}

	// Caching: a closed day is immutable, today is not; the second ask of
	// a distribution is a cache hit.
	closed := time.Now().UTC().AddDate(0, 0, -4).Format(time.DateOnly)
	for q, want := range map[string]string{
		"/api/v1/measurements?from=" + closed + "&to=" + closed:                      "immutable",
		publicapi.MeasurementsPath:                                                   "max-age=300",
		"/api/v1/distributions?scope=asn&key=64496&from=" + closed + "&to=" + closed: "immutable",
		"/api/v1/distributions?scope=asn&key=64496":                                  "max-age=300",
	} {
		resp, err := http.Get(srv.URL + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, want) {
			t.Errorf("%s: Cache-Control %q, want %s", q, cc, want)
		}
	}
	for i, want := range []string{"miss", "hit"} {
		resp, err := http.Get(srv.URL + "/api/v1/hourly?key=64496&scope=asn")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("X-Cache") != want {
			t.Errorf("ask %d: X-Cache %q, want %s", i+1, resp.Header.Get("X-Cache"), want)
		}
	}

	// Datasets: listed with URLs and checksums, served with Range and ETag.
	var ds struct {
		Datasets []struct {
			Day   string `json:"day"`
			Rows  int    `json:"rows"`
			Files []struct {
				URL    string `json:"url"`
				Bytes  int64  `json:"bytes"`
				SHA256 string `json:"sha256"`
			} `json:"files"`
		} `json:"datasets"`
	}
	webtest.GetJSON(t, srv.URL+publicapi.DatasetsPath, &ds)
	if len(ds.Datasets) != 1 || ds.Datasets[0].Day != yesterday || ds.Datasets[0].Rows != len(want) || len(ds.Datasets[0].Files) != 2 {
		t.Fatalf("datasets: %+v", ds)
	}
	f := ds.Datasets[0].Files[0]
	req, _ := http.NewRequest(http.MethodGet, srv.URL+f.URL, nil)
	req.Header.Set("Range", "bytes=0-3")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	head, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(head) != "PAR1" || resp.Header.Get("ETag") != `"sha256-`+f.SHA256+`"` ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 0-3/%d", f.Bytes) {
		t.Fatalf("Range: %d %q ETag %s Content-Range %s", resp.StatusCode, head, resp.Header.Get("ETag"), resp.Header.Get("Content-Range"))
	}
	req, _ = http.NewRequest(http.MethodGet, srv.URL+f.URL, nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	if resp, err = http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	for _, p := range []string{"/datasets/../go.mod", "/datasets/%2e%2e/%2e%2e/etc/passwd", "/datasets/speedtest/", "/datasets/nothing.parquet"} {
		if code, _ := webtest.Get(t, srv.URL+p); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, code)
		}
	}
	// A temporary file of a running export is not served.
	tmp := filepath.Join(dir, ".speedtest-x.parquet.tmp-1")
	if err := os.WriteFile(tmp, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _ := webtest.Get(t, srv.URL+"/datasets/.speedtest-x.parquet.tmp-1"); code != 404 {
		t.Errorf("temporary file served: %d", code)
	}
}

// TestVerdicts: BitTorrent tests of an ISP, through the analytics, give the
// same counts in /api/v1/verdicts and in the ISP page's table, with the
// Wilson interval around the share.
func TestVerdicts(t *testing.T) {
	_, conn := localchtest.NewDatabase(t)
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -1)
	seed(t, conn, day, 100, testASN) // the page needs speedtests too
	rng := rand.New(rand.NewPCG(3, 4))
	want := map[string]int{}
	var recs []*schemas.Record
	for i := 0; i < 40; i++ {
		outcome := []string{schemas.OutcomeDifferentiation, schemas.OutcomeDifferentiation, schemas.OutcomeNone, schemas.OutcomeInconclusive}[i%4]
		r := schemastest.BitTorrent(rng, day.Add(time.Duration(i)*time.Minute), "198.51.100.9", 20, outcome)
		r.Synthetic = false
		want[outcome]++
		recs = append(recs, r)
	}
	localchtest.InsertRecords(t, conn, recs, func(r *schemas.Record) schemas.Annotation {
		return schemas.Annotation{Verified: true, ServerKey: "test", ASN: testASN, Org: "Example ISP", Country: "IT", Prefix: "198.51.100.0/24", DB: "test-db", IngestedAt: r.StartTime.Add(time.Minute)}
	})
	if err := (&analytics.Job{Conn: conn}).RunRange(context.Background(), day, day, nil); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(publish.New(publish.Config{Conn: conn, IPDB: collectortest.IPDB(t), Rate: 1000, Burst: 1000}).Handler())
	defer srv.Close()
	var v publish.Verdicts
	webtest.GetJSON(t, fmt.Sprintf("%s/api/v1/verdicts?asn=%d", srv.URL, testASN), &v)
	var any *publish.VerdictSummary
	for i := range v.Verdicts {
		if v.Verdicts[i].Direction == "any" {
			any = &v.Verdicts[i]
		}
	}
	if any == nil || any.Tests != 40 || int(any.Differentiation) != want[schemas.OutcomeDifferentiation] || int(any.None) != want[schemas.OutcomeNone] ||
		int(any.Inconclusive) != want[schemas.OutcomeInconclusive] || any.ShareLo > any.Share || any.Share > any.ShareHi || math.Abs(any.Share-2.0/3) > 1e-9 {
		t.Fatalf("verdicts %+v", v)
	}
	// One agent per test here: 30 conclusive votes, 20 for
	// differentiation: far above chance, the day is flagged.
	if any.AgentVotes != 30 || any.AgentsDifferentiation != 20 || any.Days != 1 || any.DaysFlagged != 1 || any.MinQ > 1e-6 || any.AgentShareLo > any.AgentShare {
		t.Fatalf("agents' votes %+v", any)
	}
	page := string(webtest.GetOK(t, fmt.Sprintf("%s/isp/%d", srv.URL, testASN)))
	if !strings.Contains(page, "<th scope=\"row\">either (the test's outcome)</th><td>40</td><td>20</td><td>10</td><td>10</td>") || !strings.Contains(page, "<td>20 of 30</td><td>1 of 1</td>") {
		t.Fatal("the ISP page does not show the verdicts")
	}
	if code, _ := webtest.Get(t, srv.URL+"/api/v1/verdicts?asn=0"); code != 400 {
		t.Fatalf("asn=0: %d", code)
	}
}
