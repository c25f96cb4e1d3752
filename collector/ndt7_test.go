package collector_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

// TestIngestNDT7 sends both copies of one ndt7 measurement (the client's
// own, then the server's merged one) and a browser's record: each test
// name goes to its own table, the copies collapse into the server's, and
// the browser's address is annotated like any other.
func TestIngestNDT7(t *testing.T) {
	c := collectortest.Start(t)
	rng := rand.New(rand.NewPCG(4, 4))
	merged := schemastest.NDT7(rng, schemas.NDT7Name, time.Now().Add(-time.Hour), "151.5.10.20", 40)
	// The client's copy: another download figure, no server view, no
	// server fields; the merged copy must win whatever the order.
	keys := *merged.TestKeys.(*schemas.NDT7)
	keys.ServerView = nil
	keys.Download = &schemas.NDT7Subtest{GoodputMbps: 1, MeasuredAt: "client", Samples: []schemas.ThroughputSample{}}
	own := schemas.Record{Envelope: merged.Envelope, TestKeys: &keys}
	own.Server = schemas.Server{}
	browser := schemastest.NDT7(rng, schemas.NDT7BrowserName, time.Now().Add(-time.Hour), "151.5.10.21", 5)

	body := append(schemastest.Line(&own), schemastest.Signed(browser, merged)...)
	if code, resp := post(t, c.Server.URL, body); code != http.StatusAccepted {
		t.Fatalf("status %d: %+v", code, resp)
	}
	c.WaitLoaded(t, 20*time.Second)
	for _, tc := range []struct {
		table, uid string
		mbps       float64
	}{{"ndt7", merged.MeasurementUID, merged.TestKeys.(*schemas.NDT7).Download.GoodputMbps}, {"ndt7_browser", browser.MeasurementUID, browser.TestKeys.(*schemas.NDT7).Download.GoodputMbps}} {
		var (
			n         uint64
			authority uint8
			mbps      float64
			prefix    string
			asn       uint32
		)
		row := c.Conn.QueryRow(context.Background(), "SELECT count(), any(authority), any(download_goodput_mbps), any(client_prefix), any(client_asn) FROM "+tc.table+" FINAL WHERE measurement_uid = toUUID(?)", tc.uid)
		if err := row.Scan(&n, &authority, &mbps, &prefix, &asn); err != nil {
			t.Fatal(err)
		}
		if n != 1 || authority != 1 || mbps != tc.mbps || prefix == "" || asn == 0 {
			t.Errorf("%s: %d rows, authority %d, download %.3f (want %.3f), prefix %q, ASN %d", tc.table, n, authority, mbps, tc.mbps, prefix, asn)
		}
	}
}
