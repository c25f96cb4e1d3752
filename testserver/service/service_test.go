package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/plugin/plugintest"
	"github.com/neubot/neubot/agent/speedtest"
	"github.com/neubot/neubot/agent/speedtest/speedtesttest"
	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/internal/webtest"
	"github.com/neubot/neubot/proto/ingest"
	"github.com/neubot/neubot/proto/negotiate"
	spec "github.com/neubot/neubot/proto/speedtest"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
	"github.com/neubot/neubot/testserver"
	"github.com/neubot/neubot/testserver/service"
	"github.com/neubot/neubot/testserver/service/servicetest"
)

func TestMain(m *testing.M) { os.Exit(localchtest.MainNoLeaks(m)) }

var env = plugintest.Env

// queueCfg is speedtesttest.Quick with room for the phases under load: ten
// agents on a loaded machine may see a phase's samples come late, and a
// phase that ends before its samples reach MaxPhase fails ("too little to
// measure").
// On an idle machine the phases still end on stability, well before it.
var queueCfg = func() speedtest.Config {
	c := speedtesttest.Quick
	c.MaxPhase, c.V2.MaxPhase, c.V2.MaxPhaseLongRTT = 2*time.Second, 2*time.Second, 2*time.Second
	return c
}()

// TestQueue: with 2 tests allowed at once, 10 agents negotiating together
// all complete, and no more than 2 are ever testing at once.
func TestQueue(t *testing.T) {
	svc, url := servicetest.Start(t, service.Config{Negotiator: testserver.NegotiatorConfig{Capacity: 2}})
	stop := make(chan struct{})
	var maxActive atomic.Int64
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			a, _, _ := svc.Negotiator().Load()
			if int64(a) > maxActive.Load() {
				maxActive.Store(int64(a))
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	var wg sync.WaitGroup
	var done atomic.Int64
	var queued atomic.Int64
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := env(url)
			e.Progress = func(p plugin.Progress) {
				if p.QueuePos > 0 {
					queued.Add(1)
				}
			}
			if _, err := speedtest.NewMeasurer(queueCfg).Run(context.Background(), e); err != nil {
				errs <- err
				return
			}
			done.Add(1)
		}()
	}
	wg.Wait()
	close(stop)
	watch.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if done.Load() != 10 {
		t.Fatalf("%d of 10 agents completed", done.Load())
	}
	if maxActive.Load() != 2 {
		t.Fatalf("at most %d tests ran at once; want exactly 2 (capacity)", maxActive.Load())
	}
	if queued.Load() == 0 {
		t.Fatal("no agent ever waited in the queue")
	}
	if a, q, _ := svc.Negotiator().Load(); a != 0 || q != 0 {
		t.Fatalf("after the tests: %d active, %d queued", a, q)
	}
}

