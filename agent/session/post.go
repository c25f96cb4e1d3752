package session

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/proto/negotiate"
)

// Base checks a test server's URL (http or https, with a host) and returns
// it without a trailing slash, and its host name (the address of a test's
// raw flows when the server names none).
func Base(test, serverURL string) (base, host string, err error) {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", "", fmt.Errorf("%s: bad server URL %q: want http://host:port", test, serverURL)
	}
	return strings.TrimRight(serverURL, "/"), u.Hostname(), nil
}

// PostJSON posts in as JSON to url with the token (none when empty) and
// decodes the 200 answer, at most limit bytes, into out; a refusal is a
// *ProtocolError of op.
func PostJSON(ctx context.Context, client *http.Client, test, op, url, token string, in, out any, limit int64) error {
	req, _, err := httpx.NewJSONRequest(ctx, http.MethodPost, url, in)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set(negotiate.TokenHeader, negotiate.BearerPrefix+token)
	}
	a, err := httpx.FetchJSON(client, req, limit, out)
	switch {
	case a == nil:
		return fmt.Errorf("%s %s: cannot reach the test server: %w", test, op, err)
	case a.Status != http.StatusOK:
		return refusal(test, op, a)
	case errors.Is(err, httpx.ErrNotJSON):
		return &ProtocolError{Test: test, Op: op, Status: a.Status, Msg: "bad answer: " + err.Error()}
	case err != nil:
		return fmt.Errorf("%s %s: %w", test, op, err)
	}
	return nil
}
