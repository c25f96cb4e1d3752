package agent_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/neubot/neubot/agent"
	"github.com/neubot/neubot/internal/webtest"
)

// TestRemotePassword: with --allow-remote's password, every request needs
// it, whatever its Host (so GET / with a forged Host no longer hands out
// the CSRF token); the right one opens the API; guessing is rate limited.
func TestRemotePassword(t *testing.T) {
	a, err := agent.New(agent.Options{StateDir: t.TempDir(), RemotePassword: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	get := func(path, host, password string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Host = host
		if password != "" {
			req.SetBasicAuth("volunteer", password)
		}
		code, b := webtest.Do(t, req)
		return code, string(b)
	}
	code, body := get("/", "localhost", "")
	if code != http.StatusUnauthorized || strings.Contains(body, a.CSRFToken()) {
		t.Fatalf("GET / with Host localhost and no password: %d, token leaked: %v", code, strings.Contains(body, a.CSRFToken()))
	}
	if code, _ := get("/api/v1/status", "192.0.2.10:9774", "correct horse battery"); code != http.StatusOK {
		t.Fatalf("right password from another machine's Host: %d", code)
	}
	if code, body := get("/", "192.0.2.10:9774", "correct horse battery"); code != http.StatusOK || !strings.Contains(body, a.CSRFToken()) {
		t.Fatalf("web UI with the password: %d", code)
	}
	last := 0
	for range 8 {
		last, _ = get("/api/v1/status", "localhost", "wrong password!")
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("8 wrong passwords: last answer %d, want 429", last)
	}
}
