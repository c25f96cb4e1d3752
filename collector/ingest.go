package collector

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/ratelimit"
	"github.com/neubot/neubot/internal/spool"
	"github.com/neubot/neubot/proto/ingest"
	"github.com/neubot/neubot/schemas"
)

// Limits of one ingest request. A body over a limit gets 413 and nothing of
// it is spooled, so the client can split it and send it again.
// (the protocol's, proto/ingest; a collector may be configured lower).
const (
	DefaultMaxBodyBytes    = ingest.MaxBodyBytes
	DefaultMaxDecodedBytes = ingest.MaxDecodedBytes
	DefaultMaxLines        = ingest.MaxLines
)

func (c *Collector) fail(w http.ResponseWriter, code int, format string, args ...any) {
	// The body may be unread: without this, the server would try to read
	// (discard) it before answering, and a stalled client would get no
	// answer and keep its connection.
	w.Header().Set("Connection", "close")
	c.metrics.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	httpx.WriteJSON(w, code, ingest.Response{Error: fmt.Sprintf(format, args...)})
}

// errTooLarge marks a body over one of the limits.
var errTooLarge = errors.New("request body too large")

// errTooSlow marks a body that stalled past a read deadline or fell below
// the minimum rate; errOverVolume a body past its address's volume budget.
var (
	errTooSlow    = errors.New("request body too slow")
	errOverVolume = errors.New("address over its volume budget")
)

// pacedBody sets a deadline before every read of the body and fails with
// errTooSlow when a read times out or when, past the grace period, the
// body's average rate is below minRate bytes a second.
type pacedBody struct {
	r       io.ReadCloser
	rc      *http.ResponseController
	perRead time.Duration
	minRate float64
	grace   time.Duration
	start   time.Time
	n       int64
}

func (b *pacedBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.perRead))
	n, err := b.r.Read(p)
	b.n += int64(n)
	var ne net.Error
	if err != nil && (errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())) {
		return n, fmt.Errorf("%w: no byte for %s", errTooSlow, b.perRead)
	}
	if el := time.Since(b.start) - b.grace; el > 0 && b.minRate > 0 && float64(b.n) < b.minRate*el.Seconds() && err != io.EOF {
		return n, fmt.Errorf("%w: %d bytes in %s, under %.0f bytes/s", errTooSlow, b.n, time.Since(b.start).Round(time.Millisecond), b.minRate)
	}
	return n, err
}

func (b *pacedBody) Close() error { return b.r.Close() }

