// Package ndt7 is the agent's ndt7 client (spec/ndt7.md): the download and
// the upload of M-Lab's ndt7 specification, against any ndt7 server.
//
// With an http:// or https:// server URL the server is a Neubot test
// server: the client negotiates a token first (the queue of the Neubot
// paper), runs both subtests with it over ws:// or wss:// and posts its
// record to collect, which answers with the server's authoritative record.
// With a ws:// or wss:// URL the server is any ndt7 server (M-Lab's
// ndt-server, say): the client runs both subtests, passing on an
// access_token the URL may carry, and returns its own record, which holds
// the server's in-band measurements but no server_view.
//
// The goodput is measured at the receiver: the client for the download,
// the server for the upload (from its measurement messages).
package ndt7

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/session"
	spec "github.com/neubot/neubot/proto/ndt7"
	"github.com/neubot/neubot/schemas"
)

// Config tunes the client; the zero value follows the specification.
type Config struct {
	// UploadDuration is how long the client uploads by its own clock
	// (default spec.DefaultDuration); the server may end it sooner.
	UploadDuration time.Duration
	// TLSConfig is used for wss:// (nil: the system's roots).
	TLSConfig *tls.Config
}

// Measurer runs ndt7 tests.
type Measurer struct{ cfg Config }

// NewMeasurer returns an ndt7 measurer.
func NewMeasurer(cfg Config) *Measurer {
	if cfg.UploadDuration <= 0 {
		cfg.UploadDuration = spec.DefaultDuration
	}
	return &Measurer{cfg: cfg}
}

// Name implements plugin.Measurer.
func (m *Measurer) Name() string { return schemas.NDT7Name }

// ProtocolError is returned when the server refuses a request or answers
// something the protocol does not allow.
type ProtocolError = session.ProtocolError

// run is the state of one test.
type run struct {
	cfg      Config
	env      plugin.Env
	http     *http.Client
	base     string // Neubot server: http(s)://host[:port]; else ""
	wsBase   url.URL
	token    string
	progress func(plugin.Progress)
}

