// Package speedtest is the server side of the speedtest (spec/speedtest.md):
// HEAD round trips for latency, GET with Range over incompressible data
// made in memory for the download, bounded POSTs discarded and timed at the
// receiver for the upload, and collect, which merges the client's numbers
// with the server's own view into the authoritative record.
package speedtest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/neubot/neubot/internal/goodput"
	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/tcpinfo"
	spec "github.com/neubot/neubot/proto/speedtest"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver"
)

// Provider serves the speedtest's endpoints.
type Provider struct {
	testserver.Env

	data []byte
	bg   *samplers
}

// samplers are the goroutines that read the sessions' TCP_INFO (view.sample),
// stopped and waited for by Close: none outlives the provider.
type samplers struct {
	mu     sync.Mutex
	quit   chan struct{}
	closed bool
	wg     sync.WaitGroup
}

// start runs f(quit) in a goroutine of its own, unless the provider closed
// (or was not made by NewProvider: no samplers).
func (b *samplers) start(f func(quit <-chan struct{})) bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f(b.quit)
	}()
	return true
}

func (b *samplers) close() {
	if b == nil {
		return
	}
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.quit)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// dataSize is the buffer of random bytes the download repeats from. It is
// far larger than any compression window, so it does not compress.
const dataSize = 8 << 20

// New is the speedtest's constructor in testserver/registry.
func New(env testserver.Env) (testserver.Provider, error) {
	return NewProvider(Provider{Env: env}), nil
}

// Spec names the test and its negotiate and collect paths.
func (p *Provider) Spec() testserver.Spec {
	return testserver.Spec{Name: testserver.Test(schemas.SpeedtestName), NegotiatePath: spec.NegotiatePath,
		CollectPath: spec.CollectPath, MaxCollectBody: spec.MaxCollectBody}
}

// Close stops the TCP_INFO samplers of the sessions still running and
// waits for them.
func (p *Provider) Close() error {
	p.bg.close()
	return nil
}

// NewProvider returns a provider with its random data made.
func NewProvider(p Provider) *Provider {
	p.data = make([]byte, dataSize)
	if _, err := rand.Read(p.data); err != nil {
		panic("speedtest: no randomness: " + err.Error())
	}
	p.Env = p.Env.WithDefaults()
	p.bg = &samplers{quit: make(chan struct{})}
	return &p
}

// Routes registers the endpoints on mux.
func (p *Provider) Routes(mux testserver.Mux) {
	mux.Handle("HEAD "+spec.LatencyPath, http.HandlerFunc(p.latency))
	mux.Handle("GET "+spec.DownloadPath, http.HandlerFunc(p.download))
	mux.Handle("POST "+spec.UploadPath, http.HandlerFunc(p.upload))
	mux.Handle("GET "+spec.V2DownloadPath, http.HandlerFunc(p.downloadV2))
	mux.Handle("GET "+spec.V2UploadPath, http.HandlerFunc(p.uploadV2))
	mux.Handle("GET "+spec.V2PingPath, http.HandlerFunc(p.pingV2))
}

// view is the server's record of one session.
type view struct {
	bg                *samplers
	mu                sync.Mutex
	sent, received    int64
	dl, ul            span
	tcp               map[net.Conn]tcpinfo.Info
	uploadConnections map[net.Conn]bool
	// phases: the TCP_INFO series of the download and the upload.
	phases map[string]*phaseView
	// ulStreamStart: when the first v2 upload stream arrived (the clock
	// of the upload reports).
	ulStreamStart time.Time
	// ulStreams: the v2 upload connections, for the reports' arrived.
	ulStreams []*ulStream
	// ulReports: what the v2 upload reports said, in order (the series
	// the client's upload goodput is computed from), for the cross-check
	// at collect; at most maxReports.
	ulReports []goodput.Sample
}

