// Package session is the agent's side of a session with a Neubot test
// server, around the test itself (spec/speedtest.md): negotiation (ask for
// a slot, wait for it in the queue by long polling, honour Retry-After)
// and collect (post the client's record with the token, get the server's
// authoritative one). The speedtest and ndt7 clients share it; only the
// paths differ.
package session

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/proto/negotiate"
	spec "github.com/neubot/neubot/proto/speedtest"
	"github.com/neubot/neubot/schemas"
)

// ProtocolError is returned when a test server refuses a request or
// answers something its protocol does not allow.
type ProtocolError = plugin.ProtocolError

// Refused reads the JSON error of a refused request ({"error": "..."})
// into a *ProtocolError.
func Refused(test, op string, resp *http.Response) error {
	var e negotiate.Error
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(b))
	}
	return &ProtocolError{Test: test, Op: op, Status: resp.StatusCode, Msg: e.Error}
}

// Slot asks url (the test's negotiate endpoint) for a slot for measurement
// uid and waits in the queue until it is unchoked; it returns the live
// token. Progress reports the place in the queue (phase "negotiate").
func Slot(ctx context.Context, client *http.Client, test, url, uid string, progress func(plugin.Progress)) (string, error) {
	progress(plugin.Progress{Phase: "negotiate"})
	token := ""
	for {
		body, _ := json.Marshal(negotiate.Request{Token: token, MeasurementUID: uid})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return "", fmt.Errorf("%s: cannot reach the test server: %w", test, err)
		}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			err := Refused(test, "negotiate", resp)
			resp.Body.Close()
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
		if resp.StatusCode != http.StatusOK {
			err := Refused(test, "negotiate", resp)
			resp.Body.Close()
			return "", err
		}
		var nr negotiate.Response
		err = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&nr)
		resp.Body.Close()
		if err != nil || nr.Token == "" {
			return "", &ProtocolError{Test: test, Op: "negotiate", Status: resp.StatusCode, Msg: "answer without a token"}
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
	body, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(negotiate.TokenHeader, negotiate.BearerPrefix+token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s collect: %w", test, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, Refused(test, "collect", resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, spec.MaxCollectBody))
	if err != nil {
		return nil, err
	}
	merged, err := schemas.DecodeRecord(bytes.TrimSpace(b), time.Now())
	if err != nil {
		return nil, fmt.Errorf("%s collect: the server's record is invalid: %w", test, err)
	}
	if merged.MeasurementUID != rec.MeasurementUID {
		return nil, &ProtocolError{Test: test, Op: "collect", Status: resp.StatusCode, Msg: "record of another measurement"}
	}
	return merged, nil
}
