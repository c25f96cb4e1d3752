package publish_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/collector"
	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/internal/metrics"
	"github.com/neubot/neubot/internal/webtest"
	"github.com/neubot/neubot/proto/ingest"
	"github.com/neubot/neubot/proto/publicapi"
	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/publish"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

// clientFrom is an HTTP client whose connections come from the loopback
// address src (Linux routes all of 127/8 to lo), so that one test has
// several sources.
func clientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 30 * time.Second}
}

func postBody(t *testing.T, c *http.Client, url string, body []byte) (int, string) {
	t.Helper()
	resp, err := c.Post(url+ingest.Path, "application/x-ndjson", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After") + " " + string(b)
}

// TestAttacker plays the attacker of issue #16 against a collector run as
// documented (an allow-list, the ingest limits) and the public outputs fed
// by it: a rogue test server's registration is refused and never handed
// out; forged "authoritative" records naming another client address are
// stored as unverified and appear in no dump, API answer, figure or
// dashboard; a signed record replayed with an altered goodput fails
// verification; a flood from one address gets 429 while other sources go
// on; and no published output holds an address or a clear agent_id.
func TestAttacker(t *testing.T) {
	col := collectortest.New(t, collector.Config{Limits: collector.Limits{AddressRate: 1, AddressBurst: 10}})
	url := col.Server.URL
	ctx := context.Background()

	// 1. Rendezvous poisoning.
	register := func(k *identity.Key, id string) (int, string) {
		body, _ := json.Marshal(rendezvous.ServerRegistration{ID: id, URL: "http://" + id + ".example.org", Tests: []string{schemas.SpeedtestName},
			Load: rendezvous.ServerLoad{Capacity: 1}})
		req, _ := http.NewRequest(http.MethodPost, url+rendezvous.RegisterPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if k != nil {
			k.SignRequest(req, body, time.Now())
		}
		code, b := webtest.Do(t, req)
		return code, string(b)
	}
	rogue := identity.NewKey()
	for _, tc := range []struct {
		key  *identity.Key
		id   string
		code int
	}{{nil, "rogue", 401}, {rogue, "rogue", 403}, {rogue, schemastest.ServerID, 403}, {schemastest.ServerKey, "rogue", 403}} {
		if code, body := register(tc.key, tc.id); code != tc.code {
			t.Fatalf("registration of %s (key %v): %d %s, want %d", tc.id, tc.key != nil, code, body, tc.code)
		}
	}
	if code, body := register(schemastest.ServerKey, schemastest.ServerID); code != 200 {
		t.Fatalf("the enrolled server's registration: %d %s", code, body)
	}
	rq, _ := json.Marshal(rendezvous.RendezvousRequest{AgentID: "a1", Tests: []string{schemas.SpeedtestName}})
	resp, err := http.Post(url+rendezvous.RendezvousPath, "application/json", bytes.NewReader(rq))
	if err != nil {
		t.Fatal(err)
	}
	var rr rendezvous.RendezvousResponse
	json.NewDecoder(resp.Body).Decode(&rr)
	resp.Body.Close()
	if l := rr.Servers[schemas.SpeedtestName]; len(l) != 1 || l[0].ID != schemastest.ServerID {
		t.Fatalf("the rendezvous hands out %+v, want only the enrolled server", l)
	}

	// 2. Records: genuine ones signed by the enrolled server, on ASN 1267.
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -1)
	rng := rand.New(rand.NewPCG(16, 16))
	at := func(i int) time.Time { return day.Add(time.Duration(8+i) * time.Hour) }
	var agents []string
	mk := func(i int, addr string, mbps float64) *schemas.Record {
		r := schemastest.Speedtest(rng, at(i), addr, mbps)
		r.Synthetic = false
		r.TestKeys.(*schemas.Speedtest).Download.GoodputMbps = mbps
		r.Server.Plausibility = "ok"
		agents = append(agents, r.AgentID)
		return r
	}
	var genuine []*schemas.Record
	for i := range 5 {
		genuine = append(genuine, mk(i, fmt.Sprintf("151.5.10.%d", 20+i), 11.25))
	}
	flagged := mk(6, "151.5.10.40", 876.5)
	flagged.Server.Plausibility = "download_mismatch"
	if code, body := postBody(t, http.DefaultClient, url, schemastest.Signed(append(genuine, flagged)...)); code != 202 {
		t.Fatalf("genuine records: %d %s", code, body)
	}
	// Forged: a server view and another ISP's client address, unsigned,
	// or signed by a key nobody enrolled; and a copy of a genuine
	// measurement claiming more.
	var forged []*schemas.Record
	var body []byte
	for i := range 20 {
		r := mk(i%10, fmt.Sprintf("151.5.10.%d", 100+i), 987.654)
		forged = append(forged, r)
		body = append(body, schemastest.Line(r)...)
	}
	copyOf := *genuine[0]
	keys := *genuine[0].TestKeys.(*schemas.Speedtest)
	keys.Download.GoodputMbps = 987.654
	copyOf.TestKeys = &keys
	body = append(body, schemastest.Line(&copyOf)...)
	if code, b := postBody(t, http.DefaultClient, url, body); code != 202 {
		t.Fatalf("forged records: %d %s", code, b)
	}
	byRogue := mk(3, "151.5.10.99", 987.654)
	forged = append(forged, byRogue)
	line, _ := json.Marshal(byRogue)
	signed, _ := rogue.SignRecords([][]byte{line})
	// A signed record replayed with an altered goodput.
	replayed := mk(4, "151.5.10.98", 5)
	forged = append(forged, replayed)
	good := schemastest.Signed(replayed)
	altered := bytes.Replace(good, []byte(`"goodput_mbps":5,`), []byte(`"goodput_mbps":987.654,`), 1)
	if bytes.Equal(good, altered) {
		t.Fatal("the goodput to alter is not in the signed record")
	}
	if code, b := postBody(t, http.DefaultClient, url, append(append(signed[0], '\n'), altered...)); code != 202 {
		t.Fatalf("rogue and altered records: %d %s", code, b)
	}
	col.WaitLoaded(t, time.Minute)

	var verified, unverified uint64
	var forgedASN uint32
	if err := col.Conn.QueryRow(ctx, `SELECT countIf(verified = 1), countIf(verified = 0), maxIf(client_asn, verified = 0) FROM speedtest FINAL`).Scan(&verified, &unverified, &forgedASN); err != nil {
		t.Fatal(err)
	}
	if verified != 6 || unverified != 22 || forgedASN == 1267 {
		t.Fatalf("stored %d verified, %d unverified rows (forged ASN %d); want 6, 22 and never the claimed ISP's", verified, unverified, forgedASN)
	}
	var mbps float64
	if err := col.Conn.QueryRow(ctx, `SELECT download_mbps FROM speedtest FINAL WHERE measurement_uid = toUUID(?)`, genuine[0].MeasurementUID).Scan(&mbps); err != nil || mbps != 11.25 {
		t.Fatalf("the forged copy of a genuine measurement replaced it: %v %v", mbps, err)
	}
	var badSig uint8
	if err := col.Conn.QueryRow(ctx, `SELECT verified FROM speedtest FINAL WHERE measurement_uid = toUUID(?)`, replayed.MeasurementUID).Scan(&badSig); err != nil || badSig != 0 {
		t.Fatalf("the altered replay verified: %v %v", badSig, err)
	}
	if n, _, err := metrics.Scrape(url, `neubot_collector_records_loaded_total{trust="bad_signature"}`); err != nil || n != 2 {
		t.Fatalf("the metrics count %v bad signatures, not 2 (%v)", n, err)
	}

	// 3. A flood from 127.0.0.3: 429 with Retry-After past the burst;
	// 127.0.0.1 and 127.0.0.4 are unaffected.
	flood, limited := clientFrom("127.0.0.3"), 0
	for i := range 30 {
		code, b := postBody(t, flood, url, schemastest.Line(mk(i%20, "192.0.2.1", 1)))
		if code == http.StatusTooManyRequests {
			limited++
			if strings.HasPrefix(b, " ") {
				t.Fatalf("429 without Retry-After: %s", b)
			}
		}
	}
	if limited < 15 {
		t.Fatalf("the flood got %d answers 429 of 30, want at least 15", limited)
	}
	for _, src := range []string{"127.0.0.1", "127.0.0.4"} {
		if code, b := postBody(t, clientFrom(src), url, schemastest.Line(mk(1, "192.0.2.2", 1))); code != 202 {
			t.Fatalf("another source (%s) after the flood: %d %s", src, code, b)
		}
	}
	col.WaitLoaded(t, time.Minute)

	// 4. The public outputs: figures, dumps, API, dashboards.
	if _, err := (&analytics.Job{Conn: col.Conn}).RunPending(ctx); err != nil {
		t.Fatal(err)
	}
	var tests uint64
	if err := col.Conn.QueryRow(ctx, `SELECT tests FROM analytics_distributions WHERE day = toDate(?) AND scope = 'asn' AND key = '1267'
		AND goodset = 'all' AND metric = 'download_mbps' AND synthetic = 0`, day.Format("2006-01-02")).Scan(&tests); err != nil || tests != 5 {
		t.Fatalf("ASN 1267's figure counts %d tests (%v), want the 5 genuine ones: no forged, no flagged", tests, err)
	}
	dir := t.TempDir()
	for _, test := range schemas.Tests() {
		if _, err := publish.ExportDay(ctx, publish.ExportConfig{Conn: col.Conn, Dir: dir, ASNDB: "test-db"}, test, day); err != nil {
			t.Fatal(err)
		}
	}
	dump := readCSV(t, filepath.Join(dir, publish.DayDir(schemas.SpeedtestName, day), "speedtest-"+day.Format("2006-01-02")+".csv.gz"))
	if len(dump) != 7 || strings.Contains(strings.Join(dump[0], ","), "agent_id") || indexOf(dump[0], "agent_pseudonym") < 0 {
		t.Fatalf("the dump has %d lines (want a header and the 6 verified rows) and columns %v", len(dump), dump[0])
	}
	api := httptest.NewServer(publish.New(publish.Config{Conn: col.Conn, IPDB: collectortest.IPDB(t), DatasetsDir: dir, Rate: 1000, Burst: 1000}).Handler())
	defer api.Close()
	ds := day.Format("2006-01-02")
	var outputs []string
	for _, path := range []string{
		publicapi.MeasurementsPath + "?from=" + ds + "&to=" + ds + "&limit=1000",
		publicapi.MeasurementsPath + "?from=" + ds + "&to=" + ds + "&limit=1000&format=csv",
		publicapi.MeasurementsPath + "?from=" + ds + "&to=" + ds + "&test=bittorrent",
		publicapi.MeasurementsPath + "?from=" + ds + "&to=" + ds + "&test=ndt7",
		publicapi.DistributionsPath + "?scope=asn&key=1267&from=" + ds + "&to=" + ds,
		publicapi.DistributionsPath + "?scope=all&from=" + ds + "&to=" + ds,
		publicapi.HistogramPath + "?scope=asn&key=1267&from=" + ds + "&to=" + ds,
		publicapi.HourlyPath + "?scope=asn&key=1267&from=" + ds + "&to=" + ds,
		publicapi.VerdictsPath + "?asn=1267&from=" + ds + "&to=" + ds,
		publicapi.ISPsPath + "?q=1267", publicapi.ISPsPath, publicapi.DatasetsPath, publicapi.WhoamiPath, publicapi.OpenAPIPath,
		"/", "/isp/1267", "/data", "/datasets/index.json",
		"/datasets/speedtest/" + day.Format("2006/01/02") + "/manifest.json",
	} {
		resp, err := http.Get(api.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		if path == publicapi.WhoamiPath {
			continue // the asker's own address, by design
		}
		outputs = append(outputs, path)
		scanOutput(t, path, b, agents)
		for _, r := range forged {
			if bytes.Contains(b, []byte(r.MeasurementUID)) {
				t.Errorf("GET %s holds the forged measurement %s", path, r.MeasurementUID)
			}
		}
		if bytes.Contains(b, []byte("987.654")) {
			t.Errorf("GET %s holds a forged goodput", path)
		}
		if strings.HasPrefix(path, publicapi.MeasurementsPath+"?from="+ds+"&to="+ds+"&limit=1000") {
			for _, r := range append(genuine, flagged) {
				if !bytes.Contains(b, []byte(r.MeasurementUID)) {
					t.Errorf("GET %s lacks the verified measurement %s", path, r.MeasurementUID)
				}
			}
		}
	}
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".gz") {
			b = []byte(strings.Join(flatten(readCSV(t, p)), "\n"))
		}
		if strings.HasSuffix(p, ".parquet") {
			tb := parquetRows(t, p)
			b = []byte(strings.Join(append(tb.names, flatten(tb.rows)...), "\n") + "\n" + string(printableRuns(b, 16)))
		}
		scanOutput(t, p, b, agents)
		if bytes.Contains(b, []byte("987.654")) {
			t.Errorf("%s holds a forged goodput", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d API answers and dashboard pages and the dumps of %s scanned: no forged row, no address, no clear agent_id", len(outputs), ds)
}

// scanOutput fails when b holds an IP address (prefixes aside) or one of
// the clear agent IDs, with or without its dashes.
func scanOutput(t *testing.T, what string, b []byte, agents []string) {
	t.Helper()
	if a := findAddress(b); a != "" {
		t.Errorf("%s holds the address %s", what, a)
	}
	for _, id := range agents {
		if bytes.Contains(b, []byte(id)) || bytes.Contains(b, []byte(strings.ReplaceAll(id, "-", ""))) {
			t.Errorf("%s holds the clear agent_id %s", what, id)
		}
	}
}

func flatten(rows [][]string) []string {
	var out []string
	for _, r := range rows {
		out = append(out, strings.Join(r, ","))
	}
	return out
}
