// Package browsertest runs web pages in a real headless Chromium (Debian's,
// which scripts/setup installs) for tests: it starts the browser, collects
// every problem the page reports (script exceptions, console errors and
// warnings, failed resources, Content-Security-Policy violations) and saves
// screenshots as test artefacts. A missing browser fails the test.
package browsertest

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
)

// ChromiumPath is Debian's chromium.
const ChromiumPath = "/usr/bin/chromium"

// Browser is one headless Chromium with one tab.
type Browser struct {
	t   testing.TB
	Ctx context.Context

	mu       sync.Mutex
	problems []string
	// Ignore, when set, drops reported problems it returns true for (e.g.
	// a 400 a test provokes on purpose).
	Ignore func(problem string) bool
}

// Start launches Chromium for the test's duration (at most timeout).
func Start(t testing.TB, timeout time.Duration) *Browser {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Fatalf("Chromium is needed for browser tests and is not installed (%v): run scripts/setup", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	// The profile is removed after the browser is gone (cleanups run last
	// first); Chromium's helpers may still write in it while it exits, so
	// t.TempDir's strict removal does not fit.
	profile, err := os.MkdirTemp("", "browsertest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(profile) })
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(ChromiumPath),
		chromedp.NoSandbox, // tests run as root
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
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
	)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelBrowser)
	b := &Browser{t: t, Ctx: bctx}
	chromedp.ListenTarget(bctx, func(ev any) {
		var p string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			p = "exception: " + ev.ExceptionDetails.Error()
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.APITypeError || ev.Type == runtime.APITypeWarning {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				p = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.LevelError || ev.Entry.Level == cdplog.LevelWarning {
				p = fmt.Sprintf("%s %s: %s %s", ev.Entry.Source, ev.Entry.Level, ev.Entry.Text, ev.Entry.URL)
			}
		}
		if p == "" {
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.Ignore == nil || !b.Ignore(p) {
			b.problems = append(b.problems, p)
		}
	})
	return b
}

// Problems returns what the pages reported so far.
func (b *Browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
}

// Step runs actions, failing the test with the page's text if they fail.
func (b *Browser) Step(what string, actions ...chromedp.Action) {
	b.t.Helper()
	if err := chromedp.Run(b.Ctx, actions...); err != nil {
		if errors.Is(err, chromedp.ErrPollingTimeout) {
			err = fmt.Errorf("timed out: %w", err)
		}
		var text string
		_ = chromedp.Run(b.Ctx, chromedp.Text("body", &text, chromedp.ByQuery))
		b.t.Fatalf("%s: %v\npage text:\n%s", what, err, text)
	}
}

// Poll waits until expr is truthy (at most 40 s).
func Poll(expr string, res any) chromedp.Action {
	return chromedp.Poll(expr, res, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(40*time.Second))
}

// Screenshot saves a full-page PNG under ArtefactDir.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	var png []byte
	b.Step("screenshot "+name, chromedp.FullScreenshot(&png, 100))
	path := filepath.Join(ArtefactDir(b.t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
	return path
}

// ArtefactDir is $NEUBOT_ARTEFACTS, or test-artefacts/ at the repository's
// root (next to go.mod), created if needed.
func ArtefactDir(t testing.TB) string {
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
