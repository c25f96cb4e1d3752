package httpx_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/looptest"
)

func TestFetch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "not JSON", http.StatusUnsupportedMediaType)
			return
		}
		switch r.URL.Path {
		case "/refuse":
			w.Header().Set("Retry-After", "7")
			httpx.WriteJSON(w, http.StatusTooManyRequests, map[string]string{"error": "slow down"})
		case "/long":
			w.Write([]byte(strings.Repeat("x", 100)))
		case "/broken":
			w.Header().Set("Content-Length", "100")
			w.Write([]byte("short"))
		default:
			w.Write([]byte(`{"ok":true}`))
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	fetch := func(path string, limit int64) (*httpx.Answer, error) {
		t.Helper()
		req, body, err := httpx.NewJSONRequest(ctx, http.MethodPost, srv.URL+path, map[string]int{"n": 1})
		if err != nil || string(body) != `{"n":1}` {
			t.Fatalf("NewJSONRequest: %q, %v", body, err)
		}
		return httpx.Fetch(srv.Client(), req, limit)
	}

	a, err := fetch("/", 100)
	if err != nil || a.Status != http.StatusOK || string(a.Body) != `{"ok":true}` || a.Truncated {
		t.Errorf("plain answer: %+v, %v", a, err)
	}
	a, err = fetch("/refuse", 100)
	if err != nil || a.Status != http.StatusTooManyRequests || a.ErrorText() != "slow down" ||
		a.RetryAfter() != 7 || a.StatusLine() != "429 Too Many Requests" {
		t.Errorf("refusal: %+v (%q, %q), %v", a, a.ErrorText(), a.StatusLine(), err)
	}
	a, err = fetch("/long", 10)
	if err != nil || !a.Truncated || string(a.Body) != strings.Repeat("x", 10) || a.ErrorText() != strings.Repeat("x", 10) {
		t.Errorf("long answer: %+v, %v", a, err)
	}
	a, err = fetch("/long", 100)
	if err != nil || a.Truncated || len(a.Body) != 100 {
		t.Errorf("answer of exactly the limit: %+v, %v", a, err)
	}
	a, err = fetch("/broken", 1000)
	if a == nil || err == nil || string(a.Body) != "short" || !strings.Contains(err.Error(), "broke off") {
		t.Errorf("broken answer: %+v, %v", a, err)
	}

	fetchJSON := func(path string) (*httpx.Answer, error) {
		t.Helper()
		req, _, _ := httpx.NewJSONRequest(ctx, http.MethodPost, srv.URL+path, nil)
		var v struct{ OK bool }
		a, err := httpx.FetchJSON(srv.Client(), req, 1000, &v)
		if err == nil && !v.OK {
			t.Errorf("FetchJSON %s decoded %+v", path, v)
		}
		return a, err
	}
	var refused *httpx.StatusError
	if a, err := fetchJSON("/"); err != nil || a.RetryAfter() != 0 {
		t.Errorf("FetchJSON of a JSON answer: %+v, %v", a, err)
	}
	if a, err := fetchJSON("/refuse"); !errors.As(err, &refused) || refused.Answer != a || !strings.HasSuffix(err.Error(), "/refuse answered 429 Too Many Requests") {
		t.Errorf("FetchJSON of a refusal: %+v, %v", a, err)
	}
	if _, err := fetchJSON("/long"); !errors.Is(err, httpx.ErrNotJSON) {
		t.Errorf("FetchJSON of an answer that is not JSON: %v", err)
	}

	req, _, err := httpx.NewJSONRequest(ctx, http.MethodPost, "http://"+looptest.ClosedAddr(t).String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := httpx.Fetch(http.DefaultClient, req, 10); a != nil || err == nil {
		t.Errorf("unreachable server: %+v, %v", a, err)
	}
	if _, _, err := httpx.NewJSONRequest(ctx, http.MethodPost, srv.URL, func() {}); err == nil {
		t.Error("a value JSON cannot encode made a request")
	}
}

// TestGzipAnswers: WriteJSONFor gzip's a long answer for a client that
// asks for it (and only then), Fetch decodes it on a transport that does
// not, and bounds what it decodes to: a small gzip of many megabytes of
// zeros is cut at the limit.
func TestGzipAnswers(t *testing.T) {
	long := map[string]string{"pad": strings.Repeat("0123456789", 500)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/short":
			httpx.WriteJSONFor(w, r, http.StatusOK, map[string]int{"n": 1})
		case "/bomb":
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			zw.Write(make([]byte, 8<<20))
			zw.Close()
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(z.Bytes())
		default:
			httpx.WriteJSONFor(w, r, http.StatusOK, long)
		}
	}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	get := func(path, accept string, limit int64) (*httpx.Answer, string, error) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if accept != "" {
			req.Header.Set("Accept-Encoding", accept)
		}
		var wire string
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		wire = resp.Header.Get("Content-Encoding")
		a, err := httpx.Read(resp, limit)
		return a, wire, err
	}
	want, _ := json.Marshal(long)
	for _, c := range []struct {
		path, accept, wire string
	}{
		{"/long", "gzip", "gzip"},
		{"/long", "br, gzip;q=0.5", "gzip"},
		{"/long", "gzip;q=0", ""},
		{"/long", "", ""},
		{"/short", "gzip", ""},
	} {
		a, wire, err := get(c.path, c.accept, 1<<20)
		if err != nil || a.Status != http.StatusOK || wire != c.wire {
			t.Fatalf("%s with %q: status %d, Content-Encoding %q, %v; want 200, %q", c.path, c.accept, a.Status, wire, err, c.wire)
		}
		if c.path == "/long" && strings.TrimSpace(string(a.Body)) != string(want) {
			t.Fatalf("%s with %q: the body is not the answer: %.60q", c.path, c.accept, a.Body)
		}
		if a.Header.Get("Content-Encoding") != "" || !strings.Contains(a.Header.Get("Vary"), "Accept-Encoding") {
			t.Fatalf("%s: headers %v", c.path, a.Header)
		}
	}
	a, wire, err := get("/bomb", "gzip", 1<<20)
	if err != nil || wire != "gzip" || !a.Truncated || len(a.Body) != 1<<20 {
		t.Fatalf("bomb: %d bytes, truncated %v, %v; want 1 MiB, truncated", len(a.Body), a.Truncated, err)
	}
}
