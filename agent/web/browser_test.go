package web_test

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/neubot/neubot/agent"
	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/speedtest"
	"github.com/neubot/neubot/collector"
	"github.com/neubot/neubot/internal/browsertest"
	"github.com/neubot/neubot/internal/version"
	"github.com/neubot/neubot/internal/webtest"
	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver"
	"github.com/neubot/neubot/testserver/service"
	"github.com/neubot/neubot/testserver/service/servicetest"
)

// phases are the test phases of agent/API.md.
var phases = []string{"rendezvous", "negotiate", "latency", "download", "upload", "collect", "store"}

// TestBrowser drives the UI in a real headless Chromium against a real
// agent and a real test server, both in-process on loopback: the consent
// screen, Accept, "Run a test now", live progress, the result in the table
// and the charts, the settings form's field errors, pause and resume, and
// declining. It saves full-page screenshots (desktop and a 375 px phone) to
// $NEUBOT_ARTEFACTS, or test-artefacts/ at the repository's root.
func TestBrowser(t *testing.T) {
	base := startAgent(t, startTestServer(t))
	b := browsertest.Start(t, 90*time.Second)
	// The bad interval sent on purpose below answers 400.
	b.Ignore = func(p string) bool { return strings.Contains(p, "/api/v1/config") && strings.Contains(p, "400") }
	step, poll := b.Step, browsertest.Poll
	visible := func(id string) bool {
		t.Helper()
		var v bool
		step("is #"+id+" visible", chromedp.Evaluate(fmt.Sprintf(`(() => { const e = document.getElementById(%q); return !!e && e.offsetParent !== null })()`, id), &v))
		return v
	}
	shot := func(name string) {
		t.Helper()
		b.Screenshot(name)
	}

	// 1. First start: the consent screen and nothing else.
	var consentText string
	var publish bool
	step("open the UI", chromedp.Navigate(base+"/"),
		chromedp.WaitVisible("#consent", chromedp.ByQuery),
		chromedp.Text("#consent", &consentText, chromedp.ByQuery),
		chromedp.Evaluate(`document.getElementById("can-publish").checked`, &publish))
	for _, want := range []string{"Allow publishing my results as open data", "never published", "open data"} {
		if !strings.Contains(consentText, want) {
			t.Errorf("the consent screen does not say %q", want)
		}
	}
	if !publish {
		t.Error(`"Allow publishing" is not checked by default`)
	}
	if visible("app") || visible("run") {
		t.Error("the app is shown before the volunteer decided")
	}
	shot("agent-ui-consent.png")
	step("phone width", chromedp.EmulateViewport(375, 800, chromedp.EmulateMobile))
	shot("agent-ui-consent-phone.png")
	step("desktop width", chromedp.EmulateViewport(1280, 900))

	// 2. Accept, then run a test now: progress with a phase name.
	var phase string
	step("accept", chromedp.Click("#accept", chromedp.ByQuery),
		chromedp.WaitVisible("#run", chromedp.ByQuery))
	if st := status(t, base); !st.Consent.Decided || !st.Consent.CanCollect || !st.Consent.CanPublish {
		t.Fatalf("after Accept the agent has consent %+v", st.Consent)
	}
	step("run a test now and see its progress", chromedp.Click("#run", chromedp.ByQuery),
		poll(`document.getElementById("progress-phase").dataset.phase || false`, &phase))
	if !contains(phases, phase) {
		t.Errorf("progress shows phase %q, not one of %v", phase, phases)
	}
	var mbps string
	step("progress reaches a transfer phase", poll(
		`["download", "upload"].includes(document.getElementById("progress-phase").dataset.phase) &&
		 document.getElementById("progress-mbps").textContent !== "–" &&
		 document.getElementById("progress-mbps").textContent`, &mbps))
	if v, err := strconv.ParseFloat(mbps, 64); err != nil || v <= 0 {
		t.Errorf("live speed reads %q", mbps)
	}
	shot("agent-ui-progress.png")

	// 3. The result appears in the table, with the agent's numbers.
	var row []string
	step("the result appears in the history table", poll(
		`(() => { const tr = document.querySelector("#results-body tr");
		   return tr ? Array.from(tr.cells, (c) => c.textContent.trim()) : false })()`, &row))
	rs := results(t, base)
	if len(rs) != 1 || len(row) != 6 {
		t.Fatalf("the agent has %d results; the table row is %q", len(rs), row)
	}
	for i, want := range []float64{rs[0].DownloadMbps, rs[0].UploadMbps, rs[0].RTTms, float64(rs[0].Bytes) / 1e6} {
		got, err := strconv.ParseFloat(row[i+1], 64)
		tolerance := 0.051 // one decimal
		if want >= 1000 {
			tolerance = 0.51 // no decimals
		}
		if err != nil || math.Abs(got-want) > tolerance {
			t.Errorf("table column %d reads %q, the agent says %.3f", i+1, row[i+1], want)
		}
	}
	if rs[0].DownloadMbps <= 0 || rs[0].UploadMbps <= 0 {
		t.Errorf("the result has no speeds: %+v", rs[0])
	}

	// 4. The charts are drawn: canvases of non-zero size with painted pixels.
	var missing bool
	step("look for the chart library", chromedp.Evaluate(`!!document.getElementById("charts-missing")`, &missing))
	if missing {
		t.Fatal("the page says: chart library not installed: run scripts/setup")
	}
	for _, id := range []string{"chart-speed", "chart-latency"} {
		var c struct{ W, H, CSSWidth, Painted float64 }
		step("chart "+id+" is drawn", poll(fmt.Sprintf(`(() => {
			const c = document.querySelector("#%s canvas");
			if (!c || !c.width || !c.height) return false;
			const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
			let n = 0;
			for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
			return n > 0 && {W: c.width, H: c.height, CSSWidth: c.getBoundingClientRect().width, Painted: n};
		})()`, id), &c))
		if c.W < 200 || c.H < 100 || c.CSSWidth < 200 {
			t.Errorf("chart %s is %vx%v px (%v CSS px wide)", id, c.W, c.H, c.CSSWidth)
		}
	}
	var finished string
	step("the end of the test is announced", poll(
		`(() => { const t = document.getElementById("progress-phase").textContent; return t.startsWith("Test finished") && t })()`, &finished))
	// A second test, so that the charts draw lines, not single points.
	var rows int
	step("a second test", chromedp.Click("#run", chromedp.ByQuery),
		poll(`document.querySelectorAll("#results-body tr").length === 2 && 2`, &rows),
		poll(`document.getElementById("progress-phase").textContent.startsWith("Test finished") && 2`, &rows))
	var usageRows int
	step("data used is listed", poll(`document.querySelectorAll("#days-body .bar-fill").length || false`, &usageRows))

	// 5. Settings: a 400 shows the field's error; a valid value saves.
	var fieldErr, saved string
	step("a bad interval shows the agent's field error",
		chromedp.SetValue("#interval", "5", chromedp.ByQuery),
		chromedp.Click("#save", chromedp.ByQuery),
		poll(`document.getElementById("interval").getAttribute("aria-invalid") === "true" &&
		      document.getElementById("interval-error").textContent`, &fieldErr))
	if !strings.Contains(fieldErr, "15") || !strings.Contains(fieldErr, "10080") {
		t.Errorf("the interval error reads %q", fieldErr)
	}
	step("valid settings are saved",
		chromedp.SetValue("#interval", "240", chromedp.ByQuery),
		chromedp.SetValue("#cap", "1000000", chromedp.ByQuery),
		chromedp.Click("#save", chromedp.ByQuery),
		poll(`document.getElementById("settings-status").textContent === "Settings saved." && "ok"`, &saved))
	if cfg := config(t, base); cfg.MeanIntervalMinutes != 240 || cfg.MonthlyCapMB != 1000000 {
		t.Errorf("after saving, the agent's config is %+v", cfg)
	}

	// 6. Pause and resume.
	var label string
	step("pause", chromedp.Click("#pause", chromedp.ByQuery),
		poll(`document.getElementById("pause").textContent === "Resume" && "Resume"`, &label))
	if !status(t, base).Paused {
		t.Error("Pause did not pause the agent")
	}
	step("resume", chromedp.Click("#pause", chromedp.ByQuery),
		poll(`document.getElementById("pause").textContent === "Pause" && "Pause"`, &label))
	if status(t, base).Paused {
		t.Error("Resume did not resume the agent")
	}

	// 7. Screenshots: desktop, then a 375 px phone (no sideways scrolling).
	step("scroll to top", chromedp.Evaluate(`window.scrollTo(0, 0)`, nil))
	shot("agent-ui.png")
	var narrow bool
	step("phone width", chromedp.EmulateViewport(375, 800, chromedp.EmulateMobile),
		poll(`document.querySelector("#chart-speed canvas").getBoundingClientRect().width <= 375 && true`, &narrow))
	var overflow []string
	step("nothing wider than the phone", chromedp.Evaluate(`Array.from(document.querySelectorAll("body *"))
		.filter((e) => e.offsetParent !== null && !e.closest(".table-scroll") && e.getBoundingClientRect().right > window.innerWidth + 1)
		.map((e) => e.tagName + "#" + e.id + "." + e.className)`, &overflow))
	if len(overflow) > 0 {
		t.Errorf("at 375 px these stick out of the screen: %v", overflow)
	}
	shot("agent-ui-phone.png")
	step("desktop width", chromedp.EmulateViewport(1280, 900))

	// 8. Declining stops measuring; reconsidering brings the consent back.
	step("change privacy choices, decline",
		chromedp.Click("#privacy", chromedp.ByQuery),
		chromedp.WaitVisible("#consent", chromedp.ByQuery),
		chromedp.Click("#decline", chromedp.ByQuery),
		chromedp.WaitVisible("#declined", chromedp.ByQuery))
	if st := status(t, base); st.Consent.CanCollect || st.NextTest != nil {
		t.Errorf("after Decline the agent has consent %+v and next test %v", st.Consent, st.NextTest)
	}
	if visible("app") {
		t.Error("the app is shown after Decline")
	}
	step("reconsider, accept without publishing",
		chromedp.Click("#reconsider", chromedp.ByQuery),
		chromedp.WaitVisible("#consent", chromedp.ByQuery),
		chromedp.Click("#can-publish", chromedp.ByQuery),
		chromedp.Click("#accept", chromedp.ByQuery),
		chromedp.WaitVisible("#run", chromedp.ByQuery))
	if st := status(t, base); !st.Consent.CanCollect || st.Consent.CanPublish {
		t.Errorf("after accepting without publishing the agent has consent %+v", st.Consent)
	}

	for _, p := range b.Problems() {
		t.Errorf("the page reported: %s", p)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// startTestServer runs a real test server in-process on loopback.
func startTestServer(t *testing.T) string {
	t.Helper()
	_, url := servicetest.Start(t, service.Config{ID: "ts-ui-test"})
	return url
}

// startAgent runs a real agent (its default speedtest methodology) against
// the test server, serving its API and UI on loopback; it returns the UI's
// base URL.
func startAgent(t *testing.T, serverURL string) string {
	t.Helper()
	return startAgentWith(t, agent.Options{ServerURL: serverURL})
}

// startAgentWith runs a real agent with opts (in a state directory of its
// own) and returns the UI's base URL.
func startAgentWith(t *testing.T, opts agent.Options) string {
	t.Helper()
	opts.StateDir = t.TempDir()
	a, err := agent.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return webtest.Serve(t, a.Handler(), a.Run, a.Close)
}

type statusDoc struct {
	Consent struct {
		Decided    bool `json:"decided"`
		CanCollect bool `json:"can_collect"`
		CanPublish bool `json:"can_publish"`
	} `json:"consent"`
	Paused   bool       `json:"paused"`
	NextTest *time.Time `json:"next_test"`
}

type resultDoc struct {
	DownloadMbps float64 `json:"download_mbps"`
	UploadMbps   float64 `json:"upload_mbps"`
	RTTms        float64 `json:"rtt_ms"`
	Bytes        int64   `json:"bytes"`
}

type configDoc struct {
	MeanIntervalMinutes int   `json:"mean_interval_minutes"`
	MonthlyCapMB        int64 `json:"monthly_cap_mb"`
}

func status(t *testing.T, base string) statusDoc {
	t.Helper()
	var st statusDoc
	webtest.GetJSON(t, base+"/api/v1/status", &st)
	return st
}

func results(t *testing.T, base string) []resultDoc {
	t.Helper()
	var rs struct {
		Results []resultDoc `json:"results"`
	}
	webtest.GetJSON(t, base+"/api/v1/results", &rs)
	return rs.Results
}

func config(t *testing.T, base string) configDoc {
	t.Helper()
	var c configDoc
	webtest.GetJSON(t, base+"/api/v1/config", &c)
	return c
}

// TestBrowserPeers drives the peer-to-peer card against a real agent and a
// real collector's rendezvous on loopback: a cap the agent refuses shows
// its reason at the field; valid caps start serving, the collector
// connects back and lists the agent, and the card shows the caps in force;
// unticking stops serving.
func TestBrowserPeers(t *testing.T) {
	colURL := startCollector(t, collector.Config{PeerNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	base := startAgentWith(t, agent.Options{CollectorURL: colURL, PeerListen: "127.0.0.1:0"})

	b := browsertest.Start(t, 60*time.Second)
	b.Ignore = func(p string) bool { return strings.Contains(p, "/api/v1/config") && strings.Contains(p, "400") }
	step, poll := b.Step, browsertest.Poll
	step("open the UI and accept", chromedp.Navigate(base+"/"),
		chromedp.WaitVisible("#accept", chromedp.ByQuery),
		chromedp.Click("#accept", chromedp.ByQuery),
		chromedp.WaitVisible("#peers-form", chromedp.ByQuery))
	var serving string
	step("not serving by default", poll(`document.getElementById("pr-state").textContent === "No" && "No"`, &serving))

	var fieldErr string
	step("a cap the agent refuses shows its reason",
		chromedp.Click("#serve-peers", chromedp.ByQuery),
		chromedp.SetValue("#cap-tests", "9", chromedp.ByQuery),
		chromedp.Click("#save-peers", chromedp.ByQuery),
		poll(`document.getElementById("cap-tests").getAttribute("aria-invalid") === "true" &&
		      document.getElementById("cap-tests-error").textContent`, &fieldErr))
	if !strings.Contains(fieldErr, "8") {
		t.Errorf("the error of 9 tests at once reads %q", fieldErr)
	}
	var listed, caps string
	step("valid caps: serving, listed by the collector, caps shown",
		chromedp.SetValue("#cap-tests", "2", chromedp.ByQuery),
		chromedp.SetValue("#cap-mbps", "5.5", chromedp.ByQuery),
		chromedp.SetValue("#cap-daily", "300", chromedp.ByQuery),
		chromedp.Click("#save-peers", chromedp.ByQuery),
		poll(`document.getElementById("pr-listed").textContent.startsWith("Yes, at http://127.0.0.1:") &&
		      document.getElementById("pr-listed").textContent`, &listed),
		chromedp.Text("#pr-caps", &caps, chromedp.ByQuery),
		chromedp.Text("#pr-state", &serving, chromedp.ByQuery))
	if caps != "2 at once, 5.5 Mbit/s, 300 MB a day" || !strings.HasPrefix(serving, "Yes, on 127.0.0.1:") {
		t.Errorf("the card reads serving %q, caps %q", serving, caps)
	}
	var st struct {
		Peers struct {
			Serving bool `json:"serving"`
			Status  struct {
				Listed bool                `json:"listed"`
				URL    string              `json:"url"`
				Caps   rendezvous.PeerCaps `json:"caps"`
			} `json:"status"`
		} `json:"peers"`
	}
	webtest.GetJSON(t, base+"/api/v1/status", &st)
	if !st.Peers.Serving || !st.Peers.Status.Listed || st.Peers.Status.Caps.MaxTests != 2 || st.Peers.Status.Caps.MaxMbps != 5.5 || st.Peers.Status.Caps.DailyMB != 300 {
		t.Errorf("the agent's status: %+v", st.Peers)
	}
	if !strings.HasSuffix(listed, st.Peers.Status.URL) {
		t.Errorf("the card says %q, the agent %q", listed, st.Peers.Status.URL)
	}
	step("scroll to the card", chromedp.ScrollIntoView("#peers", chromedp.ByQuery))
	b.Screenshot("agent-ui-peers.png")
	step("untick: serving stops",
		chromedp.Click("#serve-peers", chromedp.ByQuery),
		chromedp.Click("#save-peers", chromedp.ByQuery),
		poll(`document.getElementById("pr-state").textContent === "No" && "No"`, &serving))
	for _, p := range b.Problems() {
		t.Errorf("the page reported: %s", p)
	}
}

// startCollector serves a collector (its spool in a temporary directory,
// no ClickHouse: rendezvous only) on loopback until the test ends.
func startCollector(t *testing.T, cfg collector.Config) string {
	t.Helper()
	cfg.SpoolDir = t.TempDir()
	col, err := collector.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return webtest.Serve(t, col.Handler(), nil, func() error { col.Close(); return nil })
}

// TestBrowserUpdate: a collector that announces a newer agent release in
// its rendezvous answers (--latest-agent-version) makes the UI say so after
// the agent's next test, with the file to install; before any rendezvous,
// the UI says nothing.
func TestBrowserUpdate(t *testing.T) {
	const latest = "99.1.0"
	colURL := startCollector(t, collector.Config{LatestAgentVersion: latest})
	svc, tsURL := servicetest.Start(t, service.Config{ID: "ts-ui-update"})
	ctx, cancel := context.WithCancel(context.Background())
	regDone := make(chan struct{})
	reg := &testserver.Registrar{CollectorURL: colURL, Info: func() rendezvous.ServerRegistration { return svc.Registration(tsURL) }}
	go func() { defer close(regDone); reg.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-regDone })
	base := startAgentWith(t, agent.Options{CollectorURL: colURL, Tests: map[string]plugin.Measurer{schemas.SpeedtestName: speedtest.NewMeasurer(speedtest.Config{})}})

	b := browsertest.Start(t, 60*time.Second)
	step, poll := b.Step, browsertest.Poll
	var shown bool
	step("open the UI and accept", chromedp.Navigate(base+"/"),
		chromedp.WaitVisible("#accept", chromedp.ByQuery),
		chromedp.Click("#accept", chromedp.ByQuery),
		chromedp.WaitVisible("#run", chromedp.ByQuery),
		chromedp.Evaluate(`!document.getElementById("update").hidden`, &shown))
	if shown {
		t.Error("the UI announces a newer version before any rendezvous")
	}
	var text string
	step("run a test: the rendezvous announces the newer version", chromedp.Click("#run", chromedp.ByQuery),
		poll(`!document.getElementById("update").hidden && document.getElementById("update").textContent`, &text))
	text = strings.Join(strings.Fields(text), " ")
	file := fmt.Sprintf("neubot_%s_%s.deb", latest, runtime.GOARCH)
	for _, want := range []string{"A newer version of Neubot exists: " + latest, "(this is " + version.Version + ")", "never updates itself", file} {
		if !strings.Contains(text, want) {
			t.Errorf("the notice reads %q; it lacks %q", text, want)
		}
	}
	var st struct {
		Update *agent.UpdateDoc `json:"update"`
	}
	webtest.GetJSON(t, base+"/api/v1/status", &st)
	if st.Update == nil || st.Update.Latest != latest || st.Update.Current != version.Version || st.Update.File != file {
		t.Errorf("the status's update is %+v", st.Update)
	}
	step("the test ends", poll(`document.getElementById("st-state").textContent.startsWith("Waiting") && "done"`, &text))
	b.Screenshot("agent-ui-update.png")
	for _, p := range b.Problems() {
		t.Errorf("the page reported: %s", p)
	}
}