// strict makes the minimum rate apply to the bytes read from now on, after
// grace.
func (b *pacedBody) strict(now time.Time, grace time.Duration) {
	b.start, b.grace, b.n = now, grace, 0
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// takeSlot waits up to SlotWait for one of the MaxConcurrent slots, in
// arrival order; false when none came free (503).
func (c *Collector) takeSlot(ctx context.Context) bool {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(c.cfg.SlotWait)
	defer t.Stop()
	select {
	case c.slots <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// bodyError answers a failed read of the body.
func (c *Collector) bodyError(w http.ResponseWriter, err error, lineNo int, key string) {
	var maxErr *http.MaxBytesError
	switch {
	case errors.Is(err, errTooLarge), errors.As(err, &maxErr):
		c.fail(w, http.StatusRequestEntityTooLarge, "body is over the limit of %d bytes (%d decompressed): split it; nothing of it was accepted", c.cfg.MaxBodyBytes, c.cfg.MaxDecodedBytes)
	case errors.Is(err, errTooSlow):
		c.metrics.refused.WithLabelValues("slow_body").Inc()
		c.log.Info("ingest: body too slow; closed", "client", key, "err", err)
		w.Header().Set("Connection", "close")
		c.fail(w, http.StatusRequestTimeout, "%v; nothing of this body was accepted", err)
	case errors.Is(err, errOverVolume):
		c.refuse(w, "per_address_volume", key, c.volume.RetryAfter(key), "%s sent more than its volume budget (%d bytes a second, %d at once); nothing of this body was accepted: retry later", key, c.cfg.AddressBytesPerSecond, c.cfg.AddressBurstBytes)
	default:
		c.fail(w, http.StatusBadRequest, "cannot read body after line %d: %v; nothing of it was accepted", lineNo, err)
	}
}

// refuse answers 429 with Retry-After, counted by reason.
func (c *Collector) refuse(w http.ResponseWriter, reason, key string, retry time.Duration, format string, args ...any) {
	c.metrics.refused.WithLabelValues(reason).Inc()
	c.log.Debug("ingest: refused", "reason", reason, "client", key)
	w.Header().Set("Retry-After", strconv.Itoa(int(max(time.Second, retry).Round(time.Second)/time.Second)))
	c.fail(w, http.StatusTooManyRequests, format, args...)
}

// limitReader fails with errTooLarge, rather than a silent EOF, past n
// bytes, and with errOverVolume when charge refuses what was read.
type limitReader struct {
	r      io.Reader
	n      int64
	charge func(int) bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		var one [1]byte
		if k, _ := l.r.Read(one[:]); k > 0 {
			return 0, errTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if n > 0 && l.charge != nil && !l.charge(n) {
		return n, errOverVolume
	}
	return n, err
}

// handleIngest takes NDJSON (optionally gzip'ed), validates every line,
// spools the valid ones durably and answers 202 when all lines were
// accepted, 400 with the rejected lines otherwise.
//
// Abuse bounds (see README, "Robustness"): one address (an IPv6 /64) has at
// most MaxPerAddress requests in progress and a volume budget of decoded
// bytes (429 + Retry-After past either); every read of the body has a
// deadline and the body must keep up a minimum rate (408 otherwise); an
// ingest slot, of which there are MaxConcurrent, is taken only once the
// first bytes of the body arrived, so connections that send headers and
// stall hold no slot.
func (c *Collector) handleIngest(w http.ResponseWriter, r *http.Request) {
	client := httpx.ClientAddr(r, c.cfg.TrustProxy)
	key := ratelimit.Key(client)
	if !c.perAddr.Acquire(key) {
		c.refuse(w, "per_address_concurrency", key, time.Second, "too many requests from %s in progress (at most %d); nothing of this body was accepted: retry later", key, c.cfg.MaxPerAddress)
		return
	}
	defer c.perAddr.Release(key)
	if !c.volume.AllowN(key, 1, time.Now()) {
		c.refuse(w, "per_address_volume", key, c.volume.RetryAfter(key), "%s sent more than its volume budget (%d bytes a second, %d at once); nothing of this body was accepted: retry later", key, c.cfg.AddressBytesPerSecond, c.cfg.AddressBurstBytes)
		return
	}
	now := time.Now()
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !slices.Contains(ingest.ContentTypes, mt) {
		c.fail(w, http.StatusUnsupportedMediaType, "Content-Type must be application/x-ndjson (one JSON record per line), got %.64q", r.Header.Get("Content-Type"))
		return
	}
	if r.ContentLength > c.cfg.MaxBodyBytes {
		c.fail(w, http.StatusRequestEntityTooLarge, "body of %d bytes is over the limit of %d bytes: split it", r.ContentLength, c.cfg.MaxBodyBytes)
		return
	}
	paced := &pacedBody{r: r.Body, rc: http.NewResponseController(w), perRead: c.cfg.ReadTimeout, minRate: float64(c.cfg.MinBodyRate), grace: c.cfg.ReadTimeout, start: now}
	limited := http.MaxBytesReader(w, paced, c.cfg.MaxBodyBytes)
	// Read the first PrereadBytes of the body before taking a slot: a
	// client that sends headers and then nothing, or trickles, holds only
	// its own per-address place. Memory grows only with what arrived.
	var pre bytes.Buffer
	_, err = pre.ReadFrom(io.LimitReader(limited, c.cfg.PrereadBytes))
	if err != nil {
		c.bodyError(w, err, 0, key)
		return
	}
	whole := int64(pre.Len()) < c.cfg.PrereadBytes
	if !whole {
		// A larger body: from now on it holds a slot, so it must keep
		// up the minimum rate at once (a second of grace).
		paced.strict(time.Now(), time.Second)
	}
	slotStart := time.Now()
	if !c.takeSlot(r.Context()) {
		w.Header().Set("Retry-After", "1")
		c.fail(w, http.StatusServiceUnavailable, "too many requests in progress; nothing of this body was accepted: retry later")
		return
	}
	defer func() { <-c.slots }()
	slotWait := time.Since(slotStart)
	var rest io.Reader = limited
	if whole {
		rest = eofReader{}
	}
	body := bufio.NewReaderSize(io.MultiReader(&pre, rest), 64<<10)
	var src io.Reader = body
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			if errors.Is(err, errTooSlow) {
				c.bodyError(w, err, 0, key)
				return
			}
			c.fail(w, http.StatusBadRequest, "body is not valid gzip: %v", err)
			return
		}
		defer zr.Close()
		src = zr
	default:
		c.fail(w, http.StatusUnsupportedMediaType, "Content-Encoding %.32q is not supported (use gzip or none)", enc)
		return
	}
	// The body was admitted while its address had budget left: it is
	// charged whole as it is read (the bucket may go below zero, bounded
	// by MaxDecodedBytes times MaxPerAddress), so that a body larger than
	// the burst can pass too, and the address then waits for the refill.
	src = &limitReader{r: src, n: c.cfg.MaxDecodedBytes, charge: func(n int) bool { c.volume.Charge(key, float64(n), time.Now()); return true }}

	peer, _, _ := net.SplitHostPort(r.RemoteAddr)
	if c.cfg.TrustProxy {
		peer = client
	}
	resp := ingest.Response{}
	var entries []spool.Entry
	lineNo := 0
	br := bufio.NewReaderSize(src, 64<<10)
	for {
		line, tooLong, err := readLine(br, schemas.MaxRecordBytes)
		if err != nil && err != io.EOF {
			c.bodyError(w, err, lineNo, key)
			return
		}
		if len(line) == 0 && !tooLong && err == io.EOF {
			break
		}
		lineNo++
		if lineNo > c.cfg.MaxLines {
			c.fail(w, http.StatusRequestEntityTooLarge, "body has more than %d lines: split it; nothing of it was accepted", c.cfg.MaxLines)
			return
		}
		switch {
		case tooLong:
			resp.RejectedCount++
			reject(&resp, lineNo, schemas.FieldError{Reason: fmt.Sprintf("line is longer than the limit of %d bytes", schemas.MaxRecordBytes)})
		case len(bytes.TrimSpace(line)) == 0:
			// A blank line is no record; it still counts in the numbering,
			// so that line numbers are those of the file that was sent.
		default:
			rec, verr := schemas.DecodeRecord(line, now)
			if verr == nil && rec.StartTime.Before(now.Add(-c.cfg.MaxStartAge)) {
				verr = &schemas.ValidationError{Fields: []schemas.FieldError{{Path: "start_time", Reason: fmt.Sprintf("is older than the collector accepts (%d days before now)", int(c.cfg.MaxStartAge.Hours()/24))}}}
			}
			if verr != nil {
				var ve *schemas.ValidationError
				if !errors.As(verr, &ve) {
					ve = &schemas.ValidationError{Fields: []schemas.FieldError{{Reason: verr.Error()}}}
				}
				for i, fe := range ve.Fields {
					if i == 0 {
						resp.RejectedCount++
					}
					reject(&resp, lineNo, fe)
				}
			} else {
				entries = append(entries, spool.Entry{Received: now, Peer: peer, Record: bytes.Clone(line), Decoded: rec})
			}
		}
		if err == io.EOF {
			break
		}
	}
	if len(entries) == 0 && resp.RejectedCount == 0 {
		c.fail(w, http.StatusBadRequest, "body holds no records")
		return
	}
	if !c.agentsAllowed(w, r, entries) {
		return
	}
	spoolStart := time.Now()
	if err := c.spool.Append(r.Context(), entries); err != nil {
		c.log.Error("spool append failed", "err", err, "records", len(entries))
		w.Header().Set("Retry-After", "5")
		c.fail(w, http.StatusServiceUnavailable, "cannot store the records now; nothing of this body was accepted: retry later")
		return
	}
	spoolEnd := time.Now()
	resp.Accepted = len(entries)
	c.metrics.accepted.Add(float64(len(entries)))
	c.metrics.rejected.Add(float64(resp.RejectedCount))
	code := http.StatusAccepted
	if resp.RejectedCount > 0 {
		code = http.StatusBadRequest
	}
	c.metrics.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	httpx.WriteJSON(w, code, resp)
	if code == http.StatusAccepted {
		c.metrics.phases.WithLabelValues("slot_wait").Observe(slotWait.Seconds())
		c.metrics.phases.WithLabelValues("read").Observe(spoolStart.Sub(now).Seconds())
		c.metrics.phases.WithLabelValues("spool").Observe(spoolEnd.Sub(spoolStart).Seconds())
		c.metrics.phases.WithLabelValues("total").Observe(time.Since(now).Seconds())
	}
}

func reject(resp *ingest.Response, line int, fe schemas.FieldError) {
	if len(resp.Rejected) < ingest.MaxRejectsListed {
		resp.Rejected = append(resp.Rejected, ingest.Rejected{Line: line, Field: fe.Path, Reason: fe.Reason})
	}
}

// readLine returns the next line without its newline. A line longer than
// max is consumed up to its newline and reported as tooLong, without being
// kept in memory. err is io.EOF at the end of the input.
func readLine(br *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > max+1 { // +1: the newline itself
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case err == nil:
			return bytes.TrimRight(buf, "\r\n"), tooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return bytes.TrimRight(buf, "\r\n"), tooLong, err
		}
	}
}
