package ndt7_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/neubot/neubot/agent/plugin/plugintest"
	"github.com/neubot/neubot/internal/looptest"
	"github.com/neubot/neubot/internal/webtest"
	"github.com/neubot/neubot/schemas/schemastest"

	"github.com/gorilla/websocket"

	"github.com/neubot/neubot/agent/ndt7"
	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/internal/httpx"
	ndt7spec "github.com/neubot/neubot/proto/ndt7"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver/service"
	"github.com/neubot/neubot/testserver/service/servicetest"
)

// Subtests last one second here (the specification's ten in production).
const subtest = time.Second

var env = plugintest.Env

func run(t *testing.T, m *ndt7.Measurer, e plugin.Env) (*schemas.Record, *schemas.NDT7) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec, err := m.Run(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Validate(time.Now()); err != nil {
		t.Fatalf("invalid record: %v", err)
	}
	keys := rec.TestKeys.(*schemas.NDT7)
	for name, s := range map[string]*schemas.NDT7Subtest{"download": keys.Download, "upload": keys.Upload} {
		if s == nil || s.GoodputMbps <= 0 || s.Bytes == 0 || len(s.Samples) < 2 || s.Failure != "" || s.UUID == "" {
			t.Fatalf("%s: %+v", name, s)
		}
		if s.Server == nil || s.Server.AppBytes == 0 || s.Server.TCPInfo == nil || s.Server.TCPInfo.RTTMS <= 0 {
			t.Fatalf("%s: no in-band server measurement with AppInfo and TCPInfo: %+v", name, s.Server)
		}
	}
	if keys.Upload.MeasuredAt != "server" || keys.Download.MeasuredAt != "client" {
		t.Fatalf("upload measured at %s, download at %s: want each at its receiver", keys.Upload.MeasuredAt, keys.Download.MeasuredAt)
	}
	return rec, keys
}

