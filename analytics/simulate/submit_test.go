package simulate

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/proto/ingest"
	"github.com/neubot/neubot/schemas"
)

// TestSimulateSubmit submits a small fleet through the real collector into
// a real ClickHouse, twice: every record is stored once, synthetic, with
// the ASN of its agent's ISP.
func TestSimulateSubmit(t *testing.T) {
	c := collectortest.Start(t)
	f := newFleet(t, Config{Agents: 50, Days: 2, TestsPerAgentDay: 12, Seed: 5})
	total := f.Count()
	var calls, last int
	begin := time.Now()
	n, err := f.Submit(context.Background(), c.Server.URL, 100, func(done, tot int) {
		calls++
		if done <= last || tot != total {
			t.Errorf("progress(%d, %d) after %d", done, tot, last)
		}
		last = done
	})
	if err != nil || n != total {
		t.Fatalf("Submit = %d, %v; want %d records acknowledged", n, err, total)
	}
	if want := (total + 99) / 100; calls != want || last != total {
		t.Errorf("progress called %d times, last with %d; want %d times, last with %d", calls, last, want, total)
	}
	t.Logf("%d records submitted in %v", n, time.Since(begin).Round(time.Millisecond))
	c.WaitLoaded(t, time.Minute)
	// Again: the collector acknowledges them, ClickHouse keeps each once.
	if n2, err := f.Submit(context.Background(), c.Server.URL, 0, nil); err != nil || n2 != total {
		t.Fatalf("second Submit = %d, %v", n2, err)
	}
	c.WaitLoaded(t, time.Minute)

	ctx := context.Background()
	var count uint64
	if err := c.Conn.QueryRow(ctx, "SELECT count() FROM speedtest FINAL WHERE synthetic = 1").Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != uint64(n) {
		t.Errorf("%d synthetic rows, want %d", count, n)
	}
	rows, err := c.Conn.Query(ctx, "SELECT toString(agent_id), any(client_asn), uniqExact(client_asn), any(client_country), count() "+
		"FROM speedtest FINAL GROUP BY agent_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	agents := map[string]Agent{}
	for _, a := range f.Agents() {
		agents[a.ID] = a
	}
	seen := 0
	for rows.Next() {
		var id, country string
		var asn uint32
		var asns, tests uint64
		if err := rows.Scan(&id, &asn, &asns, &country, &tests); err != nil {
			t.Fatal(err)
		}
		a, ok := agents[id]
		switch {
		case !ok:
			t.Errorf("unknown agent %s in ClickHouse", id)
		case asns != 1 || asn != a.ISP.ASN:
			t.Errorf("agent %s of AS%d: client_asn %d (%d distinct)", id, a.ISP.ASN, asn, asns)
		case country != a.ISP.Country:
			t.Errorf("agent %s of AS%d: client_country %q, want %q", id, a.ISP.ASN, country, a.ISP.Country)
		}
		seen++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rows of %d agents in ClickHouse, each with its ISP's ASN and country", count, seen)

	// What analytics will compute, against the truth and the records.
	truth := f.Truth()
	downs := map[uint32][]float64{}
	for _, a := range f.Agents() {
		downs[a.ISP.ASN] = nil
	}
	asnOf := map[string]uint32{}
	for id, a := range agents {
		asnOf[id] = a.ISP.ASN
	}
	f.Records(func(r *schemas.Record) error {
		asn := asnOf[r.AgentID]
		downs[asn] = append(downs[asn], r.TestKeys.(*schemas.Speedtest).Download.GoodputMbps)
		return nil
	})
	mrows, err := c.Conn.Query(ctx, "SELECT client_asn, count(), quantileExact(0.5)(download_mbps), "+
		"countIf(download_mbps < 20 AND rtt_median_ms < 100) FROM speedtest FINAL GROUP BY client_asn ORDER BY client_asn")
	if err != nil {
		t.Fatal(err)
	}
	defer mrows.Close()
	for mrows.Next() {
		var asn uint32
		var tests, good uint64
		var med float64
		if err := mrows.Scan(&asn, &tests, &med, &good); err != nil {
			t.Fatal(err)
		}
		it := truth.ISP(asn)
		if it == nil || uint64(it.Tests) != tests || uint64(it.GoodsetTests) != good {
			t.Errorf("AS%d: %d tests, %d in the goodset; truth %+v", asn, tests, good, it)
			continue
		}
		// quantileExact(0.5) is the upper middle value: the median for an
		// odd count.
		d := slices.Clone(downs[asn])
		slices.Sort(d)
		if upper := d[len(d)/2]; med != upper || (len(d)%2 == 1 && med != it.MedianDownloadMbps) {
			t.Errorf("AS%d: quantileExact(0.5) %v, upper middle value %v, truth's median %v", asn, med, upper, it.MedianDownloadMbps)
		}
		t.Logf("AS%-6d %4d tests: quantileExact(0.5) %8.3f, truth's median %8.3f; goodset %d", asn, tests, med, it.MedianDownloadMbps, good)
	}
}

// TestSimulateSubmitRetries checks that Submit posts a body again after a
// broken connection and a 503, and counts each record once.
func TestSimulateSubmitRetries(t *testing.T) {
	f := newFleet(t, Config{Agents: 5, Days: 1, TestsPerAgentDay: 12, Seed: 9})
	var mu sync.Mutex
	var attempts int
	uids := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		attempts++
		n := attempts
		mu.Unlock()
		switch n {
		case 1: // a broken connection
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"error":"spool full"}`)
			return
		}
		if r.URL.Path != ingest.Path || r.Header.Get("Content-Type") != "application/x-ndjson" || r.Header.Get("Content-Encoding") != "gzip" {
			http.Error(w, "bad request line or headers", http.StatusUnsupportedMediaType)
			return
		}
		sc := gzipLines(w, r)
		if sc == nil {
			return
		}
		k := 0
		for sc.Scan() {
			rec, err := schemas.DecodeRecord(sc.Bytes(), time.Now())
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			mu.Lock()
			uids[rec.MeasurementUID]++
			mu.Unlock()
			k++
		}
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(map[string]int{"accepted": k})
	}))
	defer srv.Close()
	n, err := f.Submit(context.Background(), srv.URL, 1000, nil)
	if err != nil || n != f.Count() || len(uids) != n {
		t.Fatalf("Submit = %d, %v; %d records received, want %d", n, err, len(uids), f.Count())
	}
	for uid, k := range uids {
		if k != 1 {
			t.Errorf("%s received %d times", uid, k)
		}
	}
	if attempts != 3 {
		t.Errorf("%d attempts, want 3", attempts)
	}
}

// gzipLines reads the lines of a gzipped request body, or answers 400
// and returns nil.
func gzipLines(w http.ResponseWriter, r *http.Request) *bufio.Scanner {
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, schemas.MaxRecordBytes)
	return sc
}

// TestSimulateSubmitRefused checks that a 400 is an error naming the first
// refused record, and that the accepted ones are counted.
func TestSimulateSubmitRefused(t *testing.T) {
	f := newFleet(t, Config{Agents: 20, Days: 1, TestsPerAgentDay: 12, Seed: 9})
	var uids []string
	f.Records(func(r *schemas.Record) error { uids = append(uids, r.MeasurementUID); return nil })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The body of records 51..100 has its lines 3 and 7 refused; the
		// other lines and bodies are accepted.
		sc := gzipLines(w, r)
		if sc == nil {
			return
		}
		var lines []string
		for sc.Scan() {
			var rec struct {
				UID string `json:"measurement_uid"`
			}
			json.Unmarshal(sc.Bytes(), &rec)
			lines = append(lines, rec.UID)
		}
		if lines[0] == uids[50] {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"accepted":%d,"rejected_count":2,"rejected":[{"line":3,"field":"start_time","reason":"is in the future"},{"line":7,"field":"x","reason":"y"}]}`, len(lines)-2)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"accepted":%d,"rejected_count":0}`, len(lines))
	}))
	defer srv.Close()
	n, err := f.Submit(context.Background(), srv.URL, 50, nil)
	var re *RefusedError
	if !errors.As(err, &re) || re.Record != 53 || re.MeasurementUID != uids[52] || re.Field != "start_time" || re.Refused != 2 {
		t.Fatalf("Submit error %v (%+v), want a RefusedError for record 53 (%s)", err, re, uids[52])
	}
	if n < 48 || n > len(uids)-2 {
		t.Errorf("%d acknowledged, want at least the 48 of the refused body", n)
	}
	t.Log(err)
}
