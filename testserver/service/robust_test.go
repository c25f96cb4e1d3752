package service_test

import (
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	spec "github.com/neubot/neubot/proto/speedtest"
	"github.com/neubot/neubot/testserver"
	"github.com/neubot/neubot/testserver/service"
	"github.com/neubot/neubot/testserver/service/servicetest"
)

func download(t *testing.T, url, token string, size int) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+spec.DownloadPath, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Range", "bytes=0-"+strconv.Itoa(size-1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestRevokedDownloadStops: a token revoked while its 64 MiB download runs
// (the client reading slowly) moves no more bytes: the download ends
// within 1 s of the revocation.
func TestRevokedDownloadStops(t *testing.T) {
	svc, url := servicetest.Start(t, service.Config{})
	tok := negotiateToken(t, url)
	resp := download(t, url, tok, spec.MaxRange)
	defer resp.Body.Close()
	buf := make([]byte, 64<<10)
	var got int64
	for got < 1<<20 { // slowly: the server stays blocked in its writes
		n, err := resp.Body.Read(buf[:16<<10])
		got += int64(n)
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	s, err := svc.Negotiator().AuthorizeToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	svc.Negotiator().Revoke(s)
	for {
		n, err := resp.Body.Read(buf)
		got += int64(n)
		if err != nil {
			break
		}
		if time.Since(revoked) > 5*time.Second {
			break
		}
	}
	took := time.Since(revoked)
	t.Logf("download ended %s after the revocation, %d of %d bytes received", took.Round(time.Millisecond), got, spec.MaxRange)
	if took > time.Second || got >= spec.MaxRange {
		t.Fatalf("download went on %s after the revocation (%d bytes)", took, got)
	}
	if code := status(t, http.MethodGet, url+spec.DownloadPath, tok); code != http.StatusForbidden {
		t.Fatalf("revoked token: %d", code)
	}
}

// TestSessionCapsInTransfers: a session's third download at once gets 429,
// and a download past the session's bytes is cut.
func TestSessionCapsInTransfers(t *testing.T) {
	_, url := servicetest.Start(t, service.Config{Negotiator: testserver.NegotiatorConfig{SessionMaxRequests: 2, SessionMaxBytes: 40 << 20}})
	tok := negotiateToken(t, url)
	a := download(t, url, tok, 32<<20) // not read: both stay running
	defer a.Body.Close()
	b := download(t, url, tok, 32<<20)
	defer b.Body.Close()
	c := download(t, url, tok, 1024)
	c.Body.Close()
	if c.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third transfer at once: %d, want 429", c.StatusCode)
	}
	n, _ := io.Copy(io.Discard, a.Body)
	m, _ := io.Copy(io.Discard, b.Body)
	if n+m > 40<<20+2*64<<10 || n+m < 40<<20 {
		t.Fatalf("%d bytes moved with a cap of %d", n+m, 40<<20)
	}
}
