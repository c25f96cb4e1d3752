package publish_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/internal/browsertest"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/internal/webtest"
	"github.com/neubot/neubot/publish"
	"github.com/neubot/neubot/schemas"
)

const testASN = 64496

// publishedSite seeds real published tests of testASN (and of another AS)
// over the last days, runs the analytics, exports yesterday and serves
// everything as `neubot-server publish` does.
func publishedSite(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	_, conn := localchtest.NewDatabase(t)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	for i := 1; i <= 4; i++ {
		seed(t, conn, today.AddDate(0, 0, -i), 400, testASN)
		seed(t, conn, today.AddDate(0, 0, -i), 150, 64497)
	}
	if err := (&analytics.Job{Conn: conn}).RunRange(context.Background(), today.AddDate(0, 0, -6), today, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	test, _ := schemas.Lookup(schemas.SpeedtestName)
	if _, err := publish.ExportDay(context.Background(), publish.ExportConfig{Conn: conn, Dir: dir, ASNDB: "test-db"}, test, today.AddDate(0, 0, -1)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(publish.New(publish.Config{Conn: conn, IPDB: collectortest.IPDB(t), DatasetsDir: dir, Rate: 1000, Burst: 1000}).Handler())
	t.Cleanup(srv.Close)
	return srv, dir
}

// TestDashboardBrowser: /isp/{asn} in a real headless Chromium: the page
// loads without a script, resource or CSP error, the charts are drawn, the
// CSV download of the daily chart holds the same numbers as the API, the
// PNG button downloads a PNG, the SVG is an SVG; the same numbers are in the
// server-rendered table; the page fits a phone's width. Screenshots of the
// overview and the ISP page, desktop and phone, go to test-artefacts/.
func TestDashboardBrowser(t *testing.T) {
	srv, _ := publishedSite(t)
	b := browsertest.Start(t, 120*time.Second)
	downloads := t.TempDir()
	isp := fmt.Sprintf("%s/isp/%d", srv.URL, testASN)

	b.Step("allow downloads", browser.SetDownloadBehavior(browser.SetDownloadBehaviorBehaviorAllow).WithDownloadPath(downloads))
	var drawn bool
	b.Step("open the ISP page", chromedp.Navigate(isp),
		browsertest.Poll(`!!window.neubotCharts && ["daily", "histogram", "hourly"].every(id => window.neubotCharts[id])`, &drawn))
	// Each chart's canvas has ink: more than a few non-white pixels.
	var inked map[string]int
	b.Step("charts drawn", chromedp.Evaluate(`(() => {
		const out = {};
		for (const [id, u] of Object.entries(window.neubotCharts)) {
			const c = u.ctx.canvas, d = u.ctx.getImageData(0, 0, c.width, c.height).data;
			let n = 0;
			for (let i = 0; i < d.length; i += 4) if (d[i+3] > 0 && (d[i] < 200 || d[i+1] < 200 || d[i+2] < 200)) n++;
			out[id] = n;
		}
		return out;
	})()`, &inked))
	for id, n := range inked {
		if n < 500 {
			t.Errorf("chart %s has %d inked pixels: not drawn", id, n)
		}
	}
	b.Screenshot("publish-isp-desktop.png")

	// The CSV the page links to, fetched by the page, against the API.
	var csvText, csvHref string
	b.Step("fetch the CSV download", chromedp.Evaluate(`document.querySelector("a.csv[data-chart=daily]").href`, &csvHref),
		chromedp.Evaluate(`fetch(document.querySelector("a.csv[data-chart=daily]").href).then(r => r.text())`, &csvText, func(p *runtime.EvaluateParams) *runtime.EvaluateParams {
			return p.WithAwaitPromise(true)
		}))
	recs, err := csv.NewReader(strings.NewReader(csvText)).ReadAll()
	if err != nil || len(recs) < 2 {
		t.Fatalf("CSV %q: %v", csvText, err)
	}
	var api publish.Distribution
	webtest.GetJSON(t, fmt.Sprintf("%s/api/v1/distributions?scope=asn&key=%d&days=30", srv.URL, testASN), &api)
	if len(api.Days) != len(recs)-1 || len(api.Days) < 4 {
		t.Fatalf("CSV has %d days, the API %d", len(recs)-1, len(api.Days))
	}
	if strings.Join(recs[0], ",") != "day,tests,agents,p10,p25,p50,p50_ci_low,p50_ci_high,p75,p90" {
		t.Fatalf("CSV header %v", recs[0])
	}
	for i, d := range api.Days {
		r := recs[i+1]
		want := []float64{float64(d.Tests), float64(d.Agents), d.P10, d.P25, d.P50, float64(d.P50CILow), float64(d.P50CIHigh), d.P75, d.P90}
		if r[0] != d.Day {
			t.Fatalf("CSV day %s, API %s", r[0], d.Day)
		}
		for j, w := range want {
			if got, _ := strconv.ParseFloat(r[j+1], 64); got != w {
				t.Fatalf("CSV %s %s = %s, API %v", d.Day, recs[0][j+1], r[j+1], w)
			}
		}
	}
	t.Logf("CSV download (%s) = API: %d days, e.g. %v", csvHref, len(api.Days), recs[1])

	// PNG: the button downloads a PNG file.
	b.Step("download the PNG", chromedp.Click(`button.png[data-chart="daily"]`, chromedp.ByQuery))
	var png []byte
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && png == nil; time.Sleep(100 * time.Millisecond) {
		files, _ := filepath.Glob(filepath.Join(downloads, "*"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && len(b) > 8 && !strings.HasSuffix(f, ".crdownload") {
				png = b
			}
		}
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 5000 {
		t.Fatalf("PNG download: %d bytes", len(png))
	}
	// SVG: a standalone document with the chart's title.
	svg := webtest.GetOK(t, srv.URL+fmt.Sprintf("/isp/%d/charts/daily.svg?metric=download_mbps&days=30", testASN))
	if !bytes.HasPrefix(svg, []byte("<svg")) || !bytes.Contains(svg, []byte("<polyline")) || !bytes.Contains(svg, []byte("day by day")) {
		t.Fatalf("SVG: %.200s", svg)
	}

	// Without JavaScript: the same numbers in the server-rendered table.
	html := string(webtest.GetOK(t, isp))
	for _, d := range api.Days {
		if !strings.Contains(html, "<th scope=\"row\">"+d.Day+"</th>") {
			t.Fatalf("the page's table lacks day %s", d.Day)
		}
	}

	// Accessibility basics the page must keep.
	var a11y []string
	b.Step("accessibility checks", chromedp.Evaluate(`(() => {
		const bad = [];
		if (!document.documentElement.lang) bad.push("no lang");
		document.querySelectorAll("table:not(.u-legend)").forEach(t => { if (!t.querySelector("caption")) bad.push("table without caption"); });
		document.querySelectorAll("[role=img]").forEach(e => { if (!e.getAttribute("aria-label")) bad.push("img without label"); });
		document.querySelectorAll("input").forEach(e => { if (!e.labels || e.labels.length === 0) bad.push("input without label"); });
		if (document.querySelectorAll("h1").length !== 1) bad.push("not one h1");
		if (!document.querySelector("main")) bad.push("no main");
		return bad;
	})()`, &a11y))
	if len(a11y) > 0 {
		t.Fatalf("accessibility: %v", a11y)
	}

	// A phone: nothing wider than the screen but the tables' own scrollers.
	var overflow bool
	b.Step("phone width", chromedp.EmulateViewport(375, 800, chromedp.EmulateMobile), chromedp.Navigate(isp),
		browsertest.Poll(`!!(window.neubotCharts && window.neubotCharts.daily)`, &drawn),
		chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow))
	if overflow {
		t.Error("the ISP page is wider than a phone's screen")
	}
	b.Screenshot("publish-isp-phone.png")

	// The overview: the ranking links to the ISP, the chart is drawn.
	var links int
	b.Step("overview", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(srv.URL+"/"),
		browsertest.Poll(`!!(window.neubotCharts && window.neubotCharts.overview)`, &drawn),
		chromedp.Evaluate(fmt.Sprintf(`document.querySelectorAll('table.rank a[href="/isp/%d"]').length`, testASN), &links))
	if links != 1 {
		t.Fatalf("the ranking links to AS%d %d times", testASN, links)
	}
	b.Screenshot("publish-overview-desktop.png")
	b.Step("overview on a phone", chromedp.EmulateViewport(375, 800, chromedp.EmulateMobile), chromedp.Navigate(srv.URL+"/"),
		browsertest.Poll(`!!(window.neubotCharts && window.neubotCharts.overview)`, &drawn),
		chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow))
	if overflow {
		t.Error("the overview is wider than a phone's screen")
	}
	b.Screenshot("publish-overview-phone.png")
	b.Step("data page", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(srv.URL+"/data"))
	b.Screenshot("publish-data.png")
	if p := b.Problems(); len(p) > 0 {
		t.Fatalf("the pages reported problems:\n%s", strings.Join(p, "\n"))
	}
}
