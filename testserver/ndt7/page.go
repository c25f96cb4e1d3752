package ndt7

import (
	"bytes"
	"embed"
	"encoding/json"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/neubot/neubot/internal/httpx"
	spec "github.com/neubot/neubot/proto/ndt7"
	"github.com/neubot/neubot/schemas"
)

// The browser test page: static/index.html, its script and style, and
// M-Lab's JavaScript ndt7 client (the npm package @m-lab/ndt7), which
// scripts/setup copies into static/vendor/ (not committed), all embedded.
// The page asks for consent, gets a token from the locate-style endpoint,
// runs the library's download and upload with it, then posts a record of
// test_name ndt7-browser to collect.

//go:embed static
var embedded embed.FS

// Library files under static/vendor/.
const (
	libraryFile    = "vendor/ndt7.js"
	libraryPackage = "vendor/package.json"
)

// contentSecurityPolicy: everything from this server only. 'self' also
// allows WebSocket connections to this server's host and port (CSP level
// 3), which the library's workers open.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; worker-src 'self'; object-src 'none'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

var contentTypes = map[string]string{
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".json": "application/json",
}

// pageConfig is handed to the page's script in a <meta> tag.
type pageConfig struct {
	TestName       string `json:"test_name"`
	TestVersion    string `json:"test_version"`
	SchemaVersion  int    `json:"schema_version"`
	Library        string `json:"library"`
	LibraryVersion string `json:"library_version"`
	ServerVersion  string `json:"server_version"`
	LocatePath     string `json:"locate_path"`
	CollectPath    string `json:"collect_path"`
}

type page struct {
	html   []byte
	assets map[string][]byte
	ready  bool // the library is installed
}

func pageHandler(version string) http.Handler {
	sub, err := fs.Sub(embedded, "static")
	if err != nil {
		panic(err)
	}
	p := &page{assets: map[string][]byte{}}
	err = fs.WalkDir(sub, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if _, ok := contentTypes[path.Ext(name)]; ok || path.Base(name) == "LICENSE" {
			p.assets[name], err = fs.ReadFile(sub, name)
		}
		return err
	})
	if err != nil {
		panic("ndt7: the embedded page is broken: " + err.Error())
	}
	var pkg struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	_ = json.Unmarshal(p.assets[libraryPackage], &pkg)
	_, p.ready = p.assets[libraryFile]
	cfg, _ := json.Marshal(pageConfig{
		TestName: schemas.NDT7BrowserName, TestVersion: schemas.NDT7Version, SchemaVersion: schemas.SchemaVersion,
		// agent.software is a name of the safe alphabet (no leading @: a
		// spreadsheet formula sign); an npm scope loses its @.
		Library: strings.TrimPrefix(pkg.Name, "@"), LibraryVersion: pkg.Version, ServerVersion: version,
		LocatePath: spec.LocatePath, CollectPath: spec.CollectPath,
	})
	tmpl := template.Must(template.ParseFS(sub, "index.html"))
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, struct {
		Config string
		Ready  bool
	}{string(cfg), p.ready}); err != nil {
		panic("ndt7: the embedded page is broken: " + err.Error())
	}
	p.html = buf.Bytes()
	return p
}

func (p *page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	httpx.PageHeaders(h, contentSecurityPolicy)
	h.Set("Cache-Control", "no-cache")
	if r.URL.Path == spec.PagePath {
		h.Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(p.html)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, spec.PagePath+"static/")
	data, ok := p.assets[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	ct := contentTypes[path.Ext(name)]
	if ct == "" {
		ct = "text/plain; charset=utf-8"
	}
	h.Set("Content-Type", ct)
	_, _ = w.Write(data)
}
