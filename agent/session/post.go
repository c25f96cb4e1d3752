package session

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

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
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set(negotiate.TokenHeader, negotiate.BearerPrefix+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: cannot reach the test server: %w", test, op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Refused(test, op, resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return fmt.Errorf("%s %s: %w", test, op, err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return &ProtocolError{Test: test, Op: op, Status: resp.StatusCode, Msg: "bad answer: " + err.Error()}
	}
	return nil
}
