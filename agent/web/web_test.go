package web

import (
	"html"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

var metaCSRF = regexp.MustCompile(`<meta name="neubot-csrf" content="([^"]*)">`)

// TestToken: the token is in the meta tag, HTML-escaped, and reads back
// exactly; the page is never cached.
func TestToken(t *testing.T) {
	for _, token := range []string{
		"3f1c2a9be0d44e51a7c0f7d1c2b3a4e5",
		`x"><script>alert(1)</script>`,
		`a&b'c<d>`,
		"",
	} {
		rec := get(t, Handler(token), "GET", "/", nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("token %q: GET / = %d", token, rec.Code)
		}
		body := rec.Body.String()
		m := metaCSRF.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("token %q: no <meta name=neubot-csrf> in the page", token)
		}
		if got := html.UnescapeString(m[1]); got != token {
			t.Errorf("token %q: meta content reads back as %q", token, got)
		}
		if strings.ContainsAny(m[1], `<>"'`) {
			t.Errorf("token %q: meta content %q is not escaped", token, m[1])
		}
		if strings.Contains(body, "<script>alert") {
			t.Errorf("token %q: injected markup reached the page", token)
		}
		if got := rec.Header().Get("Content-Type"); got != "text/html; charset=utf-8" {
			t.Errorf("Content-Type = %q", got)
		}
		if got := rec.Header().Get("Cache-Control"); got != "no-store" {
			t.Errorf("Cache-Control = %q, want no-store (the page holds the token)", got)
		}
	}
}

// TestHeaders: every answer, found or not, carries the protections.
func TestHeaders(t *testing.T) {
	h := Handler("tok")
	want := map[string]string{
		"Content-Security-Policy": ContentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
	}
	for _, path := range []string{"/", "/static/app.js", "/static/style.css", "/nope", "/static/nope.js"} {
		rec := get(t, h, "GET", path, nil)
		for k, v := range want {
			if got := rec.Header().Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", path, k, got, v)
			}
		}
	}
	for _, directive := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "frame-ancestors 'none'"} {
		if !strings.Contains(ContentSecurityPolicy, directive) {
			t.Errorf("CSP lacks %q", directive)
		}
	}
	if strings.Contains(ContentSecurityPolicy, "unsafe") {
		t.Errorf("CSP allows something unsafe: %s", ContentSecurityPolicy)
	}
}

// TestAssets: assets are served with their types and ETags, answer 304
// when unchanged, and HEAD works.
func TestAssets(t *testing.T) {
	h := Handler("tok")
	cases := map[string]string{
		"/static/app.js":    "text/javascript; charset=utf-8",
		"/static/style.css": "text/css; charset=utf-8",
		"/static/icon.svg":  "image/svg+xml",
	}
	if _, err := fs.Stat(embedded, "static/"+ChartLibrary); err == nil {
		cases["/static/vendor/uPlot.iife.min.js"] = "text/javascript; charset=utf-8"
		cases["/static/vendor/uPlot.min.css"] = "text/css; charset=utf-8"
		cases["/static/vendor/LICENSE"] = "text/plain; charset=utf-8"
	} else {
		t.Log("static/vendor is empty (scripts/setup has not run): vendor assets not checked")
	}
	for path, ct := range cases {
		rec := get(t, h, "GET", path, nil)
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s = %d", path, rec.Code)
			continue
		}
		if got := rec.Header().Get("Content-Type"); got != ct {
			t.Errorf("%s: Content-Type = %q, want %q", path, got, ct)
		}
		if rec.Body.Len() == 0 {
			t.Errorf("%s: empty body", path)
		}
		etag := rec.Header().Get("ETag")
		if etag == "" {
			t.Errorf("%s: no ETag", path)
			continue
		}
		if rec := get(t, h, "GET", path, map[string]string{"If-None-Match": etag}); rec.Code != http.StatusNotModified {
			t.Errorf("%s with If-None-Match: %d, want 304", path, rec.Code)
		}
		if rec := get(t, h, "HEAD", path, nil); rec.Code != http.StatusOK || rec.Body.Len() != 0 {
			t.Errorf("HEAD %s = %d with %d bytes", path, rec.Code, rec.Body.Len())
		}
	}
}

