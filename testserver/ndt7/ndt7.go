// Package ndt7 is the server side of ndt7 (spec/ndt7.md): the download and
// upload subtests of M-Lab's ndt7 specification over WebSocket, with
// periodic measurement messages (AppInfo, TCPInfo, ConnectionInfo, Origin,
// Test), plus what Neubot adds around them: the token of the negotiator
// (as the access_token parameter), a locate-style answer that hands stock
// ndt7 clients a token, collect, which merges the client's record with the
// server's view into the authoritative record, and a browser test page.
package ndt7

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/tcpinfo"
	spec "github.com/neubot/neubot/proto/ndt7"
	"github.com/neubot/neubot/proto/negotiate"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver"
)

// Provider serves ndt7.
type Provider struct {
	testserver.Env
	// OnSubtest is told of every finished subtest, for metrics: its kind
	// (download, upload), whether it ended normally and whether it ran
	// under a token.
	OnSubtest func(kind string, ok, tokened bool)
	// Duration of each subtest (default spec.DefaultDuration); shorter in
	// tests and, by a flag, on a server that must spare its capacity.
	Duration time.Duration
	// AllowUntokened lets an upgrade without a token run when a slot is
	// free at once, as a session of its own. Such a test makes no record:
	// its client gave no consent. For stock clients on loopback.
	AllowUntokened bool

	upgrader websocket.Upgrader
	random   []byte // payload of the download's binary messages
}

// New is ndt7's constructor in testserver/registry; it counts the subtests
// in env.Metrics.
func New(env testserver.Env) (testserver.Provider, error) {
	subtests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "neubot_testserver_ndt7_subtests_total",
		Help: "ndt7 subtests finished, by test (download, upload), result (ok, failed) and access (token, untokened).",
	}, []string{"test", "result", "access"})
	if env.Metrics != nil {
		if err := env.Metrics.Register(subtests); err != nil {
			return nil, err
		}
	}
	return NewProvider(Provider{
		Env: env, Duration: env.Settings.NDT7Duration, AllowUntokened: env.Settings.NDT7AllowUntokened,
		OnSubtest: func(kind string, ok, tokened bool) {
			result, access := "ok", "token"
			if !ok {
				result = "failed"
			}
			if !tokened {
				access = "untokened"
			}
			subtests.WithLabelValues(kind, result, access).Inc()
		},
	}), nil
}

// name is the test's name, the class of its tokens.
var name = testserver.Test(schemas.NDT7Name)

// Spec names the test and its negotiate and collect paths.
func (p *Provider) Spec() testserver.Spec {
	return testserver.Spec{Name: name, NegotiatePath: spec.NegotiatePath, CollectPath: spec.CollectPath, MaxCollectBody: spec.MaxCollectBody}
}

// Close releases nothing: ndt7 holds nothing beyond its requests.
func (p *Provider) Close() error { return nil }

// NewProvider returns a provider ready to serve.
func NewProvider(p Provider) *Provider {
	p.Env = p.Env.WithDefaults()
	if p.OnSubtest == nil {
		p.OnSubtest = func(string, bool, bool) {}
	}
	if p.Duration <= 0 {
		p.Duration = spec.DefaultDuration
	}
	p.random = make([]byte, spec.MaxScaledMessageSize)
	if _, err := rand.Read(p.random); err != nil {
		panic("ndt7: no randomness: " + err.Error())
	}
	p.upgrader = websocket.Upgrader{
		HandshakeTimeout: spec.HandshakeTimeout,
		ReadBufferSize:   64 << 10,
		WriteBufferSize:  64 << 10,
		Subprotocols:     []string{spec.SecWebSocketProtocol},
		CheckOrigin:      httpx.SameOrigin, // a page of another site may not run tests from its visitors' browsers
	}
	return &p
}

