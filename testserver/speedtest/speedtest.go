// Package speedtest is the server side of the speedtest (spec/speedtest.md):
// HEAD round trips for latency, GET with Range over incompressible data
// made in memory for the download, bounded POSTs discarded and timed at the
// receiver for the upload, and collect, which merges the client's numbers
// with the server's own view into the authoritative record.
package speedtest

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/tcpinfo"
	spec "github.com/neubot/neubot/proto/speedtest"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver"
)

// Provider serves the speedtest's endpoints.
type Provider struct {
	Negotiator *testserver.Negotiator
	ServerID   string
	// Peer marks the records as served by a volunteer's agent
	// (peer-to-peer mode).
	Peer    bool
	Version string
	// Forward takes the authoritative record for delivery to the
	// collector; it must be durable when it returns nil.
	Forward func(*schemas.Record) error
	Logger  *slog.Logger
	// Counters, for metrics: payload bytes sent and received.
	OnBytes func(sent, received int64)

	data []byte
}

// dataSize is the buffer of random bytes the download repeats from. It is
// far larger than any compression window, so it does not compress.
const dataSize = 8 << 20

// NewProvider returns a provider with its random data made.
func NewProvider(p Provider) *Provider {
	p.data = make([]byte, dataSize)
	if _, err := rand.Read(p.data); err != nil {
		panic("speedtest: no randomness: " + err.Error())
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.OnBytes == nil {
		p.OnBytes = func(int64, int64) {}
	}
	return &p
}

// Routes registers the endpoints on mux.
func (p *Provider) Routes(mux interface {
	Handle(pattern string, h http.Handler)
}) {
	mux.Handle("HEAD "+spec.LatencyPath, http.HandlerFunc(p.latency))
	mux.Handle("GET "+spec.DownloadPath, http.HandlerFunc(p.download))
	mux.Handle("POST "+spec.UploadPath, http.HandlerFunc(p.upload))
	mux.Handle("POST "+spec.CollectPath, http.HandlerFunc(p.collect))
}

// view is the server's record of one session.
type view struct {
	mu                sync.Mutex
	sent, received    int64
	dlFirst, dlLast   time.Time
	ulFirst, ulLast   time.Time
	tcp               map[net.Conn]tcpinfo.Info
	uploadConnections map[net.Conn]bool
}

func viewOf(s *testserver.Session) *view {
	return s.View(func() any { return &view{tcp: map[net.Conn]tcpinfo.Info{}, uploadConnections: map[net.Conn]bool{}} }).(*view)
}

var fail = testserver.Fail

func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) *testserver.Session {
	s, err := p.Negotiator.AuthorizeTest(r, "")
	if err != nil {
		fail(w, testserver.StatusOf(err), "%v", err)
		return nil
	}
	return s
}