// TestNotFound: only the page and the listed assets exist; the template
// itself, the vendor README, directories and anything else are 404.
func TestNotFound(t *testing.T) {
	h := Handler("tok")
	for _, path := range []string{
		"/nope", "/index.html", "/static", "/static/", "/static/vendor/", "/static/index.html",
		"/static/vendor/README.md", "/static/nope.js", "/static/../web.go", "/api/v1/nope",
	} {
		if rec := get(t, h, "GET", path, nil); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, rec.Code)
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		rec := get(t, h, m, "/", nil)
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s / = %d (Allow %q), want 405", m, rec.Code, rec.Header().Get("Allow"))
		}
	}
}

var staticRef = regexp.MustCompile(`(?:src|href)="(/static/[^"?]+)(?:\?[^"]*)?"`)

// TestPageReferences: everything the page loads exists, and the page has
// nothing the CSP would block (inline script, style or event handlers).
func TestPageReferences(t *testing.T) {
	h := Handler("tok")
	page := get(t, h, "GET", "/", nil).Body.String()
	refs := staticRef.FindAllStringSubmatch(page, -1)
	if len(refs) < 3 {
		t.Fatalf("the page loads only %d assets", len(refs))
	}
	for _, m := range refs {
		if rec := get(t, h, "GET", m[1], nil); rec.Code != http.StatusOK {
			t.Errorf("the page loads %s, which is %d", m[1], rec.Code)
		}
	}
	for _, tag := range regexp.MustCompile(`<script[^>]*>([^<]*)</script>`).FindAllStringSubmatch(page, -1) {
		if !strings.Contains(tag[0], ` src="/static/`) || strings.TrimSpace(tag[1]) != "" {
			t.Errorf("the page has an inline script the CSP blocks: %q", tag[0])
		}
	}
	if n, m := strings.Count(page, "<script"), strings.Count(page, "</script>"); n != m {
		t.Errorf("%d <script> tags but %d </script>", n, m)
	}
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`<style`),
		regexp.MustCompile(`\sstyle=`),
		regexp.MustCompile(`\son[a-z]+=`),
		regexp.MustCompile(`javascript:`),
	} {
		if loc := re.FindStringIndex(page); loc != nil {
			t.Errorf("the page has inline code the CSP blocks: %q", page[loc[0]:min(loc[1]+40, len(page))])
		}
	}
}

// TestWithoutChartLibrary: without static/vendor the page does not load
// uPlot (app.js then says "chart library not installed: run scripts/setup").
func TestWithoutChartLibrary(t *testing.T) {
	sub, err := fs.Sub(embedded, "static")
	if err != nil {
		t.Fatal(err)
	}
	bare := fstest.MapFS{}
	for _, name := range []string{"index.html", "app.js", "style.css", "icon.svg", "vendor/README.md"} {
		data, err := fs.ReadFile(sub, name)
		if err != nil {
			t.Fatal(err)
		}
		bare[name] = &fstest.MapFile{Data: data}
	}
	h, err := newHandler(bare, "tok")
	if err != nil {
		t.Fatal(err)
	}
	page := get(t, h, "GET", "/", nil).Body.String()
	if strings.Contains(page, "uPlot") {
		t.Error("the page loads uPlot although it is not installed")
	}
	if !strings.Contains(page, `id="charts"`) {
		t.Error("the page has no chart area for the notice")
	}
	if rec := get(t, h, "GET", "/static/app.js", nil); rec.Code != http.StatusOK {
		t.Errorf("GET /static/app.js = %d", rec.Code)
	}
	js, err := os.ReadFile("static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), "chart library not installed: run scripts/setup") {
		t.Error("app.js does not tell how to install the chart library")
	}
}
