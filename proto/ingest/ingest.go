// Package ingest is the collector's ingest protocol: agents and test servers
// POST records (schemas.Record, one JSON object a line) to Path and read a
// Response. The contract, answer by answer, is in spec/ingest.md. Forwarder
// is its client, with a write-ahead spool: the test server and the agent
// deliver through it.
package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
)

// Version of the protocol described in spec/ingest.md.
const Version = "v1.1.0"

// Path is where agents and test servers submit records.
const Path = "/api/v1/measurements"

// ContentType is the Content-Type a client sends; ContentTypes are all those
// the collector accepts. Bodies may be sent with Content-Encoding: gzip.
const ContentType = "application/x-ndjson"

// ContentTypes lists every Content-Type the collector accepts for a body.
var ContentTypes = []string{"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonl"}

// Limits of one body: a body over one of them gets 413 and nothing of it is
// accepted, so the client can split it and send it again.
const (
	MaxBodyBytes    = 32 << 20  // compressed, as sent
	MaxDecodedBytes = 128 << 20 // after gunzip
	MaxLines        = 100_000
	// MaxRejectsListed is how many refused lines a Response lists.
	MaxRejectsListed = 1000
)

// Rejected is one line of a body that was not accepted.
type Rejected struct {
	Line   int    `json:"line"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Response is the JSON body of every answer of the ingest endpoint.
type Response struct {
	// Accepted counts the lines of this body that are now durably spooled.
	Accepted int `json:"accepted"`
	// RejectedCount counts the lines refused; Rejected lists the first
	// MaxRejectsListed of them with line number (1-based), field path and
	// reason.
	RejectedCount int        `json:"rejected_count"`
	Rejected      []Rejected `json:"rejected,omitempty"`
	Error         string     `json:"error,omitempty"`
}

// GzipWriter writes a body for NewRequest: what is written to it (records,
// one JSON object a line) is gzip'ed.
type GzipWriter struct {
	buf bytes.Buffer
	zw  *gzip.Writer
}

// NewGzipWriter starts a body compressed at level, a compress/gzip level
// (gzip.DefaultCompression, gzip.BestSpeed, ...).
func NewGzipWriter(level int) (*GzipWriter, error) {
	w := &GzipWriter{}
	zw, err := gzip.NewWriterLevel(&w.buf, level)
	if err != nil {
		return nil, err
	}
	w.zw = zw
	return w, nil
}

// Write compresses p into the body.
func (w *GzipWriter) Write(p []byte) (int, error) { return w.zw.Write(p) }

// Body ends the compressed stream and returns the body.
func (w *GzipWriter) Body() ([]byte, error) {
	if err := w.zw.Close(); err != nil {
		return nil, err
	}
	return w.buf.Bytes(), nil
}

// NewRequest makes the POST of body, gzip'ed records (GzipWriter), to the
// ingest path of the collector at collectorURL (its base URL).
func NewRequest(ctx context.Context, collectorURL string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, collectorURL+Path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("Content-Encoding", "gzip")
	return req, nil
}
