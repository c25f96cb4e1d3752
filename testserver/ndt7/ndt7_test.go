package ndt7_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/internal/webtest"
	spec "github.com/neubot/neubot/proto/ndt7"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
	"github.com/neubot/neubot/testserver/service"
	"github.com/neubot/neubot/testserver/service/servicetest"
)

func TestMain(m *testing.M) { os.Exit(localchtest.MainNoLeaks(m)) }

func dial(t *testing.T, base, path string, proto ...string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: proto, HandshakeTimeout: 5 * time.Second}
	return d.Dial(strings.Replace(base, "http://", "ws://", 1)+path, nil)
}

// TestServerMessages checks what the server sends against the
// specification, with a client written here from the specification alone:
// the subprotocol is required and echoed, binary messages are powers of
// two from 1<<10 to 1<<24 and grow, every textual message is a
// measurement with ConnectionInfo (mandatory since v0.9.0), AppInfo,
// Origin and Test, at most ten a second, and the server closes normally
// after the subtest's duration. An upgrade from another site's page is
// refused.
func TestServerMessages(t *testing.T) {
	_, base := servicetest.Start(t, service.Config{NDT7Duration: time.Second, NDT7AllowUntokened: true})

	if _, resp, err := dial(t, base, spec.DownloadPath); err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("an upgrade without the subprotocol: %v; want 400", err)
	}
	// A page of another site may not run tests from its visitors' browsers.
	d := websocket.Dialer{Subprotocols: []string{spec.SecWebSocketProtocol}}
	if _, resp, err := d.Dial(strings.Replace(base, "http://", "ws://", 1)+spec.DownloadPath, http.Header{"Origin": {"https://elsewhere.example"}}); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("an upgrade from another origin: %v; want 403", err)
	}
	for _, test := range []string{spec.TestDownload, spec.TestUpload} {
		t.Run(test, func(t *testing.T) {
			// Timed from before the dial: the server's clock starts at the
			// upgrade, before the client sees the answer to it.
			start := time.Now()
			conn, resp, err := dial(t, base, "/ndt/v7/"+test, spec.SecWebSocketProtocol)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != spec.SecWebSocketProtocol {
				t.Fatalf("subprotocol answered %q", got)
			}
			stop := make(chan struct{})
			if test == spec.TestUpload {
				go func() { // 1 MiB messages until the server closes
					msg := make([]byte, 1<<20)
					for {
						select {
						case <-stop:
							return
						default:
						}
						if conn.WriteMessage(websocket.BinaryMessage, msg) != nil {
							return
						}
					}
				}()
			}
			defer close(stop)
			var texts, prevSize int
			var lastBytes int64
			for {
				typ, b, err := conn.ReadMessage()
				if err != nil {
					if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
						t.Fatalf("the subtest did not end with a normal close: %v", err)
					}
					break
				}
				switch typ {
				case websocket.BinaryMessage:
					n := len(b)
					if test == spec.TestUpload {
						t.Fatal("the server sent a binary message during the upload")
					}
					if n < 1<<10 || n > 1<<24 || n&(n-1) != 0 || n < prevSize {
						t.Fatalf("binary message of %d bytes after one of %d", n, prevSize)
					}
					prevSize = n
				case websocket.TextMessage:
					texts++
					m, err := spec.DecodeMeasurement(b)
					if err != nil {
						t.Fatalf("%v: %s", err, b)
					}
					if m.ConnectionInfo == nil || m.ConnectionInfo.UUID == "" || m.ConnectionInfo.Client == "" || m.AppInfo == nil ||
						m.Origin != spec.OriginServer || m.Test != test || m.TCPInfo == nil || m.TCPInfo.RTT == nil {
						t.Fatalf("measurement lacks a part: %s", b)
					}
					if m.AppInfo.NumBytes < lastBytes {
						t.Fatalf("AppInfo.NumBytes went down: %s", b)
					}
					lastBytes = m.AppInfo.NumBytes
				}
			}
			el := time.Since(start)
			if el < time.Second || el > 4*time.Second {
				t.Errorf("the subtest lasted %s; want about 1 s", el)
			}
			if rate := float64(texts) / el.Seconds(); texts < 3 || rate > 10 {
				t.Errorf("%d measurement messages in %s", texts, el)
			}
			if lastBytes == 0 {
				t.Error("the measurements counted no payload")
			}
		})
	}
}

// TestLocateBusy: with no free slot the locate-style endpoint answers 503
// with locate's error object, and keeps no place in the queue.
func TestLocateBusy(t *testing.T) {
	svc, base := servicetest.Start(t, service.Config{NDT7Duration: time.Second})
	get := func() (int, spec.LocateResult) {
		resp, err := http.Get(base + spec.LocatePath)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var lr spec.LocateResult
		_ = json.NewDecoder(resp.Body).Decode(&lr)
		return resp.StatusCode, lr
	}
	if code, _ := get(); code != http.StatusOK {
		t.Fatalf("first locate: %d", code)
	}
	if code, _ := get(); code != http.StatusOK { // capacity 2
		t.Fatalf("second locate: %d", code)
	}
	code, lr := get()
	if code != http.StatusServiceUnavailable || lr.Error == nil || len(lr.Results) != 0 {
		t.Fatalf("third locate with both slots taken: %d %+v", code, lr)
	}
	if _, queued, _ := svc.Negotiator().Load(); queued != 0 {
		t.Fatalf("%d sessions left queued", queued)
	}
}

// TestFailureRecorded: a client that breaks the protocol (a binary message
// during the download) ends the subtest; the server keeps what it measured
// and records why in its view, which collect returns.
func TestFailureRecorded(t *testing.T) {
	_, base := servicetest.Start(t, service.Config{NDT7Duration: time.Second})
	resp, err := http.Post(base+spec.NegotiatePath, "application/json", strings.NewReader(`{"measurement_uid":""}`))
	if err != nil {
		t.Fatal(err)
	}
	var nr struct {
		Token    string `json:"token"`
		Unchoked bool   `json:"unchoked"`
	}
	err = json.NewDecoder(resp.Body).Decode(&nr)
	resp.Body.Close()
	if err != nil || !nr.Unchoked {
		t.Fatalf("negotiate: %v %+v", err, nr)
	}
	conn, _, err := dial(t, base, spec.DownloadPath+"?"+spec.AccessTokenParam+"="+nr.Token, spec.SecWebSocketProtocol)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := conn.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if err := conn.WriteMessage(websocket.BinaryMessage, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	for { // the server ends the subtest: read until it does
		if _, _, err := conn.ReadMessage(); err != nil {
			break
		}
	}
	conn.Close()

	rec := schemastest.NDT7(rand.New(rand.NewPCG(1, 1)), schemas.NDT7Name, time.Now().Add(-time.Minute), "", 10)
	rec.TestKeys.(*schemas.NDT7).ServerView = nil
	req, _ := http.NewRequest(http.MethodPost, base+spec.CollectPath, bytes.NewReader(schemastest.Line(rec)))
	req.Header.Set("Authorization", "Bearer "+nr.Token)
	code, body := webtest.Do(t, req)
	if code != http.StatusOK {
		t.Fatalf("collect: %d %s", code, body)
	}
	got, err := schemas.DecodeRecord(bytes.TrimSpace(body), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sv := got.TestKeys.(*schemas.NDT7).ServerView
	if sv == nil || sv.Download == nil || sv.Upload != nil || sv.Download.Failure != schemas.FailureProtocol || sv.Download.Bytes == 0 {
		t.Fatalf("server view %+v", sv.Download)
	}
}