// Run implements plugin.Measurer.
func (m *Measurer) Run(ctx context.Context, env plugin.Env) (*schemas.Record, error) {
	u, err := url.Parse(env.ServerURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("ndt7: bad server URL %q: want http://host:port (Neubot) or ws://host:port (any ndt7 server)", env.ServerURL)
	}
	r := &run{cfg: m.cfg, env: env, progress: env.Progress}
	if r.progress == nil {
		r.progress = func(plugin.Progress) {}
	}
	r.http = env.HTTPClient
	if r.http == nil {
		r.http = &http.Client{Transport: &http.Transport{TLSClientConfig: m.cfg.TLSConfig}}
	}
	r.wsBase = url.URL{Host: u.Host}
	switch u.Scheme {
	case "http", "https":
		r.base = u.Scheme + "://" + u.Host
		r.wsBase.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	case "ws", "wss":
		r.wsBase.Scheme = u.Scheme
		r.token = u.Query().Get(spec.AccessTokenParam)
	default:
		return nil, fmt.Errorf("ndt7: bad server URL %q: the scheme must be http, https, ws or wss", env.ServerURL)
	}

	uid := uuid.NewString()
	start := time.Now()
	if r.base != "" {
		if r.token, err = session.Slot(ctx, r.http, schemas.NDT7Name, r.base+spec.NegotiatePath, uid, r.progress); err != nil {
			return nil, err
		}
	}
	keys := &schemas.NDT7{}
	if keys.Download, err = r.subtest(ctx, spec.DownloadPath, "download", spec.MaxMessageSize, r.download); err != nil {
		return nil, err
	}
	if keys.Upload, err = r.subtest(ctx, spec.UploadPath, "upload", spec.MaxTextMessageSize, r.upload); err != nil {
		return nil, err
	}
	rec := &schemas.Record{
		Envelope: env.Envelope(schemas.NDT7Name, schemas.NDT7Version, uid, start),
		TestKeys: keys,
	}
	if r.base == "" {
		// Another ndt7 server: this record is all there is.
		if err := rec.Validate(time.Now()); err != nil {
			return nil, fmt.Errorf("ndt7: the record made of this test is invalid: %w", err)
		}
		return rec, nil
	}
	r.progress(plugin.Progress{Phase: "collect"})
	return session.Collect(ctx, r.http, schemas.NDT7Name, r.base+spec.CollectPath, r.token, rec)
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// protoError reads the JSON error of a refused request.
func protoError(op string, resp *http.Response) error {
	return session.Refused(schemas.NDT7Name, op, resp)
}

// dial opens the WebSocket of a subtest, with the token and the client's
// metadata in the query string.
func (r *run) dial(ctx context.Context, path string) (*websocket.Conn, error) {
	u := r.wsBase
	u.Path = path
	q := url.Values{
		"client_name":            {"neubot"},
		"client_version":         {r.env.Version()},
		"client_library_name":    {"neubot-ndt7"},
		"client_library_version": {spec.Version},
		"client_os":              {runtime.GOOS},
		"client_arch":            {runtime.GOARCH},
	}
	if r.token != "" {
		q.Set(spec.AccessTokenParam, r.token)
	}
	u.RawQuery = q.Encode()
	d := websocket.Dialer{
		HandshakeTimeout: spec.HandshakeTimeout,
		Subprotocols:     []string{spec.SecWebSocketProtocol},
		TLSClientConfig:  r.cfg.TLSConfig,
		ReadBufferSize:   64 << 10,
		WriteBufferSize:  64 << 10,
	}
	h := http.Header{"User-Agent": {"neubot/" + r.env.Version() + " neubot-ndt7/" + spec.Version}}
	conn, resp, err := d.DialContext(ctx, u.String(), h)
	if err != nil {
		if resp != nil {
			defer resp.Body.Close()
			return nil, protoError(path, resp)
		}
		return nil, fmt.Errorf("ndt7: cannot reach the ndt7 server (%s): %w", path, err)
	}
	if conn.Subprotocol() != spec.SecWebSocketProtocol {
		conn.Close()
		return nil, &ProtocolError{Test: schemas.NDT7Name, Op: path, Status: http.StatusSwitchingProtocols, Msg: "the server did not select the ndt7 subprotocol"}
	}
	return conn, nil
}

// series samples a cumulative byte counter every spec.MeasureEvery.
type series struct {
	samples []schemas.ThroughputSample
	next    time.Duration
}

func (s *series) maybeAdd(el time.Duration, n int64) (float64, bool) {
	if el < s.next {
		return 0, false
	}
	s.next = el + spec.MeasureEvery
	return s.add(el, n), true
}

func (s *series) add(el time.Duration, n int64) float64 {
	var mbps float64
	s.samples, mbps = plugin.AppendSample(s.samples, el.Seconds(), uint64(n))
	return mbps
}

// subtest ends the series with its last sample (n bytes after el) and
// returns the client's view of the subtest, ended by endErr (nil: normally).
func (s *series) subtest(el time.Duration, n int64, endErr error) *schemas.NDT7Subtest {
	s.add(el, n)
	return &schemas.NDT7Subtest{
		GoodputMbps: round3(spec.Mbps(n, el.Microseconds())),
		MeasuredAt:  "client",
		Bytes:       uint64(n),
		DurationS:   round3(el.Seconds()),
		Samples:     s.samples,
		Failure:     spec.Failure(endErr),
	}
}

// inBand keeps the latest of each part of the server's measurement
// messages. Servers need not send every part in every message (M-Lab's
// sends AppInfo and TCPInfo apart), and the latest value of each part
// summarises the subtest, as the specification says.
type inBand struct {
	app  *spec.AppInfo
	tcp  *spec.TCPInfo
	uuid string
}

func (b *inBand) update(m *spec.Measurement) {
	if m.AppInfo != nil {
		b.app = m.AppInfo
	}
	if m.TCPInfo != nil {
		b.tcp = m.TCPInfo
	}
	if m.ConnectionInfo != nil && m.ConnectionInfo.UUID != "" {
		b.uuid = m.ConnectionInfo.UUID
	}
}

// fill puts what the server sent into sub.
func (b *inBand) fill(sub *schemas.NDT7Subtest) {
	sub.UUID = b.uuid
	if b.app == nil && b.tcp == nil {
		return
	}
	sub.Server = &schemas.NDT7Measurement{TCPInfo: b.tcp.Record()}
	if b.app != nil {
		sub.Server.AppElapsedS = float64(b.app.ElapsedTime) / 1e6
		sub.Server.AppBytes = uint64(b.app.NumBytes)
	}
}

// readMeasurement reads and decodes one measurement message of the server.
func readMeasurement(rd io.Reader) (*spec.Measurement, error) {
	b, err := io.ReadAll(io.LimitReader(rd, spec.MaxTextMessageSize+1))
	if err != nil {
		return nil, err
	}
	return spec.DecodeMeasurement(b)
}

// closeConn ends the closing handshake from our side and closes.
func closeConn(conn *websocket.Conn) {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	conn.Close()
}

// subtest connects a subtest's WebSocket at path, reports its phase (once
// connected: see cmd/neubot's one-line errors) and runs it: measure gets
// the connection and when the subtest started. The subtest may last
// spec.MaxDuration from its start (reads fail after it; the WebSocket's
// writes set their own deadlines), the server's messages are at most
// readLimit bytes, and the end of ctx breaks the connection's reads and
// writes. The connection is closed when measure returns.
func (r *run) subtest(ctx context.Context, path, phase string, readLimit int64,
	measure func(context.Context, *websocket.Conn, time.Time) (*schemas.NDT7Subtest, error)) (*schemas.NDT7Subtest, error) {
	conn, err := r.dial(ctx, path)
	if err != nil {
		return nil, err
	}
	r.progress(plugin.Progress{Phase: phase})
	start := time.Now()
	_ = conn.NetConn().SetDeadline(start.Add(spec.MaxDuration))
	conn.SetReadLimit(readLimit)
	stop := context.AfterFunc(ctx, func() { _ = conn.NetConn().SetDeadline(time.Now()) })
	defer func() { stop(); closeConn(conn) }()
	return measure(ctx, conn, start)
}

// download receives until the server closes (or spec.MaxDuration), and
// counts the payload at the receiver: the goodput is the client's.
func (r *run) download(ctx context.Context, conn *websocket.Conn, start time.Time) (*schemas.NDT7Subtest, error) {
	var (
		n    int64
		s    series
		band inBand
		buf  = make([]byte, 64<<10)
	)
	var endErr error
loop:
	for {
		typ, rd, err := conn.NextReader()
		if err != nil {
			endErr = err
			break
		}
		switch typ {
		case websocket.BinaryMessage:
			for {
				k, err := rd.Read(buf)
				n += int64(k)
				if err == io.EOF {
					break
				}
				if err != nil {
					endErr = err
					break loop
				}
			}
		case websocket.TextMessage:
			m, err := readMeasurement(rd)
			if err != nil {
				endErr = err
				break loop
			}
			band.update(m)
		}
		el := time.Since(start)
		if mbps, ok := s.maybeAdd(el, n); ok {
			r.progress(plugin.Progress{Phase: "download", Mbps: round3(mbps), Elapsed: el.Seconds()})
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	sub := s.subtest(time.Since(start), n, endErr)
	band.fill(sub)
	return sub, nil
}

// random is the upload's payload: incompressible, shared by all tests.
var random = func() []byte {
	b := make([]byte, spec.MaxScaledMessageSize)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}()

// upload sends binary messages of growing size for UploadDuration or until
// the server closes, with a measurement message of its own every
// spec.MeasureEvery. The goodput is the server's, as receiver, from its
// last AppInfo; the client's counters are the fallback.
func (r *run) upload(ctx context.Context, conn *websocket.Conn, start time.Time) (*schemas.NDT7Subtest, error) {
	var (
		mu   sync.Mutex
		band inBand
	)
	readerDone := make(chan error, 1)
	go func() {
		for {
			typ, rd, err := conn.NextReader()
			if err != nil {
				readerDone <- err
				return
			}
			if typ != websocket.TextMessage {
				readerDone <- fmt.Errorf("%w: the server sent a binary message during the upload", schemas.ErrProtocol)
				return
			}
			m, err := readMeasurement(rd)
			if err != nil {
				readerDone <- err
				return
			}
			mu.Lock()
			band.update(m)
			mu.Unlock()
		}
	}()

	size := spec.InitialMessageSize
	msg, err := websocket.NewPreparedMessage(websocket.BinaryMessage, random[:size])
	if err != nil {
		return nil, err
	}
	var (
		n      int64
		s      series
		endErr error
		ended  bool // the reader ended: the server closed or failed
	)
	for time.Since(start) < r.cfg.UploadDuration {
		select {
		case endErr = <-readerDone:
			ended = true
		default:
		}
		if ended {
			break
		}
		if err := conn.WritePreparedMessage(msg); err != nil {
			endErr = err
			break
		}
		n += int64(size)
		if k := spec.NextMessageSize(size, n); k != size {
			size = k
			if msg, err = websocket.NewPreparedMessage(websocket.BinaryMessage, random[:size]); err != nil {
				return nil, err
			}
		}
		el := time.Since(start)
		if mbps, ok := s.maybeAdd(el, n); ok {
			r.progress(plugin.Progress{Phase: "upload", Mbps: round3(mbps), Elapsed: el.Seconds()})
			b, _ := json.Marshal(spec.Measurement{AppInfo: &spec.AppInfo{ElapsedTime: el.Microseconds(), NumBytes: n}, Origin: spec.OriginClient, Test: spec.TestUpload})
			if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
				endErr = err
				break
			}
		}
	}
	el := time.Since(start)
	if !ended {
		// Our clock ran out (or a write failed): close, and wait for the
		// server's close and its last measurement.
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		_ = conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		select {
		case err := <-readerDone:
			if endErr == nil || errors.Is(endErr, websocket.ErrCloseSent) {
				endErr = err
			}
		case <-time.After(2 * time.Second):
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if errors.Is(endErr, websocket.ErrCloseSent) {
		endErr = nil // the server closed while we wrote: a normal end
	}
	sub := s.subtest(el, n, endErr)
	mu.Lock()
	defer mu.Unlock()
	band.fill(sub)
	// The server is the upload's receiver: its counters are the goodput.
	// Its AppInfo when it sends one; else its kernel's count of bytes
	// received (M-Lab's server sends no AppInfo), which includes the
	// WebSocket framing, a few bytes per message of 8 KiB or more. The
	// client's own count, the last resort, includes what still sat in its
	// socket buffer: 1-4% high at 2, 20 and 100 Mbit/s by hand.
	if a := band.app; a != nil && a.ElapsedTime > 0 {
		sub.GoodputMbps = round3(spec.Mbps(a.NumBytes, a.ElapsedTime))
		sub.MeasuredAt = "server"
	} else if t := band.tcp; t != nil && t.BytesReceived != nil && t.ElapsedTime != nil && *t.ElapsedTime > 0 {
		sub.GoodputMbps = round3(spec.Mbps(*t.BytesReceived, *t.ElapsedTime))
		sub.MeasuredAt = "server"
	}
	return sub, nil
}
