// Package webtest holds the HTTP client side of the tests: a request is
// sent over a real socket, its error fails the test, and the answer is read
// whole (bounded) and closed, so that no test leaves a connection behind
// for goleak to find.
package webtest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/neubot/neubot/internal/httpx"
)

// MaxBody bounds what a test reads of an answer.
const MaxBody = 32 << 20

// Client is the client of Do and Get: the default transport, with a
// timeout, so that a test against a server that hangs fails instead.
var Client = &http.Client{Timeout: time.Minute}

// Do sends req with Client (c, when given) and returns the status and the
// body; an error sending it or reading the answer fails the test.
func Do(t testing.TB, req *http.Request, c ...*http.Client) (int, []byte) {
	t.Helper()
	client := Client
	if len(c) > 0 {
		client = c[0]
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", req.Method, req.URL, err)
	}
	return resp.StatusCode, b
}

// Get GETs url and returns the status and the body.
func Get(t testing.TB, url string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return Do(t, req)
}

// GetOK GETs url and returns the body; a status other than 200 fails the
// test.
func GetOK(t testing.TB, url string) []byte {
	t.Helper()
	code, b := Get(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d: %.300s", url, code, b)
	}
	return b
}

// GetJSON GETs url and decodes its 200 answer into v.
func GetJSON(t testing.TB, url string, v any) {
	t.Helper()
	if err := json.Unmarshal(GetOK(t, url), v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// Serve serves h on a free loopback port and returns its base URL (no
// trailing slash). run, when set, runs in a goroutine until the test ends;
// then the server shuts down, run is stopped and waited for, and closer
// (when set) is called: an error it returns fails the test.
func Serve(t testing.TB, h http.Handler, run func(context.Context), closer func() error) string {
	t.Helper()
	srv, err := httpx.Listen("127.0.0.1:0", h, nil)
	if err != nil {
		if closer != nil {
			closer()
		}
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if run != nil {
			run(ctx)
		}
	}()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		cancel()
		<-done
		if closer != nil {
			if err := closer(); err != nil {
				t.Error(err)
			}
		}
	})
	return srv.URL()
}
