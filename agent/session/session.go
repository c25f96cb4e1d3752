// Package session is the agent's side of a session with a Neubot test
// server, around the test itself (spec/speedtest.md): negotiation (ask for
// a slot, wait for it in the queue by long polling, honour Retry-After)
// and collect (post the client's record with the token, get the server's
// authoritative one). Every client shares it; only the paths differ. The
// tests that run raw TCP flows (bittorrent, replay) also share how a flow
// is dialled and which hosts it may go to (flow.go).
package session

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/proto/negotiate"
	spec "github.com/neubot/neubot/proto/speedtest"
	"github.com/neubot/neubot/schemas"
)

// ProtocolError is returned when a test server refuses a request or
// answers something its protocol does not allow.
type ProtocolError = plugin.ProtocolError

// Refused reads the JSON error of a refused request ({"error": "..."})
// into a *ProtocolError, and closes resp's body.
func Refused(test, op string, resp *http.Response) error {
	a, _ := httpx.Read(resp, maxRefusal)
	return refusal(test, op, a)
}

// maxRefusal bounds the text of a refusal.
const maxRefusal = 4096

// refusal is the *ProtocolError of a refused request's answer.
func refusal(test, op string, a *httpx.Answer) error {
	if len(a.Body) > maxRefusal {
		a = &httpx.Answer{Status: a.Status, Body: a.Body[:maxRefusal]}
	}
	return &ProtocolError{Test: test, Op: op, Status: a.Status, Msg: a.ErrorText()}
}

// Slot asks url (the test's negotiate endpoint) for a slot for measurement
// uid and waits in the queue until it is unchoked; it returns the live
// token. Progress reports the place in the queue (phase "negotiate").
func Slot(ctx context.Context, client *http.Client, test, url, uid string, progress func(plugin.Progress)) (string, error) {
	progress(plugin.Progress{Phase: "negotiate"})
	token := ""
	for {
		req, _, err := httpx.NewJSONRequest(ctx, http.MethodPost, url, negotiate.Request{Token: token, MeasurementUID: uid})
		if err != nil {
			return "", err
		}
		a, err := httpx.Fetch(client, req, maxRefusal)
		if a == nil {
			return "", fmt.Errorf("%s: cannot reach the test server: %w", test, err)
		}
		if a.Status == http.StatusTooManyRequests || a.Status == http.StatusServiceUnavailable {
			wait := a.RetryAfter()
			err := refusal(test, "negotiate", a)
			if wait <= 0 || wait > 60 {
				return "", err
			}
			progress(plugin.Progress{Phase: "negotiate", Message: fmt.Sprintf("server busy, retrying in %d s", wait)})
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(time.Duration(wait) * time.Second):
			}
			continue
		}
		if a.Status != http.StatusOK {
			return "", refusal(test, "negotiate", a)
		}
		var nr negotiate.Response
		if err != nil || json.Unmarshal(a.Body, &nr) != nil || nr.Token == "" {
			return "", &ProtocolError{Test: test, Op: "negotiate", Status: a.Status, Msg: "answer without a token"}
		}
		token = nr.Token
		if nr.Unchoked {
			return token, nil
		}
		progress(plugin.Progress{Phase: "negotiate", QueuePos: nr.QueuePos, Message: fmt.Sprintf("waiting, %d ahead", nr.QueuePos)})
	}
}

// Collect posts rec to url (the test's collect endpoint) with the token
// and returns the server's authoritative record of the same measurement.
func Collect(ctx context.Context, client *http.Client, test, url, token string, rec *schemas.Record) (*schemas.Record, error) {
	req, _, err := httpx.NewJSONRequest(ctx, http.MethodPost, url, rec)
	if err != nil {
		return nil, err
	}
	req.Header.Set(negotiate.TokenHeader, negotiate.BearerPrefix+token)
	// The merged record comes back gzip'ed: 15 kB at 300 ms of RTT, more
	// than a congestion window restarted after the test (14.5 kB), took a
	// round trip more than 4 kB.
	req.Header.Set("Accept-Encoding", "gzip")
	a, err := httpx.Fetch(client, req, spec.MaxCollectBody)
	switch {
	case a == nil:
		return nil, fmt.Errorf("%s collect: %w", test, err)
	case a.Status != http.StatusOK:
		return nil, refusal(test, "collect", a)
	case err != nil:
		return nil, err
	}
	merged, err := schemas.DecodeRecord(bytes.TrimSpace(a.Body), time.Now())
	if err != nil {
		return nil, fmt.Errorf("%s collect: the server's record is invalid: %w", test, err)
	}
	if merged.MeasurementUID != rec.MeasurementUID {
		return nil, &ProtocolError{Test: test, Op: "collect", Status: a.Status, Msg: "record of another measurement"}
	}
	return merged, nil
}
