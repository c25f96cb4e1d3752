package httpx_test

import (
	"context"
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
