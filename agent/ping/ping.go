// Package ping is the agent's client of the ping test (spec/ping.md):
// round trips of small WebSocket messages on one connection.
package ping

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/session"
	"github.com/neubot/neubot/proto/negotiate"
	spec "github.com/neubot/neubot/proto/ping"
	"github.com/neubot/neubot/schemas"
)

// Config tunes the client; the zero value follows the specification.
type Config struct {
	Count int // pings (default spec.Count)
}

// Measurer runs ping tests.
type Measurer struct{ cfg Config }

// NewMeasurer returns a ping measurer.
func NewMeasurer(cfg Config) *Measurer {
	if cfg.Count <= 0 || cfg.Count > spec.MaxCount {
		cfg.Count = spec.Count
	}
	return &Measurer{cfg: cfg}
}

// Name implements plugin.Measurer.
func (m *Measurer) Name() string { return schemas.PingName }

// Run implements plugin.Measurer.
func (m *Measurer) Run(ctx context.Context, env plugin.Env) (*schemas.Record, error) {
	base := strings.TrimRight(env.ServerURL, "/")
	client, progress := env.Client(), env.Report
	uid, start := uuid.NewString(), time.Now()
	token, err := session.Slot(ctx, client, schemas.PingName, base+spec.NegotiatePath, uid, progress)
	if err != nil {
		return nil, err
	}
	progress(plugin.Progress{Phase: "ping"})
	keys, err := m.pings(ctx, "ws"+strings.TrimPrefix(base, "http")+spec.WSPath, token)
	if err != nil {
		return nil, err
	}
	rec := &schemas.Record{Envelope: env.Envelope(schemas.PingName, schemas.PingVersion, uid, start), TestKeys: keys}
	progress(plugin.Progress{Phase: "collect"})
	return session.Collect(ctx, client, schemas.PingName, base+spec.CollectPath, token, rec)
}

func (m *Measurer) pings(ctx context.Context, url, token string) (*schemas.Ping, error) {
	d := websocket.Dialer{HandshakeTimeout: spec.Timeout, Subprotocols: []string{spec.SecWebSocketProtocol}}
	conn, resp, err := d.DialContext(ctx, url, http.Header{negotiate.TokenHeader: {negotiate.BearerPrefix + token}})
	if err != nil {
		if resp != nil {
			defer resp.Body.Close()
			return nil, session.Refused(schemas.PingName, spec.WSPath, resp)
		}
		return nil, fmt.Errorf("ping: cannot reach the server: %w", err)
	}
	defer conn.Close()
	_ = conn.NetConn().SetDeadline(time.Now().Add(spec.Timeout))
	keys := &schemas.Ping{}
	for seq := range m.cfg.Count {
		sent := time.Now()
		var echo spec.Message
		if err := conn.WriteJSON(spec.Message{Seq: seq}); err != nil {
			return nil, fmt.Errorf("ping %d: %w", seq, err)
		}
		if err := conn.ReadJSON(&echo); err != nil || echo.Seq != seq {
			return nil, fmt.Errorf("ping %d: echo %d: %v", seq, echo.Seq, err)
		}
		keys.RTTMS = append(keys.RTTMS, math.Round(float64(time.Since(sent).Microseconds()))/1000)
	}
	_ = conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	keys.RTTMinMS, keys.RTTMedianMS = keys.RTTMS[0], schemas.Median(keys.RTTMS)
	for _, rtt := range keys.RTTMS {
		keys.RTTMinMS = min(keys.RTTMinMS, rtt)
	}
	return keys, nil
}
