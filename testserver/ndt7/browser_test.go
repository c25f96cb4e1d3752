package ndt7_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/neubot/neubot/collector"
	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/testserver/service"
	"github.com/neubot/neubot/testserver/service/servicetest"
)

// chromiumPath is Debian's chromium, which scripts/setup installs. A
// missing browser fails the test: it never passes silently.
const chromiumPath = "/usr/bin/chromium"

// TestBrowser runs the ndt7 page of a real test server in a real headless
// Chromium: consent, M-Lab's JavaScript client (vendored by scripts/setup)
// for the download and the upload, the record posted to collect, merged
// with the server's view, forwarded to a real collector and loaded into
// ClickHouse as an ndt7-browser row. It saves a screenshot of the result to
// $NEUBOT_ARTEFACTS, or test-artefacts/ at the repository's root.
func TestBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Chromium is needed for the browser test and is not installed (%v): run scripts/setup", err)
	}
	if _, err := os.Stat("static/vendor/ndt7.js"); err != nil {
		t.Fatalf("the ndt7 JavaScript client is not installed (%v): run scripts/setup", err)
	}
	col := collectortest.New(t, collector.Config{})
	_, base := servicetest.Start(t, service.Config{CollectorURL: col.Server.URL, NDT7Duration: time.Second})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox, // we run as root
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1000, 800),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()

	// Anything the page logs as an error (a script exception, a resource
	// that failed, a Content-Security-Policy violation) fails the test.
	var mu sync.Mutex
	var problems []string
	chromedp.ListenTarget(bctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+ev.ExceptionDetails.Error())
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.APITypeError || ev.Type == runtime.APITypeWarning {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				problems = append(problems, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.LevelError || ev.Entry.Level == cdplog.LevelWarning {
				problems = append(problems, fmt.Sprintf("%s %s: %s %s", ev.Entry.Source, ev.Entry.Level, ev.Entry.Text, ev.Entry.URL))
			}
		}
	})
	step := func(what string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(bctx, actions...); err != nil {
			if errors.Is(err, chromedp.ErrPollingTimeout) {
				err = fmt.Errorf("timed out: %w", err)
			}
			var text string
			_ = chromedp.Run(bctx, chromedp.Text("body", &text, chromedp.ByQuery))
			mu.Lock()
			t.Fatalf("%s: %v\npage text:\n%s\nproblems: %q", what, err, text, problems)
		}
	}

	var consent string
	step("open the page", chromedp.Navigate(base+"/ndt7/"),
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
		_ = chromedp.Run(bctx, chromedp.Text("#error", &msg, chromedp.ByQuery))
		t.Fatalf("the page shows no saved result: %q", msg)
	}
	t.Logf("browser result: download %s, upload %s, measurement %s", download, upload, uid)

	var png []byte
	step("screenshot", chromedp.FullScreenshot(&png, 100))
	path := filepath.Join(artefactDir(t), "ndt7-browser-result.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	mu.Lock()
	if len(problems) > 0 {
		t.Errorf("the page logged problems: %q", problems)
	}
	mu.Unlock()

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
	if software != "@m-lab/ndt7" || authority != 1 || serverView != 1 || svUpload != 1 || measuredAt != "server" ||
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

// artefactDir is $NEUBOT_ARTEFACTS, or test-artefacts/ at the root of the
// repository.
func artefactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("NEUBOT_ARTEFACTS")
	if dir == "" {
		root, err := filepath.Abs(".")
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
				break
			}
			parent := filepath.Dir(root)
			if parent == root {
				t.Fatal("no go.mod above the test's directory")
			}
			root = parent
		}
		dir = filepath.Join(root, "test-artefacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
