// Package web is the agent's web UI: one page (static/index.html), its
// script and style sheet, and the uPlot chart library that scripts/setup
// copies into static/vendor/, all embedded in the binary. The agent serves
// Handler at "/" next to its JSON API (agent/API.md), on loopback.
//
// The page is plain HTML, CSS and JavaScript without a build step. Every
// answer carries a strict Content-Security-Policy (no inline script or
// style, nothing from other origins), and the page cannot be framed. The
// CSRF token the API wants on POST and PUT is given only inside the page, in
// <meta name="neubot-csrf">, which another origin cannot read.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/neubot/neubot/internal/httpx"
)

//go:embed static
var embedded embed.FS

// ContentSecurityPolicy is sent with every answer: scripts, styles and
// connections only from the agent itself, images also as data: URLs, no
// plug-ins, no framing, no <base> or foreign form targets.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// ChartLibrary is the path of the chart library under /static/; the page
// loads it only when scripts/setup put it there.
const ChartLibrary = "vendor/uPlot.iife.min.js"

const chartStyle = "vendor/uPlot.min.css"

// contentTypes lists what is served from /static/, by extension; any other
// file is not served. LICENSE files are served as text.
var contentTypes = map[string]string{
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
	".txt":  "text/plain; charset=utf-8",
	".woff": "font/woff",
}

// Handler serves the UI: GET / is the page with csrfToken in its
// <meta name="neubot-csrf">, GET /static/NAME the assets; anything else is
// 404 (405 for other methods).
func Handler(csrfToken string) http.Handler {
	sub, err := fs.Sub(embedded, "static")
	if err != nil {
		panic(err) // "static" is a valid path: cannot happen
	}
	h, err := newHandler(sub, csrfToken)
	if err != nil {
		panic(fmt.Sprintf("web: the embedded UI is broken: %v", err)) // a build bug
	}
	return h
}

type asset struct {
	data        []byte
	contentType string
	etag        string
}

type handler struct {
	page   []byte
	assets map[string]asset // by path under /static/
}

// pageData is what static/index.html is rendered with.
type pageData struct {
	CSRF   string
	Charts bool   // the chart library is installed
	V      string // a digest of the assets, appended to their URLs
}

func newHandler(fsys fs.FS, csrfToken string) (*handler, error) {
	h := &handler{assets: map[string]asset{}}
	all := sha256.New()
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if path.Base(p) == "LICENSE" {
			ct, ok = "text/plain; charset=utf-8", true
		}
		if !ok {
			return nil
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		all.Write(sum[:])
		h.assets[p] = asset{data: data, contentType: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		return nil, err
	}
	tmpl, err := template.ParseFS(fsys, "index.html")
	if err != nil {
		return nil, err
	}
	_, js := h.assets[ChartLibrary]
	_, css := h.assets[chartStyle]
	var buf bytes.Buffer
	data := pageData{CSRF: csrfToken, Charts: js && css, V: hex.EncodeToString(all.Sum(nil)[:6])}
	if err := tmpl.Execute(&buf, data); err != nil {
		return nil, err
	}
	h.page = buf.Bytes()
	return h, nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	httpx.PageHeaders(hd, ContentSecurityPolicy)
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")

	var a asset
	switch name, isStatic := strings.CutPrefix(r.URL.Path, "/static/"); {
	case r.URL.Path == "/":
		// The page holds the CSRF token: never cached.
		a = asset{data: h.page, contentType: "text/html; charset=utf-8"}
		hd.Set("Cache-Control", "no-store")
	case isStatic:
		var ok bool
		if a, ok = h.assets[name]; !ok {
			http.NotFound(w, r)
			return
		}
		hd.Set("Cache-Control", "no-cache") // revalidate by ETag: cheap on loopback
		hd.Set("ETag", a.etag)
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hd.Set("Content-Type", a.contentType)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.data))
}