// Routes registers the endpoints on mux.
func (p *Provider) Routes(mux testserver.Mux) {
	mux.Handle("GET "+spec.DownloadPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.subtest(w, r, spec.TestDownload) }))
	mux.Handle("GET "+spec.UploadPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.subtest(w, r, spec.TestUpload) }))
	mux.Handle("GET "+spec.LocatePath, http.HandlerFunc(p.locate))
	page := pageHandler(p.Version)
	mux.Handle("GET "+spec.PagePath, page)
	mux.Handle("GET "+spec.PagePath+"static/", page)
}

// view is the server's record of one session's subtests.
type view struct {
	mu       sync.Mutex
	running  int             // subtests not yet stored below
	idle     chan struct{}   // closed when running drops to 0
	started  map[string]bool // guarded by mu, like the rest
	download *schemas.NDT7ServerSubtest
	upload   *schemas.NDT7ServerSubtest
}

func viewOf(s *testserver.Session) *view {
	return s.View(func() any { return &view{started: map[string]bool{}} }).(*view)
}

var fail = testserver.Fail

// session finds the session of an upgrade request: its access_token, or
// an Authorization header, or (AllowUntokened) a session made for it alone,
// which the caller releases (implicit is true).
func (p *Provider) session(r *http.Request, q url.Values) (s *testserver.Session, implicit bool, code int, err error) {
	tok := q.Get(spec.AccessTokenParam)
	if tok == "" {
		tok, _ = strings.CutPrefix(r.Header.Get(negotiate.TokenHeader), negotiate.BearerPrefix)
	}
	if tok != "" {
		s, err := p.Negotiator.AuthorizeToken(tok)
		if err == nil && s.Test != name {
			err = testserver.ErrUnknownToken // another test's token
		}
		if err != nil {
			return nil, false, testserver.StatusOf(err), err
		}
		return s, false, 0, nil
	}
	if !p.AllowUntokened {
		return nil, false, http.StatusUnauthorized, fmt.Errorf("no %s: ask %s or %s for one", spec.AccessTokenParam, spec.NegotiatePath, spec.LocatePath)
	}
	n, err := p.Negotiator.NegotiateTest(r.Context(), name, "", "", httpx.ClientAddr(r, false))
	if err != nil {
		return nil, false, testserver.StatusOf(err), err
	}
	if !n.Unchoked {
		p.Negotiator.Withdraw(n.Session)
		return nil, false, http.StatusServiceUnavailable, errors.New("no free slot now: try again later")
	}
	return n.Session, true, 0, nil
}

