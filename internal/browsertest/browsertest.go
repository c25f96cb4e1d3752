// Package browsertest runs Debian's Chromium, headless, for the browser
// tests of Neubot's pages (chromedp): the way it is launched, a listener
// that collects whatever a page reports as a problem (script exceptions,
// console errors and warnings, failed resources, Content-Security-Policy
// violations), steps that show the page's text when they fail, and the
// folder screenshots go to. Only tests import it.
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

// ChromiumPath is Debian's chromium, which scripts/setup installs. A
// missing browser fails the test: it never passes silently.
const ChromiumPath = "/usr/bin/chromium"

// Browser is a running headless Chromium with one tab.
type Browser struct {
	// Ctx is the tab's context, for chromedp.Run.
	Ctx context.Context
	t   *testing.T

	mu       sync.Mutex
	problems []string
}

// Start launches Chromium for t, stopped when t ends or after timeout, in
// a window of width x height. ignore, when set, drops log entries the test
// provokes on purpose.
func Start(t *testing.T, timeout time.Duration, width, height int, ignore func(*cdplog.EventEntryAdded) bool) *Browser {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Fatalf("Chromium is needed for browser tests and is not installed (%v): run scripts/setup", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(ChromiumPath),
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
		chromedp.WindowSize(width, height),
	)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelBrowser(); cancelAlloc(); cancel() })
	b := &Browser{Ctx: bctx, t: t}
	chromedp.ListenTarget(bctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			b.problems = append(b.problems, "exception: "+ev.ExceptionDetails.Error())
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.APITypeError || ev.Type == runtime.APITypeWarning {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				b.problems = append(b.problems, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
			}
		case *cdplog.EventEntryAdded:
			if ignore != nil && ignore(ev) {
				return
			}
			if ev.Entry.Level == cdplog.LevelError || ev.Entry.Level == cdplog.LevelWarning {
				b.problems = append(b.problems, fmt.Sprintf("%s %s: %s %s", ev.Entry.Source, ev.Entry.Level, ev.Entry.Text, ev.Entry.URL))
			}
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

// Step runs actions and fails the test with the page's text and the
// problems so far when one fails.
func (b *Browser) Step(what string, actions ...chromedp.Action) {
	b.t.Helper()
	if err := chromedp.Run(b.Ctx, actions...); err != nil {
		if errors.Is(err, chromedp.ErrPollingTimeout) {
			err = fmt.Errorf("timed out: %w", err)
		}
		var text string
		_ = chromedp.Run(b.Ctx, chromedp.Text("body", &text, chromedp.ByQuery))
		b.t.Fatalf("%s: %v\npage text:\n%s\nproblems: %q", what, err, text, b.Problems())
	}
}

// Screenshot saves a full-page PNG named name into ArtefactDir.
func (b *Browser) Screenshot(name string) {
	b.t.Helper()
	var png []byte
	b.Step("screenshot "+name, chromedp.FullScreenshot(&png, 100))
	path := filepath.Join(ArtefactDir(b.t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}

// ArtefactDir is $NEUBOT_ARTEFACTS, or test-artefacts/ at the
// repository's root (next to go.mod), made if missing.
func ArtefactDir(t *testing.T) string {
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