// TestNeubotServer runs the client against the real test server on
// loopback: negotiation, both subtests, collect. The record is the
// server's merged one, spooled for the collector.
func TestNeubotServer(t *testing.T) {
	svc, base := servicetest.Start(t, service.Config{NDT7Duration: subtest})
	var phases []string
	e := env(base)
	e.Progress = func(p plugin.Progress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
	}
	rec, keys := run(t, ndt7.NewMeasurer(ndt7.Config{}), e)
	if got := strings.Join(phases, ","); got != "negotiate,download,upload,collect" {
		t.Errorf("phases %s", got)
	}
	if rec.Server.ID != schemastest.ServerID || rec.Server.ClientAddress != "127.0.0.1" {
		t.Errorf("server %+v", rec.Server)
	}
	sv := keys.ServerView
	if sv == nil || sv.Download == nil || sv.Upload == nil {
		t.Fatalf("server view %+v", sv)
	}
	// Every byte the server sent, the client received before the close.
	if sv.Download.Bytes != keys.Download.Bytes {
		t.Errorf("download: server sent %d, client received %d", sv.Download.Bytes, keys.Download.Bytes)
	}
	if sv.Upload.Bytes == 0 || sv.Upload.Bytes > keys.Upload.Bytes {
		t.Errorf("upload: server received %d, client sent %d", sv.Upload.Bytes, keys.Upload.Bytes)
	}
	if sv.Download.UUID != keys.Download.UUID || sv.Upload.UUID != keys.Upload.UUID {
		t.Errorf("connection identifiers differ: %+v vs %s, %s", sv, keys.Download.UUID, keys.Upload.UUID)
	}
	// Our client sends its own measurements during the upload; the server
	// decoded every one of them (a bad one ends the subtest).
	if sv.Upload.ClientMeasurements == 0 {
		t.Error("the server counted no client measurement in the upload")
	}
	if sv.Download.TCPInfo == nil || sv.Download.TCPInfo.BytesAcked == 0 || sv.Download.MaxMessageBytes < ndt7spec.InitialMessageSize {
		t.Errorf("server download view %+v", sv.Download)
	}
	if d := sv.Download.DurationS; d < subtest.Seconds() || d > subtest.Seconds()+2 {
		t.Errorf("download lasted %.3f s on the server; want about %s", d, subtest)
	}
	if n := svc.Forwarder().Pending(); n != 1 {
		t.Errorf("%d records spooled for the collector; want 1", n)
	}
	metrics := string(webtest.GetOK(t, base+"/metrics"))
	for _, want := range []string{
		`neubot_testserver_ndt7_subtests_total{access="token",result="ok",test="download"} 1`,
		`neubot_testserver_ndt7_subtests_total{access="token",result="ok",test="upload"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestAnyServer runs the client as against any ndt7 server: a ws:// URL,
// no negotiation, no collect. The record is the client's own.
func TestAnyServer(t *testing.T) {
	svc, base := servicetest.Start(t, service.Config{NDT7Duration: subtest, NDT7AllowUntokened: true})
	rec, keys := run(t, ndt7.NewMeasurer(ndt7.Config{}), env(strings.Replace(base, "http://", "ws://", 1)))
	if keys.ServerView != nil || rec.Server.ID != "" {
		t.Fatalf("a client's own record with a server view: %+v", rec)
	}
	if n := svc.Forwarder().Pending(); n != 0 {
		t.Errorf("an untokened test made %d records; want none (no consent)", n)
	}
	// The server counts the upload once its handler is done, which may
	// be just after the client saw the close.
	want := `neubot_testserver_ndt7_subtests_total{access="untokened",result="ok",test="upload"} 1`
	for deadline := time.Now().Add(3 * time.Second); !strings.Contains(string(webtest.GetOK(t, base+"/metrics")), want); {
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %s", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The same server without the flag wants a token.
	_, base2 := servicetest.Start(t, service.Config{NDT7Duration: subtest})
	_, err := ndt7.NewMeasurer(ndt7.Config{}).Run(context.Background(), env(strings.Replace(base2, "http://", "ws://", 1)))
	var pe *ndt7.ProtocolError
	if !errors.As(err, &pe) || pe.Status != http.StatusUnauthorized {
		t.Fatalf("got %v; want a 401 ProtocolError", err)
	}
}

// TestLocateToken: the locate-style endpoint hands out URLs with an
// access_token, which a stock client uses as they are.
func TestLocateToken(t *testing.T) {
	_, base := servicetest.Start(t, service.Config{NDT7Duration: subtest})
	resp, err := http.Get(base + ndt7spec.LocatePath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lr ndt7spec.LocateResult
	if err := json.NewDecoder(resp.Body).Decode(&lr); err != nil || resp.StatusCode != http.StatusOK || len(lr.Results) != 1 {
		t.Fatalf("locate: %s %v %+v", resp.Status, err, lr)
	}
	dl := lr.Results[0].URLs[ndt7spec.LocateKey("ws", ndt7spec.DownloadPath)]
	ul := lr.Results[0].URLs[ndt7spec.LocateKey("ws", ndt7spec.UploadPath)]
	du, _ := url.Parse(dl)
	uu, _ := url.Parse(ul)
	tok := du.Query().Get(ndt7spec.AccessTokenParam)
	if tok == "" || uu.Query().Get(ndt7spec.AccessTokenParam) != tok {
		t.Fatalf("locate URLs without one token: %s %s", dl, ul)
	}
	// The client takes a ws:// URL with the token in it.
	run(t, ndt7.NewMeasurer(ndt7.Config{}), env("ws://"+du.Host+"/?"+ndt7spec.AccessTokenParam+"="+tok))
	// A token serves one download and one upload.
	_, err = ndt7.NewMeasurer(ndt7.Config{}).Run(context.Background(), env("ws://"+du.Host+"/?"+ndt7spec.AccessTokenParam+"="+tok))
	var pe *ndt7.ProtocolError
	if !errors.As(err, &pe) || pe.Status != http.StatusConflict {
		t.Fatalf("a second download with the token: %v; want 409", err)
	}
}

// TestTLS runs the client against the test server over TLS: https for
// negotiation and collect, wss for the subtests.
func TestTLS(t *testing.T) {
	cert, pool := looptest.SelfSigned(t, "127.0.0.1")
	svc, err := service.New(service.Config{ID: "ts-tls", Version: "test", SpoolDir: t.TempDir(), NDT7Duration: subtest})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpx.ListenTLS("127.0.0.1:0", svc.Handler(), nil, &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()); svc.Close() })
	if !strings.HasPrefix(srv.URL(), "https://") {
		t.Fatalf("URL %s", srv.URL())
	}
	_, keys := run(t, ndt7.NewMeasurer(ndt7.Config{TLSConfig: &tls.Config{RootCAs: pool}}), env(srv.URL()))
	if keys.ServerView == nil || keys.ServerView.Upload == nil {
		t.Fatalf("no server view over TLS: %+v", keys.ServerView)
	}
	// An untrusted certificate fails the test, it does not fall back.
	if _, err := ndt7.NewMeasurer(ndt7.Config{}).Run(context.Background(), env(srv.URL())); err == nil {
		t.Fatal("a certificate from an unknown authority was accepted")
	}
}

// TestClientMessages checks what the client sends against the
// specification, with a server written here from the specification alone:
// the upgrade names the subprotocol, carries a User-Agent and metadata
// without duplicate keys; upload binary messages are powers of two from
// 1<<10 to 1<<24 and never shrink; the client's textual messages are
// measurements with AppInfo, Origin "client", Test "upload" and never
// ConnectionInfo (clients must not send it), at most ten a second; and the
// client answers the server's closing handshake.
func TestClientMessages(t *testing.T) {
	type seen struct {
		texts, binaries int
		problems        []string
		closed          bool
	}
	results := make(chan seen, 1)
	up := websocket.Upgrader{Subprotocols: []string{ndt7spec.SecWebSocketProtocol}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ndt7spec.UploadPath, func(w http.ResponseWriter, r *http.Request) {
		var s seen
		if !slices.Contains(websocket.Subprotocols(r), ndt7spec.SecWebSocketProtocol) || r.UserAgent() == "" {
			s.problems = append(s.problems, "no subprotocol or no User-Agent")
		}
		for k, v := range r.URL.Query() {
			if len(v) != 1 || v[0] == "" {
				s.problems = append(s.problems, "bad query key "+k)
			}
		}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetReadLimit(ndt7spec.MaxMessageSize)
		start, prev := time.Now(), 0
		done := time.AfterFunc(time.Second, func() {
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		})
		defer done.Stop()
		for {
			typ, b, err := conn.ReadMessage()
			if err != nil {
				s.closed = websocket.IsCloseError(err, websocket.CloseNormalClosure)
				break
			}
			if typ == websocket.BinaryMessage {
				n := len(b)
				if n < 1<<10 || n > 1<<24 || n&(n-1) != 0 || n < prev {
					s.problems = append(s.problems, fmt.Sprintf("binary message of %d bytes after %d", n, prev))
				}
				prev = n
				s.binaries++
				continue
			}
			s.texts++
			m, err := ndt7spec.DecodeMeasurement(b)
			if err != nil || m.AppInfo == nil || m.ConnectionInfo != nil || m.Origin != ndt7spec.OriginClient || m.Test != ndt7spec.TestUpload {
				s.problems = append(s.problems, fmt.Sprintf("measurement %s (%v)", b, err))
			}
		}
		if rate := float64(s.texts) / time.Since(start).Seconds(); rate > 10 {
			s.problems = append(s.problems, fmt.Sprintf("%.1f measurements a second", rate))
		}
		results <- s
	})
	mux.HandleFunc("GET "+ndt7spec.DownloadPath, func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		for i := 0; i < 100; i++ {
			if conn.WriteMessage(websocket.BinaryMessage, make([]byte, 8192)) != nil {
				return
			}
		}
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		_, _, _ = conn.ReadMessage() // the client's close
	})
	srv, err := httpx.Listen("127.0.0.1:0", mux, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	rec, err := ndt7.NewMeasurer(ndt7.Config{}).Run(context.Background(), env("ws://"+srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	s := <-results
	if len(s.problems) > 0 || !s.closed || s.texts < 2 || s.binaries < 10 {
		t.Fatalf("the client's upload: %+v", s)
	}
	keys := rec.TestKeys.(*schemas.NDT7)
	if keys.Download.Bytes != 100*8192 || keys.Download.Failure != "" || keys.Upload.MeasuredAt != "client" || keys.Download.Server != nil {
		t.Fatalf("record of a server that sends no measurements: %+v %+v", keys.Download, keys.Upload)
	}
}