// subtest upgrades the request and runs the download or the upload.
func (p *Provider) subtest(w http.ResponseWriter, r *http.Request, kind string) {
	if !websocket.IsWebSocketUpgrade(r) {
		fail(w, http.StatusBadRequest, "ndt7 needs a WebSocket upgrade")
		return
	}
	if !hasSubprotocol(r) {
		fail(w, http.StatusBadRequest, "the WebSocket subprotocol must be %s", spec.SecWebSocketProtocol)
		return
	}
	if !httpx.SameOrigin(r) {
		// Before the token is looked at, so that a refused page cannot
		// use up a visitor's subtest.
		fail(w, http.StatusForbidden, "upgrades from pages of other sites are not allowed")
		return
	}
	if len(r.URL.RawQuery) > spec.MaxQueryBytes {
		fail(w, http.StatusBadRequest, "query string over %d bytes", spec.MaxQueryBytes)
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		fail(w, http.StatusBadRequest, "query string: %v", err)
		return
	}
	s, implicit, code, err := p.session(r, q)
	if err != nil {
		if code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "5")
		}
		fail(w, code, "%v", err)
		return
	}
	if implicit {
		defer p.Negotiator.Release(s)
	}
	v := viewOf(s)
	v.mu.Lock()
	again := v.started[kind]
	v.started[kind] = true
	if !again {
		v.running++
	}
	v.mu.Unlock()
	if again {
		fail(w, http.StatusConflict, "this token already ran a %s", kind)
		return
	}
	defer func() {
		v.mu.Lock()
		if v.running--; v.running == 0 && v.idle != nil {
			close(v.idle)
			v.idle = nil
		}
		v.mu.Unlock()
	}()
	// The subtest may last up to its hard deadline, and the client then
	// needs time for the next subtest's handshake or for collect.
	p.Negotiator.Extend(s, p.Duration+3*time.Second+spec.HandshakeTimeout)
	conn, err := p.upgrader.Upgrade(w, r, http.Header{})
	if err != nil {
		return // the upgrader answered the client
	}
	defer conn.Close()
	// The session's caps and its revocation reach into the transfer: a
	// revoked token's connection gets a deadline in the past.
	done, err := p.Negotiator.Begin(s, func() { _ = conn.NetConn().SetDeadline(time.Now()) })
	if err != nil {
		msg := websocket.FormatCloseMessage(websocket.ClosePolicyViolation, err.Error())
		_ = conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		return
	}
	defer done()
	// The HTTP server's deadlines may still be set on the connection:
	// a subtest sets its own.
	start := time.Now()
	hard := start.Add(p.Duration + 3*time.Second)
	_ = conn.NetConn().SetDeadline(hard)
	t := &test{p: p, s: s, conn: conn, kind: kind, start: start, uuid: uuid.NewString()}
	t.info = &spec.ConnectionInfo{Client: conn.RemoteAddr().String(), Server: conn.LocalAddr().String(), UUID: t.uuid, StartTime: start}
	var failure error
	if kind == spec.TestDownload {
		failure = t.download()
	} else {
		failure = t.upload()
	}
	sv := t.result()
	p.OnSubtest(kind, failure == nil, !implicit)
	if failure != nil {
		// The specification: log it as a warning and record it; what was
		// measured before it is kept.
		p.Logger.Warn("ndt7 subtest ended early", "test", kind, "uuid", t.uuid, "err", failure)
		sv.Failure = spec.Failure(failure)
	}
	if implicit {
		p.Logger.Info("ndt7 untokened subtest done; no record (no consent)", "test", kind, "mbps", sv.GoodputMbps)
		return
	}
	v.mu.Lock()
	if kind == spec.TestDownload {
		v.download = sv
	} else {
		v.upload = sv
	}
	v.mu.Unlock()
}

func hasSubprotocol(r *http.Request) bool {
	for _, p := range websocket.Subprotocols(r) {
		if p == spec.SecWebSocketProtocol {
			return true
		}
	}
	return false
}

// test is one running subtest.
type test struct {
	p     *Provider
	s     *testserver.Session
	conn  *websocket.Conn
	kind  string
	start time.Time
	uuid  string
	info  *spec.ConnectionInfo

	bytes     atomic.Int64 // payload sent (download) or received (upload)
	maxMsg    atomic.Int64
	clientMsg atomic.Int64
	lastTCP   *tcpinfo.Info
	lastAt    time.Duration
}

// measurement is the server's measurement message now.
func (t *test) measurement() spec.Measurement {
	el := time.Since(t.start)
	m := spec.Measurement{
		AppInfo:        &spec.AppInfo{ElapsedTime: el.Microseconds(), NumBytes: t.bytes.Load()},
		ConnectionInfo: t.info,
		Origin:         spec.OriginServer,
		Test:           t.kind,
	}
	if info, err := tcpinfo.Read(t.conn.NetConn()); err == nil {
		t.lastTCP, t.lastAt = &info, el
		m.TCPInfo = specTCPInfo(info, el)
	}
	return m
}

// specTCPInfo is info as the specification's TCPInfo, read at elapsed.
func specTCPInfo(info tcpinfo.Info, elapsed time.Duration) *spec.TCPInfo {
	us := func(d time.Duration) *int64 { v := d.Microseconds(); return &v }
	n := func(x uint64) *int64 { v := int64(min(x, 1<<53-1)); return &v }
	return &spec.TCPInfo{
		BusyTime: us(info.BusyTime), BytesAcked: n(info.BytesAcked), BytesReceived: n(info.BytesRecv),
		BytesSent: n(info.BytesSent), BytesRetrans: n(info.BytesRetrans), ElapsedTime: us(elapsed),
		MinRTT: us(info.MinRTT), RTT: us(info.RTT), RTTVar: us(info.RTTVar),
		RWndLimited: us(info.RWndLimited), SndBufLimited: us(info.SndBufLimited),
	}
}