// maxReports bounds a session's upload report series: a stream lasts at
// most spec.MaxStream and reports every spec.ReportEvery, and a client
// opens at most 8 streams (twice that is kept; a client that opens more
// has its later samples unmatched, and its upload flagged).
const maxReports = 16 * int(spec.MaxStream/spec.ReportEvery)

// span is when a direction first and last moved bytes.
type span struct{ first, last time.Time }

// mark records a transfer at now.
func (s *span) mark(now time.Time) {
	if s.first.IsZero() {
		s.first = now
	}
	s.last = now
}

// seconds is the time from the first transfer to the last.
func (s *span) seconds() float64 { return s.last.Sub(s.first).Seconds() }

func (p *Provider) viewOf(s *testserver.Session) *view {
	return s.View(func() any {
		return &view{bg: p.bg, tcp: map[net.Conn]tcpinfo.Info{}, uploadConnections: map[net.Conn]bool{}, phases: map[string]*phaseView{}}
	}).(*view)
}

var fail = testserver.Fail

func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) *testserver.Session {
	s, err := p.Negotiator.AuthorizeTest(r, testserver.Test(schemas.SpeedtestName))
	if err != nil {
		fail(w, testserver.StatusOf(err), "%v", err)
		return nil
	}
	return s
}

// begin starts the v1 transfer of phase (download or upload) of session s:
// from now on the negotiator may cut it, by a deadline (set with stop, the
// connection's write or read side) that ends the transfer at once, and the
// view follows the connection's TCP_INFO. It answers the request itself and
// returns a nil view when the transfer may not start; otherwise the caller
// calls finish when the transfer is over.
func (p *Provider) begin(w http.ResponseWriter, r *http.Request, s *testserver.Session, phase string,
	stop func(*http.ResponseController, time.Time) error) (v *view, finish func()) {
	rc := http.NewResponseController(w)
	done, err := p.Negotiator.Begin(s, func() { _ = stop(rc, time.Now()) })
	if err != nil {
		fail(w, testserver.StatusOf(err), "%v", err)
		return nil, nil
	}
	v = p.viewOf(s)
	untrack := func() {}
	if c := httpx.ConnFrom(r.Context()); c != nil {
		untrack = v.track(phase, c)
	}
	return v, func() { untrack(); done() }
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
	v, finish := p.begin(w, r, s, "download", (*http.ResponseController).SetWriteDeadline)
	if v == nil {
		return
	}
	defer finish()
	n := end - start + 1
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/*", start, end))
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusPartialContent)
	var capped error
	if err := p.send(w, v, start, n, func(k int64) error {
		capped = p.Negotiator.Count(s, k)
		return capped
	}); err != nil {
		if capped != nil {
			// Cut: the client sees a short body, the session's cap or
			// its revocation ends the transfer.
			p.Logger.Debug("speedtest: download stopped", "err", err)
		}
		return
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
	v, finish := p.begin(w, r, s, "upload", (*http.ResponseController).SetReadDeadline)
	if v == nil {
		return
	}
	defer finish()
	body := http.MaxBytesReader(w, r.Body, spec.MaxUploadBody)
	var got int64
	var capped error
	err := p.receive(body, v, nil, func(k int64) error {
		got += k
		capped = p.Negotiator.Count(s, k)
		return capped
	})
	var tooBig *http.MaxBytesError
	switch {
	case capped != nil:
		w.Header().Set("Connection", "close")
		fail(w, testserver.StatusOf(capped), "%v", capped)
		return
	case errors.As(err, &tooBig):
		fail(w, http.StatusRequestEntityTooLarge, "upload body over %d bytes", spec.MaxUploadBody)
		return
	case err != io.EOF:
		return
	}
	v.mu.Lock()
	resp := spec.UploadResponse{Bytes: got, TotalBytes: v.received, TS: v.ul.seconds()}
	if c := httpx.ConnFrom(r.Context()); c != nil {
		v.uploadConnections[c] = true
	}
	v.mu.Unlock()
	httpx.WriteJSON(w, http.StatusOK, resp)
}

// send writes n bytes (n < 0: without end) of the random data, from
// offset off of the stream, to w, counting them in v; after each write,
// after (when not nil) may stop it with an error. It returns the error
// that stopped it, nil when all n went.
func (p *Provider) send(w io.Writer, v *view, off, n int64, after func(int64) error) error {
	off %= dataSize
	for n != 0 {
		chunk := min(64<<10, dataSize-off)
		if n > 0 {
			chunk = min(chunk, n)
			n -= chunk
		}
		k, err := w.Write(p.data[off : off+chunk])
		now := time.Now()
		v.mu.Lock()
		v.dl.mark(now)
		v.sent += int64(k)
		v.mu.Unlock()
		p.OnBytes(int64(k), 0)
		if err != nil {
			return err
		}
		if after != nil {
			if err := after(int64(k)); err != nil {
				return err
			}
		}
		off = (off + chunk) % dataSize
	}
	return nil
}

// receive reads r to its end, counting what it reads in v (and in st, a
// v2 upload stream, when not nil); after each read, after (when not nil)
// may stop it with an error. It returns the error that stopped it (io.EOF
// at the end).
func (p *Provider) receive(r io.Reader, v *view, st *ulStream, after func(int64) error) error {
	buf := make([]byte, 64<<10)
	for {
		k, err := r.Read(buf)
		if k > 0 {
			now := time.Now()
			v.mu.Lock()
			v.ul.mark(now)
			v.received += int64(k)
			if st != nil {
				st.read += uint64(k)
			}
			v.mu.Unlock()
			p.OnBytes(0, int64(k))
			if after != nil {
				if aerr := after(int64(k)); aerr != nil {
					return aerr
				}
			}
		}
		if err != nil {
			return err
		}
	}
}

// Merge puts the server's view of the test (bytes, timing, TCP_INFO) into
// the client's record.
func (p *Provider) Merge(rec *schemas.Record, s *testserver.Session) error {
	keys, err := testserver.KeysOf[*schemas.Speedtest](rec, schemas.SpeedtestName)
	if err != nil {
		return err
	}
	acked, reports := p.merge(keys, s)
	rec.Server.Plausibility = testserver.SpeedtestPlausibility(keys, acked, reports)
	return nil
}

// merge puts the server's view into keys and returns, for the
// cross-check, the bytes the client acknowledged (TCP_INFO) and the v2
// upload reports.
func (p *Provider) merge(keys *schemas.Speedtest, s *testserver.Session) (uint64, []goodput.Sample) {
	v := p.viewOf(s)
	v.mu.Lock()
	defer v.mu.Unlock()
	sv := &schemas.SpeedtestServer{
		BytesSent:         uint64(v.sent),
		BytesReceived:     uint64(v.received),
		DownloadDurationS: v.dl.seconds(),
		UploadDurationS:   v.ul.seconds(),
	}
	if sv.UploadDurationS > 0 {
		sv.UploadMbps = float64(v.received) * 8 / 1e6 / sv.UploadDurationS
	}
	var acked uint64
	if len(v.tcp) > 0 {
		var rtt, rttvar float64
		var retr uint64
		for _, info := range v.tcp {
			acked += info.BytesAcked
			rtt += float64(info.RTT) / float64(time.Millisecond)
			rttvar += float64(info.RTTVar) / float64(time.Millisecond)
			retr += info.TotalRetrans
		}
		rtt /= float64(len(v.tcp))
		rttvar /= float64(len(v.tcp))
		sv.TCPRTTMS, sv.TCPRTTVarMS, sv.TCPRetransmits = &rtt, &rttvar, &retr
	}
	sv.Download = v.phaseRecord("download")
	sv.Upload = v.phaseRecord("upload")
	keys.ServerView = sv
	return acked, append([]goodput.Sample(nil), v.ulReports...)
}
