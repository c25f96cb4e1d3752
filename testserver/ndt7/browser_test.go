package ndt7_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/internal/browsertest"
	spec "github.com/neubot/neubot/proto/ndt7"
	"github.com/neubot/neubot/testserver/service"
	"github.com/neubot/neubot/testserver/service/servicetest"
)

// TestBrowser runs the ndt7 page of a real test server in a real headless
// Chromium: consent, M-Lab's JavaScript client (vendored by scripts/setup)
// for the download and the upload, the record posted to collect, merged
// with the server's view, forwarded to a real collector and loaded into
// ClickHouse as an ndt7-browser row. It saves a screenshot of the result to
// $NEUBOT_ARTEFACTS, or test-artefacts/ at the repository's root.
func TestBrowser(t *testing.T) {
	if _, err := os.Stat("static/vendor/ndt7.js"); err != nil {
		t.Fatalf("the ndt7 JavaScript client is not installed (%v): run scripts/setup", err)
	}
	col := collectortest.Start(t)
	_, base := servicetest.Start(t, service.Config{CollectorURL: col.Server.URL, NDT7Duration: time.Second})
	// Anything the page logs as an error (a script exception, a resource
	// that failed, a Content-Security-Policy violation) fails the test.
	b := browsertest.Start(t, 60*time.Second)
	step := b.Step

	var consent string
	step("open the page", chromedp.Navigate(base+spec.PagePath),
		chromedp.WaitVisible("#consent-form", chromedp.ByQuery),
		chromedp.Text("#consent", &consent, chromedp.ByQuery))
	if !strings.Contains(consent, "never published") {
		t.Errorf("the consent text does not say the address is never published: %q", consent)
	}
	var uid, download, upload string
	step("consent and run the test",
		chromedp.Click("#informed", chromedp.ByQuery),
		chromedp.Click("#start", chromedp.ByQuery),
		chromedp.Poll(`document.body.dataset.state === "done" || (!document.getElementById("error").hidden && document.getElementById("error").textContent)`,
			nil, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(40*time.Second)),
		chromedp.Evaluate(`document.getElementById("saved").dataset.uid || ""`, &uid),
		chromedp.Text("#download", &download, chromedp.ByQuery),
		chromedp.Text("#upload", &upload, chromedp.ByQuery))
	if uid == "" {
		var msg string
		_ = chromedp.Run(b.Ctx, chromedp.Text("#error", &msg, chromedp.ByQuery))
		t.Fatalf("the page shows no saved result: %q", msg)
	}
	t.Logf("browser result: download %s, upload %s, measurement %s", download, upload, uid)

	b.Screenshot("ndt7-browser-result.png")
	if p := b.Problems(); len(p) > 0 {
		t.Errorf("the page logged problems: %q", p)
	}

	// The record reaches ClickHouse through the test server's forwarder
	// and the collector, as an authoritative ndt7-browser row.
	var (
		n                                 uint64
		software, measuredAt              string
		authority, serverView, svUpload   uint8
		dlMbps, ulMbps, svDlMbps, minRTT  float64
		dlSamples                         []float64
		informed, canPublish, srvTCPShown uint8
	)
	deadline := time.Now().Add(20 * time.Second)
	for {
		row := col.Conn.QueryRow(context.Background(), `SELECT count(), any(agent_software), any(upload_measured_at), any(authority),
			any(server_view), any(sv_upload_present), any(download_goodput_mbps), any(upload_goodput_mbps), any(sv_download_goodput_mbps),
			any(sv_download_tcp_min_rtt_ms), any(download_samples_t_s), any(consent_informed), any(consent_can_publish), any(download_srv_tcp_present)
			FROM ndt7_browser FINAL WHERE measurement_uid = toUUID(?)`, uid)
		if err := row.Scan(&n, &software, &measuredAt, &authority, &serverView, &svUpload, &dlMbps, &ulMbps, &svDlMbps,
			&minRTT, &dlSamples, &informed, &canPublish, &srvTCPShown); err != nil {
			t.Fatal(err)
		}
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n != 1 {
		t.Fatalf("%d rows of measurement %s in ndt7_browser after 20 s; want 1", n, uid)
	}
	if software != "m-lab/ndt7" || authority != 1 || serverView != 1 || svUpload != 1 || measuredAt != "server" ||
		informed != 1 || canPublish != 1 || srvTCPShown != 1 {
		t.Errorf("row: software %q authority %d server_view %d sv_upload %d upload measured at %q consent %d/%d in-band TCP_INFO %d",
			software, authority, serverView, svUpload, measuredAt, informed, canPublish, srvTCPShown)
	}
	if dlMbps <= 0 || ulMbps <= 0 || svDlMbps <= 0 || minRTT <= 0 || len(dlSamples) < 2 {
		t.Errorf("row numbers: download %.1f upload %.1f server download %.1f min RTT %.3f ms, %d samples", dlMbps, ulMbps, svDlMbps, minRTT, len(dlSamples))
	}
	if !strings.Contains(download, fmt.Sprintf("%.2f", dlMbps)) {
		t.Errorf("the page shows download %q, the row says %.2f", download, dlMbps)
	}
}