func (t *test) sendMeasurement() error {
	b, err := json.Marshal(t.measurement())
	if err != nil {
		return err
	}
	return t.conn.WriteMessage(websocket.TextMessage, b)
}

// readClient reads what the client sends until the connection ends:
// measurement messages always, binary messages only when binaryOK (the
// upload). It returns nil on a normal close.
func (t *test) readClient(binaryOK bool) error {
	buf := make([]byte, 64<<10)
	for {
		typ, r, err := t.conn.NextReader()
		if err != nil {
			if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived) {
				return nil
			}
			return err
		}
		switch typ {
		case websocket.BinaryMessage:
			if !binaryOK {
				return fmt.Errorf("%w: the client sent a binary message during the download", schemas.ErrProtocol)
			}
			var n int64
			for {
				k, err := r.Read(buf)
				n += int64(k)
				t.bytes.Add(int64(k))
				t.p.OnBytes(0, int64(k))
				if cerr := t.p.Negotiator.Count(t.s, int64(k)); cerr != nil {
					return cerr
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					return err
				}
			}
			if n > t.maxMsg.Load() {
				t.maxMsg.Store(n)
			}
		case websocket.TextMessage:
			b, err := io.ReadAll(io.LimitReader(r, spec.MaxTextMessageSize+1))
			if err != nil {
				return err
			}
			if _, err := spec.DecodeMeasurement(b); err != nil {
				return err
			}
			t.clientMsg.Add(1)
		}
	}
}

// closeAndWait starts the closing handshake and waits briefly for the
// client's answer (the reader ending), as RFC 6455 wants.
func (t *test) closeAndWait(readerDone <-chan error) error {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = t.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	select {
	case err := <-readerDone:
		return err
	case <-time.After(2 * time.Second):
		return nil
	}
}

// download sends binary messages of growing size for the duration, with
// a measurement message every spec.MeasureEvery.
func (t *test) download() error {
	t.conn.SetReadLimit(spec.MaxTextMessageSize)
	readerDone := make(chan error, 1)
	go func() { readerDone <- t.readClient(false) }()
	size := spec.InitialMessageSize
	msg, err := websocket.NewPreparedMessage(websocket.BinaryMessage, t.p.random[:size])
	if err != nil {
		return err
	}
	next := time.Now().Add(spec.MeasureEvery)
	for time.Since(t.start) < t.p.Duration {
		select {
		case err := <-readerDone:
			if err == nil {
				err = errors.New("the client closed the connection early")
			}
			return err
		default:
		}
		if err := t.conn.WritePreparedMessage(msg); err != nil {
			return err
		}
		total := t.bytes.Add(int64(size))
		t.p.OnBytes(int64(size), 0)
		if err := t.p.Negotiator.Count(t.s, int64(size)); err != nil {
			return err
		}
		t.maxMsg.Store(int64(size))
		if n := spec.NextMessageSize(size, total); n != size {
			size = n
			if msg, err = websocket.NewPreparedMessage(websocket.BinaryMessage, t.p.random[:size]); err != nil {
				return err
			}
		}
		if time.Now().After(next) {
			next = time.Now().Add(spec.MeasureEvery)
			if err := t.sendMeasurement(); err != nil {
				return err
			}
		}
	}
	// A last measurement: the summary of the subtest for the client.
	if err := t.sendMeasurement(); err != nil {
		return err
	}
	return t.closeAndWait(readerDone)
}

// upload reads the client's binary messages for the duration and sends a
// measurement message every spec.MeasureEvery.
func (t *test) upload() error {
	t.conn.SetReadLimit(spec.MaxMessageSize)
	readerDone := make(chan error, 1)
	go func() { readerDone <- t.readClient(true) }()
	tick := time.NewTicker(spec.MeasureEvery)
	defer tick.Stop()
	end := time.NewTimer(t.p.Duration)
	defer end.Stop()
	for {
		select {
		case err := <-readerDone:
			// The client closed first (it may: its own clock ran out).
			return err
		case <-tick.C:
			if err := t.sendMeasurement(); err != nil {
				return err
			}
		case <-end.C:
			if err := t.sendMeasurement(); err != nil {
				return err
			}
			return t.closeAndWait(readerDone)
		}
	}
}

