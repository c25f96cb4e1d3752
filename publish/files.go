package publish

import (
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// datasetFiles serves a datasets tree read-only, with Range requests and a
// strong ETag: a data file's sha256 from its manifest (so a client can
// check a download against the manifest by its ETag alone), else size and
// modification time. Files are only replaced by rename, never rewritten in
// place, so a validator never names changed bytes.
func datasetFiles(root, prefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if root == "" {
			http.NotFound(w, r)
			return
		}
		rel := path.Clean("/" + strings.TrimPrefix(r.URL.Path, prefix))
		if strings.Contains(rel, "/.") { // temporary files of a running export
			http.NotFound(w, r)
			return
		}
		name := filepath.Join(root, filepath.FromSlash(rel))
		f, err := os.Open(name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || fi.IsDir() {
			http.NotFound(w, r)
			return
		}
		etag := fmt.Sprintf(`"%x-%x"`, fi.Size(), fi.ModTime().UnixNano())
		if m, err := readManifest(filepath.Join(filepath.Dir(name), "manifest.json")); err == nil {
			for _, x := range m.Files {
				if x.Name == fi.Name() && x.Bytes == fi.Size() {
					etag = `"sha256-` + x.SHA256 + `"`
				}
			}
		}
		h := w.Header()
		h.Set("ETag", etag)
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("X-Content-Type-Options", "nosniff")
		switch {
		case strings.HasSuffix(name, ".parquet"):
			h.Set("Content-Type", "application/vnd.apache.parquet")
		case strings.HasSuffix(name, ".csv.gz"):
			// The bytes as stored: a gzip file, not a compressed response.
			h.Set("Content-Type", "application/gzip")
		case strings.HasSuffix(name, ".json"), strings.HasSuffix(name, ".json.sig"):
			h.Set("Content-Type", "application/json")
		}
		if strings.HasSuffix(name, "index.json") || strings.HasSuffix(name, "manifest.json") || strings.HasSuffix(name, ".sig") {
			h.Set("Cache-Control", "public, max-age=300")
		} else {
			h.Set("Cache-Control", "public, max-age=86400")
		}
		// No deadline for the whole response (a day's Parquet can take
		// hours on a slow line); each write gets its own instead, so a
		// client that stops reading is still cut. An interrupted download
		// resumes with Range (and If-Range on the ETag).
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Time{})
		http.ServeContent(&writeDeadline{ResponseWriter: w, rc: rc, each: PerWriteTimeout}, r, fi.Name(), fi.ModTime(), f)
	})
}

// PerWriteTimeout bounds each write of a dataset download: a client that
// reads nothing for that long is cut (it may resume with Range).
var PerWriteTimeout = time.Minute

// writeDeadline sets a write deadline before every write of at most 256
// KiB, in place of the server's deadline for the whole response.
type writeDeadline struct {
	http.ResponseWriter
	rc   *http.ResponseController
	each time.Duration
}

func (w *writeDeadline) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n := min(len(p)-done, 256<<10)
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.each))
		k, err := w.ResponseWriter.Write(p[done : done+n])
		done += k
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *writeDeadline) Unwrap() http.ResponseWriter { return w.ResponseWriter }
