package ping_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/neubot/neubot/agent/ping"
	"github.com/neubot/neubot/agent/plugin/plugintest"
	"github.com/neubot/neubot/proto/negotiate"
	pingspec "github.com/neubot/neubot/proto/ping"
	"github.com/neubot/neubot/proto/speedtest"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver/service"
	"github.com/neubot/neubot/testserver/service/servicetest"
)

// TestPing runs the client against the real test server on loopback:
// negotiation, the pings, collect; the record is the server's merged one.
func TestPing(t *testing.T) {
	_, url := servicetest.Start(t, service.Config{ID: "ts-test"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	e := plugintest.Env(url)
	e.HTTPClient = client
	rec, err := ping.NewMeasurer(ping.Config{Count: 5}).Run(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Validate(time.Now()); err != nil {
		t.Fatalf("invalid record: %v", err)
	}
	k := rec.TestKeys.(*schemas.Ping)
	if len(k.RTTMS) != 5 || k.RTTMinMS <= 0 || k.RTTMedianMS < k.RTTMinMS {
		t.Fatalf("round trips: %+v", k)
	}
	if k.ServerView == nil || k.ServerView.Echoed != 5 || rec.Server.ID != "ts-test" || rec.Server.ClientAddress == "" {
		t.Fatalf("not the server's merged record: server %+v, view %+v", rec.Server, k.ServerView)
	}
}

// TestOtherTestsToken: a token negotiated for the speedtest cannot open the
// ping test's WebSocket (403).
func TestOtherTestsToken(t *testing.T) {
	_, url := servicetest.Start(t, service.Config{ID: "ts-test"})
	defer http.DefaultClient.CloseIdleConnections()
	resp, err := http.Post(url+speedtest.NegotiatePath, "application/json", strings.NewReader(`{"measurement_uid":"`+uuid.NewString()+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	var nr negotiate.Response
	err = json.NewDecoder(resp.Body).Decode(&nr)
	resp.Body.Close()
	if err != nil || !nr.Unchoked {
		t.Fatalf("negotiate: %v %+v", err, nr)
	}
	req, _ := http.NewRequest(http.MethodGet, url+pingspec.WSPath, nil)
	req.Header.Set(negotiate.TokenHeader, negotiate.BearerPrefix+nr.Token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a speedtest token at %s: %s, want 403", pingspec.WSPath, resp.Status)
	}
}