// result is the server's view of the finished subtest: its duration runs
// to the end of the closing handshake, when the last bytes were delivered.
func (t *test) result() *schemas.NDT7ServerSubtest {
	el := time.Since(t.start)
	if t.kind == spec.TestUpload || t.lastTCP == nil {
		t.measurement() // fresh TCP_INFO when the socket still gives it
	}
	n := t.bytes.Load()
	sv := &schemas.NDT7ServerSubtest{
		UUID:               t.uuid,
		Bytes:              uint64(n),
		DurationS:          round3(el.Seconds()),
		GoodputMbps:        round3(spec.Mbps(n, el.Microseconds())),
		MaxMessageBytes:    uint32(t.maxMsg.Load()),
		ClientMeasurements: uint32(min(t.clientMsg.Load(), 1<<31)),
	}
	if t.lastTCP != nil {
		sv.TCPInfo = specTCPInfo(*t.lastTCP, t.lastAt).Record()
	}
	return sv
}

func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }

// locate answers like M-Lab's locate v2: one target, this server, whose
// URLs carry a fresh token, already unchoked. When no slot is free it
// answers 503 with locate's error object and Retry-After, and keeps no
// place in the queue: the client asks again.
func (p *Provider) locate(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	n, err := p.Negotiator.NegotiateTest(r.Context(), name, "", "", httpx.ClientAddr(r, false))
	if err == nil && !n.Unchoked {
		p.Negotiator.Withdraw(n.Session)
		err = testserver.ErrQueueFull
	}
	if err != nil {
		code := testserver.StatusOf(err)
		if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
		httpx.WriteJSON(w, code, spec.LocateResult{Error: &spec.LocateError{
			Type: "error", Title: http.StatusText(code), Status: code, Detail: err.Error(),
		}})
		return
	}
	scheme := "ws"
	if r.TLS != nil {
		scheme = "wss"
	}
	urls := map[string]string{}
	for _, path := range []string{spec.DownloadPath, spec.UploadPath} {
		u := url.URL{Scheme: scheme, Host: r.Host, Path: path, RawQuery: url.Values{spec.AccessTokenParam: {n.Session.Token}}.Encode()}
		urls[spec.LocateKey(scheme, path)] = u.String()
	}
	host, _, _ := strings.Cut(r.Host, ":")
	httpx.WriteJSON(w, http.StatusOK, spec.LocateResult{Results: []spec.LocateTarget{{Machine: p.ServerID, Hostname: host, URLs: urls}}})
}

// Merge waits for the session's subtests to store their views (the client
// may post as soon as it saw the server close the upload, before the
// handler stored it), then puts them into the client's record.
func (p *Provider) Merge(rec *schemas.Record, s *testserver.Session) error {
	keys, err := testserver.KeysOf[*schemas.NDT7](rec, schemas.NDT7Name, schemas.NDT7BrowserName)
	if err != nil {
		return err
	}
	v := viewOf(s)
	v.mu.Lock()
	if v.running > 0 {
		if v.idle == nil {
			v.idle = make(chan struct{})
		}
		idle := v.idle
		v.mu.Unlock()
		t := time.NewTimer(5 * time.Second)
		select {
		case <-idle:
		case <-t.C:
		}
		t.Stop()
		v.mu.Lock()
	}
	sv := &schemas.NDT7ServerView{Download: v.download, Upload: v.upload}
	v.mu.Unlock()
	if sv.Download == nil && sv.Upload == nil {
		return testserver.Refuse(http.StatusConflict, "no subtest ran under this token")
	}
	keys.ServerView = sv
	rec.Server.Plausibility = testserver.NDT7Plausibility(keys)
	return nil
}
