package collector

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

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

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func (c *Collector) fail(w http.ResponseWriter, code int, format string, args ...any) {
	c.metrics.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	writeJSON(w, code, ingest.Response{Error: fmt.Sprintf(format, args...)})
}

// errTooLarge marks a body over one of the limits.
var errTooLarge = errors.New("request body too large")

// limitReader fails with errTooLarge, rather than a silent EOF, past n bytes.
type limitReader struct {
	r io.Reader
	n int64
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
	return n, err
}

// handleIngest takes NDJSON (optionally gzip'ed), validates every line,
// spools the valid ones durably and answers 202 when all lines were
// accepted, 400 with the rejected lines otherwise.
func (c *Collector) handleIngest(w http.ResponseWriter, r *http.Request) {
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	default:
		w.Header().Set("Retry-After", "1")
		c.fail(w, http.StatusServiceUnavailable, "too many requests in progress; nothing of this body was accepted: retry later")
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
	body := http.MaxBytesReader(w, r.Body, c.cfg.MaxBodyBytes)
	var src io.Reader = body
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			c.fail(w, http.StatusBadRequest, "body is not valid gzip: %v", err)
			return
		}
		defer zr.Close()
		src = zr
	default:
		c.fail(w, http.StatusUnsupportedMediaType, "Content-Encoding %.32q is not supported (use gzip or none)", enc)
		return
	}
	src = &limitReader{r: src, n: c.cfg.MaxDecodedBytes}

	peer, _, _ := net.SplitHostPort(r.RemoteAddr)
	resp := ingest.Response{}
	var entries []spool.Entry
	lineNo := 0
	br := bufio.NewReaderSize(src, 64<<10)
	for {
		line, tooLong, err := readLine(br, schemas.MaxRecordBytes)
		if err != nil && err != io.EOF {
			var maxErr *http.MaxBytesError
			switch {
			case errors.Is(err, errTooLarge), errors.As(err, &maxErr):
				c.fail(w, http.StatusRequestEntityTooLarge, "body is over the limit of %d bytes (%d decompressed): split it; nothing of it was accepted", c.cfg.MaxBodyBytes, c.cfg.MaxDecodedBytes)
			default:
				c.fail(w, http.StatusBadRequest, "cannot read body after line %d: %v; nothing of it was accepted", lineNo, err)
			}
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
			if rec, verr := schemas.DecodeRecord(line, now); verr != nil {
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
	if err := c.spool.Append(r.Context(), entries); err != nil {
		c.log.Error("spool append failed", "err", err, "records", len(entries))
		w.Header().Set("Retry-After", "5")
		c.fail(w, http.StatusServiceUnavailable, "cannot store the records now; nothing of this body was accepted: retry later")
		return
	}
	resp.Accepted = len(entries)
	c.metrics.accepted.Add(float64(len(entries)))
	c.metrics.rejected.Add(float64(resp.RejectedCount))
	code := http.StatusAccepted
	if resp.RejectedCount > 0 {
		code = http.StatusBadRequest
	}
	c.metrics.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	writeJSON(w, code, resp)
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
