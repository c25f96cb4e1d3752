// Package ping is the server side of the ping test (spec/ping.md): it echoes
// the client's WebSocket messages and merges what it saw into the record.
package ping

import (
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/neubot/neubot/internal/tcpinfo"
	spec "github.com/neubot/neubot/proto/ping"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver"
)

var name = testserver.Test(schemas.PingName)

// Provider serves the ping test.
type Provider struct {
	neg      *testserver.Negotiator
	upgrader websocket.Upgrader
}

// view is the server's record of one session.
type view struct {
	mu      sync.Mutex
	echoed  uint32
	rtt     *float64
	running int           // echo connections of the session still open
	idle    chan struct{} // closed when running drops to 0 (made by settle)
}

// settleWait bounds how long Merge waits for the session's echo
// connection to end: the client sends its close frame before it collects,
// but the server may read it, count the last echo and read TCP_INFO after
// the collect request arrived.
const settleWait = 5 * time.Second

func (v *view) begin() {
	v.mu.Lock()
	v.running++
	v.mu.Unlock()
}

func (v *view) end() {
	v.mu.Lock()
	if v.running--; v.running == 0 && v.idle != nil {
		close(v.idle)
		v.idle = nil
	}
	v.mu.Unlock()
}

// settle waits, up to d, until no echo connection of the session is open.
func (v *view) settle(d time.Duration) {
	v.mu.Lock()
	if v.running == 0 {
		v.mu.Unlock()
		return
	}
	if v.idle == nil {
		v.idle = make(chan struct{})
	}
	idle := v.idle
	v.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}

// New is the ping test's constructor in testserver/registry.
func New(env testserver.Env) (testserver.Provider, error) {
	return &Provider{neg: env.Negotiator, upgrader: websocket.Upgrader{
		HandshakeTimeout: spec.Timeout, Subprotocols: []string{spec.SecWebSocketProtocol},
	}}, nil
}

// Spec names the test and its negotiate and collect paths.
func (p *Provider) Spec() testserver.Spec {
	return testserver.Spec{Name: name, NegotiatePath: spec.NegotiatePath, CollectPath: spec.CollectPath, MaxCollectBody: spec.MaxCollectBody}
}

// Routes registers the WebSocket endpoint.
func (p *Provider) Routes(mux testserver.Mux) {
	mux.Handle("GET "+spec.WSPath, http.HandlerFunc(p.echo))
}

// Close releases nothing.
func (p *Provider) Close() error { return nil }

func (p *Provider) echo(w http.ResponseWriter, r *http.Request) {
	s, err := p.neg.AuthorizeTest(r, name)
	if err != nil {
		testserver.Fail(w, testserver.StatusOf(err), "%v", err)
		return
	}
	conn, err := p.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	defer conn.Close()
	conn.SetReadLimit(spec.MaxMessage)
	_ = conn.NetConn().SetDeadline(time.Now().Add(spec.Timeout))
	v := s.View(func() any { return &view{} }).(*view)
	v.begin()
	defer v.end()
	for n := 0; n < spec.MaxCount; n++ {
		kind, msg, err := conn.ReadMessage()
		if err != nil || kind != websocket.TextMessage || conn.WriteMessage(kind, msg) != nil {
			break
		}
		v.mu.Lock()
		v.echoed++
		v.mu.Unlock()
	}
	if info, err := tcpinfo.Read(conn.NetConn()); err == nil {
		rtt := float64(info.RTT) / float64(time.Millisecond)
		v.mu.Lock()
		v.rtt = &rtt
		v.mu.Unlock()
	}
}

// Merge puts the server's view into the client's record.
func (p *Provider) Merge(rec *schemas.Record, s *testserver.Session) error {
	keys, err := testserver.KeysOf[*schemas.Ping](rec, schemas.PingName)
	if err != nil {
		return err
	}
	v := s.View(func() any { return &view{} }).(*view)
	v.settle(settleWait)
	v.mu.Lock()
	defer v.mu.Unlock()
	keys.ServerView = &schemas.PingServer{Echoed: v.echoed, TCPRTTMS: v.rtt}
	return nil
}
