package httpx

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// WriteJSON answers with status code and v as JSON: the one JSON reply of
// Neubot's servers. v is encoded first, so that a value that cannot be
// encoded is a clean 503 (never a truncated 200 that a cache would keep);
// the answer is "Cache-Control: no-store" unless the handler set a policy,
// and is not HTML-escaped.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	h := w.Header()
	if err := enc.Encode(v); err != nil {
		code = http.StatusServiceUnavailable
		b.Reset()
		b.WriteString(`{"error":"the answer could not be encoded"}` + "\n")
		h.Set("Cache-Control", "no-store")
	}
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-store")
	}
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes())
}

// SameOrigin says whether r comes from a page of the site it asks (its
// Origin's host is its Host, in any case), or from a client that is not a
// browser (no Origin): the check that keeps other sites' pages from using
// an endpoint from their visitors' browsers.
func SameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// PageHeaders sets the headers every web page of the project is served
// with: its Content-Security-Policy csp, no MIME sniffing, no framing and
// no referrer.
func PageHeaders(h http.Header, csp string) {
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}