func (p *Provider) latency(w http.ResponseWriter, r *http.Request) {
	if p.authorize(w, r) == nil {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// parseRange parses "bytes=START-END" (one range, both ends given).
func parseRange(h string) (start, end int64, err error) {
	spec0, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec0, ",") {
		return 0, 0, errors.New("the Range header must be bytes=START-END, one range")
	}
	a, b, ok := strings.Cut(spec0, "-")
	if !ok {
		return 0, 0, errors.New("the Range header must be bytes=START-END")
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, errors.New("the Range header must be bytes=START-END with 0 <= START <= END")
	}
	if end-start >= spec.MaxRange {
		return 0, 0, fmt.Errorf("the range is larger than %d bytes", spec.MaxRange)
	}
	return start, end, nil
}

func (p *Provider) download(w http.ResponseWriter, r *http.Request) {
	s := p.authorize(w, r)
	if s == nil {
		return
	}
	start, end, err := parseRange(r.Header.Get("Range"))
	if err != nil {
		fail(w, http.StatusRequestedRangeNotSatisfiable, "%v", err)
		return
	}
	v := viewOf(s)
	n := end - start + 1
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/*", start, end))
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusPartialContent)
	off := start % dataSize
	for n > 0 {
		chunk := min(n, 64<<10, dataSize-off)
		k, err := w.Write(p.data[off : off+chunk])
		now := time.Now()
		v.mu.Lock()
		if v.dlFirst.IsZero() {
			v.dlFirst = now
		}
		v.dlLast = now
		v.sent += int64(k)
		v.mu.Unlock()
		p.OnBytes(int64(k), 0)
		if err != nil {
			return
		}
		n -= chunk
		off = (off + chunk) % dataSize
	}
	if c := httpx.ConnFrom(r.Context()); c != nil {
		if info, err := tcpinfo.Read(c); err == nil {
			v.mu.Lock()
			v.tcp[c] = info
			v.mu.Unlock()
		}
	}
}

func (p *Provider) upload(w http.ResponseWriter, r *http.Request) {
	s := p.authorize(w, r)
	if s == nil {
		return
	}
	v := viewOf(s)
	body := http.MaxBytesReader(w, r.Body, spec.MaxUploadBody)
	buf := make([]byte, 64<<10)
	var got int64
	for {
		k, err := body.Read(buf)
		if k > 0 {
			now := time.Now()
			got += int64(k)
			v.mu.Lock()
			if v.ulFirst.IsZero() {
				v.ulFirst = now
			}
			v.ulLast = now
			v.received += int64(k)
			v.mu.Unlock()
			p.OnBytes(0, int64(k))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				fail(w, http.StatusRequestEntityTooLarge, "upload body over %d bytes", spec.MaxUploadBody)
			}
			return
		}
	}
	v.mu.Lock()
	resp := spec.UploadResponse{Bytes: got, TotalBytes: v.received, TS: v.ulLast.Sub(v.ulFirst).Seconds()}
	if c := httpx.ConnFrom(r.Context()); c != nil {
		v.uploadConnections[c] = true
	}
	v.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(resp)
}

// collect merges the client's record with the server's view, answers with
// the authoritative record, hands it to Forward and ends the session.
func (p *Provider) collect(w http.ResponseWriter, r *http.Request) {
	s, rec := p.Negotiator.Collected(w, r, "", spec.MaxCollectBody)
	if rec == nil {
		return
	}
	keys, ok := rec.TestKeys.(*schemas.Speedtest)
	if !ok {
		fail(w, http.StatusBadRequest, "test_name must be %s", schemas.SpeedtestName)
		return
	}
	p.merge(rec, keys, s)
	p.Negotiator.Deliver(w, s, rec, p.Forward, p.Logger)
}

func (p *Provider) merge(rec *schemas.Record, keys *schemas.Speedtest, s *testserver.Session) {
	v := viewOf(s)
	v.mu.Lock()
	defer v.mu.Unlock()
	rec.Server.ID = p.ServerID
	rec.Server.Peer = p.Peer
	rec.Server.Version = p.Version
	rec.Server.ClientAddress = s.ClientAddr
	sv := &schemas.SpeedtestServer{
		BytesSent:         uint64(v.sent),
		BytesReceived:     uint64(v.received),
		DownloadDurationS: v.dlLast.Sub(v.dlFirst).Seconds(),
		UploadDurationS:   v.ulLast.Sub(v.ulFirst).Seconds(),
	}
	if sv.UploadDurationS > 0 {
		sv.UploadMbps = float64(v.received) * 8 / 1e6 / sv.UploadDurationS
	}
	if len(v.tcp) > 0 {
		var rtt, rttvar float64
		var retr uint64
		for _, info := range v.tcp {
			rtt += float64(info.RTT) / float64(time.Millisecond)
			rttvar += float64(info.RTTVar) / float64(time.Millisecond)
			retr += info.TotalRetrans
		}
		rtt /= float64(len(v.tcp))
		rttvar /= float64(len(v.tcp))
		sv.TCPRTTMS, sv.TCPRTTVarMS, sv.TCPRetransmits = &rtt, &rttvar, &retr
	}
	keys.ServerView = sv
}
