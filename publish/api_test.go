package publish_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/neubot/neubot/agent"
	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/speedtest"
	"github.com/neubot/neubot/agent/speedtest/speedtesttest"
	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/analytics/simulate"
	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/proto/publicapi"
	"github.com/neubot/neubot/publish"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver/service"
	"github.com/neubot/neubot/testserver/service/servicetest"
)

func TestMain(m *testing.M) { os.Exit(localchtest.MainNoLeaks(m)) }

// viaProxy adds X-Forwarded-For, as a proxy in front of the API would.
type viaProxy struct{ addr string }

func (v viaProxy) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", v.addr)
	return http.DefaultTransport.RoundTrip(r)
}

// TestDistributionsAndComparison: real data (a simulated fleet, through the
// collector and the analytics job) served by the API; the agent finds its
// provider and puts its own results against the provider's.
func TestDistributionsAndComparison(t *testing.T) {
	col := collectortest.Start(t)
	fleet, err := simulate.NewFleet(simulate.Config{Agents: 200, Days: 2, TestsPerAgentDay: 8, Seed: 7, IPDB: collectortest.IPDB(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.Submit(context.Background(), col.Server.URL, 1000, nil); err != nil {
		t.Fatal(err)
	}
	col.WaitLoaded(t, time.Minute)
	if _, err := (&analytics.Job{Conn: col.Conn}).RunPending(context.Background()); err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(publish.New(publish.Config{Conn: col.Conn, IPDB: collectortest.IPDB(t), TrustProxy: true}).Handler())
	defer api.Close()

	a0 := fleet.Agents()[0]
	get := func(path string, v any) int {
		req, _ := http.NewRequest(http.MethodGet, api.URL+path, nil)
		req.Header.Set("X-Forwarded-For", a0.Addr.String())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if v != nil {
			json.NewDecoder(resp.Body).Decode(v)
		}
		return resp.StatusCode
	}
	var who publicapi.Whoami
	if code := get(publicapi.WhoamiPath, &who); code != 200 || who.ASN != a0.ISP.ASN {
		t.Fatalf("whoami: %d %+v; want AS%d", code, who, a0.ISP.ASN)
	}
	var d publish.Distribution
	code := get(fmt.Sprintf("/api/v1/distributions?scope=asn&key=%d&synthetic=1", a0.ISP.ASN), &d)
	if code != 200 || len(d.Days) == 0 || d.Days[0].Tests == 0 || d.Days[0].P50 <= 0 {
		t.Fatalf("distributions: %d %+v", code, d)
	}
	var isps struct {
		ISPs []publish.ISP `json:"isps"`
	}
	org := strings.Fields(d.Org)[0]
	if code := get("/api/v1/isps?synthetic=1&q="+url.QueryEscape(strings.ToLower(org)), &isps); code != 200 || len(isps.ISPs) == 0 || isps.ISPs[0].ASN != fmt.Sprint(a0.ISP.ASN) {
		t.Fatalf("isps?q=%s: %d %+v; want AS%d first", org, code, isps, a0.ISP.ASN)
	}
	if code := get(fmt.Sprintf("/api/v1/isps?synthetic=1&q=AS%d", a0.ISP.ASN), &isps); code != 200 || len(isps.ISPs) != 1 {
		t.Fatalf("isps?q=AS%d: %d %+v", a0.ISP.ASN, code, isps)
	}
	if code := get("/api/v1/isps?synthetic=1", &isps); code != 200 || len(isps.ISPs) < 5 {
		t.Fatalf("isps: %d, %d ISPs", code, len(isps.ISPs))
	}
	if code := get("/api/v1/isps?limit=0", nil); code != 400 {
		t.Fatalf("isps?limit=0: %d", code)
	}
	for _, bad := range []string{"scope=planet", "scope=asn&key=abc", "scope=asn", "scope=all&metric=colour", "scope=all&days=0", "scope=all&days=9999", "scope=all&synthetic=maybe"} {
		if code := get("/api/v1/distributions?"+bad, nil); code != 400 {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}

	// The published data are synthetic here; the comparison reads real
	// (synthetic=0) data, so publish one real day for the agent's ISP by
	// copying the synthetic rows as real ones.
	if err := col.Conn.Exec(context.Background(), `INSERT INTO analytics_distributions
		(day, test, goodset, goodset_version, goodset_def, scope, key, org, country, synthetic, metric, weighting, tests_total, tests, agents, agents_total,
		mean, p10, p25, p50, p50_ci_low, p50_ci_high, p75, p90, hist, modes)
		SELECT day, test, goodset, goodset_version, goodset_def, scope, key, org, country, toUInt8(0), metric, weighting, tests_total, tests, agents, agents_total,
		mean, p10, p25, p50, p50_ci_low, p50_ci_high, p75, p90, hist, modes FROM analytics_distributions WHERE synthetic = 1`); err != nil {
		t.Fatal(err)
	}
	_, tsURL := servicetest.Start(t, service.Config{ID: "ts"})
	ag, err := agent.New(agent.Options{StateDir: t.TempDir(), ServerURL: tsURL, PublicAPIURL: api.URL,
		HTTPClient: &http.Client{Transport: viaProxy{a0.Addr.String()}},
		Tests:      map[string]plugin.Measurer{schemas.SpeedtestName: speedtest.NewMeasurer(speedtesttest.Quick)}})
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Close()
	ag.SetConsent(true, true, true)
	done := make(chan error, 1)
	if err := ag.StartTest(context.Background(), done); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c := ag.CompareISP(context.Background())
	if !c.Available || c.ASN != a0.ISP.ASN || c.ISPTests == 0 || c.P25 > c.P50 || c.P50 > c.P75 || c.MyTests != 1 || c.MyMedian <= 0 {
		t.Fatalf("comparison %+v", c)
	}
	t.Logf("AS%d %s: %d tests, p25 %.1f p50 %.1f p75 %.1f; mine %.0f over %d", c.ASN, c.Org, c.ISPTests, c.P25, c.P50, c.P75, c.MyMedian, c.MyTests)
	// From loopback, without the proxy: no known provider, said plainly.
	api2 := httptest.NewServer(publish.New(publish.Config{Conn: col.Conn, IPDB: collectortest.IPDB(t)}).Handler())
	defer api2.Close()
	ag2, err := agent.New(agent.Options{StateDir: t.TempDir(), PublicAPIURL: api2.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer ag2.Close()
	if c := ag2.CompareISP(context.Background()); c.Available || c.Reason == "" {
		t.Fatalf("loopback comparison %+v", c)
	}
}

// TestRateLimit: an address over its rate gets 429 with Retry-After; others
// do not.
func TestRateLimit(t *testing.T) {
	srv := httptest.NewServer(publish.New(publish.Config{IPDB: collectortest.IPDB(t), TrustProxy: true, Rate: 1, Burst: 3}).Handler())
	defer srv.Close()
	do := func(addr string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+publicapi.WhoamiPath, nil)
		req.Header.Set("X-Forwarded-For", addr)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for i := 0; i < 3; i++ {
		if r := do("8.8.8.8"); r.StatusCode != 200 {
			t.Fatalf("request %d: %d", i+1, r.StatusCode)
		}
	}
	r := do("8.8.8.8")
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("4th request: %d, Retry-After %q; want 429 with Retry-After", r.StatusCode, r.Header.Get("Retry-After"))
	}
	if r := do("1.1.1.1"); r.StatusCode != 200 {
		t.Fatalf("another address: %d", r.StatusCode)
	}
}