func negotiateToken(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Post(url+spec.NegotiatePath, "application/json", bytes.NewReader([]byte(`{"measurement_uid":"`+uuid.NewString()+`"}`)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var nr negotiate.Response
	json.NewDecoder(resp.Body).Decode(&nr)
	if resp.StatusCode != 200 || !nr.Unchoked || nr.Token == "" {
		t.Fatalf("negotiate: %d %+v", resp.StatusCode, nr)
	}
	return nr.Token
}

func status(t *testing.T, method, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Range", "bytes=0-1023")
	code, _ := webtest.Do(t, req)
	return code
}

// TestTokens: every test endpoint refuses a missing, unknown or expired
// token; a live one is accepted.
func TestTokens(t *testing.T) {
	_, url := servicetest.Start(t, service.Config{Negotiator: testserver.NegotiatorConfig{Capacity: 1, TestTimeout: 300 * time.Millisecond}})
	for _, ep := range []struct{ method, path string }{
		{"HEAD", spec.LatencyPath}, {"GET", spec.DownloadPath}, {"POST", spec.UploadPath}, {"POST", spec.CollectPath},
	} {
		if c := status(t, ep.method, url+ep.path, ""); c != http.StatusUnauthorized {
			t.Errorf("%s %s without token: %d, want 401", ep.method, ep.path, c)
		}
		if c := status(t, ep.method, url+ep.path, "0123456789abcdef0123456789abcdef"); c != http.StatusForbidden {
			t.Errorf("%s %s with an unknown token: %d, want 403", ep.method, ep.path, c)
		}
	}
	tok := negotiateToken(t, url)
	if c := status(t, "GET", url+spec.DownloadPath, tok); c != http.StatusPartialContent {
		t.Fatalf("live token: %d, want 206", c)
	}
	time.Sleep(500 * time.Millisecond) // past the per-test timer
	if c := status(t, "GET", url+spec.DownloadPath, tok); c != http.StatusForbidden {
		t.Fatalf("expired token: %d, want 403", c)
	}
	// The revoked test freed its slot: the next agent starts at once.
	negotiateToken(t, url)
}

// TestRangeAndRateLimit: bad ranges are refused; negotiation is limited
// per client address with 429 and Retry-After.
func TestRangeAndRateLimit(t *testing.T) {
	_, url := servicetest.Start(t, service.Config{Negotiator: testserver.NegotiatorConfig{Capacity: 50, Rate: 0.1, Burst: 3}})
	tok := negotiateToken(t, url)
	for _, rg := range []string{"", "bytes=5-1", "bytes=0-", "bytes=0-99999999999", "items=0-1", "bytes=0-1,3-4"} {
		req, _ := http.NewRequest("GET", url+spec.DownloadPath, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Range", rg)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
			t.Errorf("Range %q: %d, want 416", rg, resp.StatusCode)
		}
	}
	negotiateToken(t, url)
	negotiateToken(t, url)
	resp, err := http.Post(url+spec.NegotiatePath, "application/json", bytes.NewReader([]byte(`{}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("4th negotiate within the burst of 3: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// TestEndToEnd: agent -> test server -> collector -> ClickHouse gives
// exactly one record per test, with the server's view merged in, even when
// the agent also submits its own copy.
func TestEndToEnd(t *testing.T) {
	col := collectortest.Start(t)
	_, url := servicetest.Start(t, service.Config{CollectorURL: col.Server.URL})
	var uids []string
	for i := 0; i < 3; i++ {
		rec, err := speedtest.NewMeasurer(speedtesttest.Quick).Run(context.Background(), env(url))
		if err != nil {
			t.Fatal(err)
		}
		k := rec.TestKeys.(*schemas.Speedtest)
		if k.ServerView == nil || k.ServerView.BytesSent == 0 || k.ServerView.BytesReceived == 0 || rec.Server.ClientAddress != "127.0.0.1" {
			t.Fatalf("the server's record lacks its view: %+v, server %+v", k.ServerView, rec.Server)
		}
		if k.ServerView.TCPRTTMS == nil {
			t.Fatal("no TCP_INFO round trip on Linux")
		}
		if k.Download.GoodputMbps <= 0 || k.Upload.GoodputMbps <= 0 || len(k.RTTMS) != 3 || len(k.ConnectMS) < 2 {
			t.Fatalf("implausible record: %+v", k)
		}
		uids = append(uids, rec.MeasurementUID)
		// The agent's own copy, as it would submit it.
		code := postRecord(t, col.Server.URL, rec)
		if code != 202 {
			t.Fatalf("agent copy: %d", code)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n uint64
		col.Conn.QueryRow(context.Background(), "SELECT count() FROM speedtest FINAL WHERE server_view = 1 AND sv_bytes_sent > 0 AND client_prefix = '127.0.0.0/24' AND server_id = 'testserver-1' AND verified = 1 AND authority = 1 AND plausibility = 'ok'").Scan(&n)
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			var flags []string
			rows, _ := col.Conn.Query(context.Background(), "SELECT concat(toString(verified), ' ', plausibility, ' ', toString(download_mbps), ' ', toString(download_bytes), ' ', toString(sv_bytes_sent), ' ', toString(sv_download_duration_s), ' ', toString(upload_mbps), ' ', toString(sv_upload_mbps)) FROM speedtest FINAL")
			for rows != nil && rows.Next() {
				var s string
				rows.Scan(&s)
				flags = append(flags, s)
			}
			t.Fatalf("%d merged records in ClickHouse after 30 s, want 3 verified and plausible: %q", n, flags)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, uid := range uids {
		var n uint64
		col.Conn.QueryRow(context.Background(), "SELECT count() FROM speedtest FINAL WHERE measurement_uid = toUUID(?)", uid).Scan(&n)
		if n != 1 {
			t.Fatalf("measurement %s stored %d times", uid, n)
		}
	}
}

func postRecord(t *testing.T, url string, rec *schemas.Record) int {
	t.Helper()
	resp, err := http.Post(url+ingest.Path, "application/x-ndjson", bytes.NewReader(schemastest.Line(rec)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestForwarderSurvivesCollectorOutage: records collected while the
// collector is down wait in the spool and arrive once it is back.
func TestForwarderSurvivesCollectorOutage(t *testing.T) {
	var up atomic.Bool
	var got, refused atomic.Int64
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			refused.Add(1)
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		got.Add(1)
		w.WriteHeader(http.StatusAccepted)
		w.Write([]byte(`{"accepted":1}`))
	}))
	defer fake.Close()
	svc, url := servicetest.Start(t, service.Config{CollectorURL: fake.URL})
	if _, err := speedtest.NewMeasurer(speedtesttest.Quick).Run(context.Background(), env(url)); err != nil {
		t.Fatal(err)
	}
	// Not a sleep: the forwarder is seen trying twice (a first attempt and a
	// retry) and being refused, and the record is still pending after.
	deadline := time.Now().Add(40 * time.Second)
	for refused.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the forwarder tried %d times in 40 s while the collector was down", refused.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if svc.Forwarder().Pending() != 1 || got.Load() != 0 {
		t.Fatalf("while the collector is down: %d pending, %d delivered", svc.Forwarder().Pending(), got.Load())
	}
	up.Store(true)
	deadline = time.Now().Add(40 * time.Second)
	for svc.Forwarder().Pending() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("record not delivered after the collector came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got.Load() != 1 {
		t.Fatalf("delivered %d times", got.Load())
	}
}
