package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/proto/publicapi"
	"github.com/neubot/neubot/schemas"
)

// ISPComparison puts the volunteer's results against their provider's, from
// the public API: GET /api/v1/isp.
type ISPComparison struct {
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
	ASN       uint32 `json:"asn,omitempty"`
	Org       string `json:"org,omitempty"`
	Country   string `json:"country,omitempty"`
	Days      int    `json:"days"`
	// The provider's download distribution over the period: tests, and
	// the test-weighted means of its daily percentiles.
	ISPTests uint64  `json:"isp_tests"`
	P10      float64 `json:"p10"`
	P25      float64 `json:"p25"`
	P50      float64 `json:"p50"`
	P75      float64 `json:"p75"`
	P90      float64 `json:"p90"`
	// The volunteer's own download median over the same period.
	MyTests  int     `json:"my_tests"`
	MyMedian float64 `json:"my_median"`
}

const comparisonDays = 30

func (a *Agent) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	_, err = httpx.FetchJSON(a.http, req, 1<<20, v)
	return err
}

// CompareISP asks the public API which provider the agent is on and that
// provider's download distribution, and sets the volunteer's own beside it.
func (a *Agent) CompareISP(ctx context.Context) ISPComparison {
	c := ISPComparison{Days: comparisonDays}
	base := strings.TrimRight(a.opts.PublicAPIURL, "/")
	if base == "" {
		c.Reason = "no public API is configured"
		return c
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var who publicapi.Whoami
	if err := a.getJSON(ctx, base+publicapi.WhoamiPath, &who); err != nil {
		c.Reason = "the public API is not reachable now"
		return c
	}
	c.ASN, c.Org, c.Country = who.ASN, who.Org, who.Country
	if who.ASN == 0 {
		c.Reason = "your provider is not known: the public API sees a private or local address"
		return c
	}
	var dist struct {
		Days []struct {
			Tests                   uint64
			P10, P25, P50, P75, P90 float64
		} `json:"days"`
	}
	q := url.Values{"scope": {"asn"}, "key": {fmt.Sprint(who.ASN)}, "metric": {"download_mbps"}, "days": {fmt.Sprint(comparisonDays)}}
	if err := a.getJSON(ctx, base+publicapi.DistributionsPath+"?"+q.Encode(), &dist); err != nil {
		c.Reason = "the public API is not reachable now"
		return c
	}
	for _, d := range dist.Days {
		w := float64(d.Tests)
		c.ISPTests += d.Tests
		c.P10, c.P25, c.P50, c.P75, c.P90 = c.P10+w*d.P10, c.P25+w*d.P25, c.P50+w*d.P50, c.P75+w*d.P75, c.P90+w*d.P90
	}
	if c.ISPTests == 0 {
		c.Reason = "no published tests of your provider in the last 30 days yet"
		return c
	}
	n := float64(c.ISPTests)
	c.P10, c.P25, c.P50, c.P75, c.P90 = c.P10/n, c.P25/n, c.P50/n, c.P75/n, c.P90/n
	rs, err := a.store.Results(ctx, 1000)
	if err != nil {
		c.Reason = "cannot read your results"
		return c
	}
	var mine []float64
	since := time.Now().AddDate(0, 0, -comparisonDays)
	for _, r := range rs {
		// Like the provider's figures: the speedtest against Neubot's
		// servers only (a peer's line may be the bottleneck).
		if r.StartTime.After(since) && r.Test == schemas.SpeedtestName && !r.Peer {
			mine = append(mine, r.DownloadMbps)
		}
	}
	c.MyTests, c.MyMedian = len(mine), schemas.Median(mine)
	c.Available = true
	return c
}

func (a *Agent) apiISP(w http.ResponseWriter, r *http.Request) {
	httpx.WriteJSON(w, http.StatusOK, a.CompareISP(r.Context()))
}
