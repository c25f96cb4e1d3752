// Package speedtest holds the constants and messages of the speedtest
// protocol, shared by the test server (testserver/speedtest) and the agent's
// client (agent/speedtest). The protocol is described in spec/speedtest.md;
// this package mirrors it and nothing else. Its first step is the
// negotiation of proto/negotiate, at NegotiatePath.
package speedtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/neubot/neubot/proto/negotiate"
)

// Version of the protocol described in spec/speedtest.md.
const Version = "v2.13.1"

// Paths of the protocol.
const (
	NegotiatePath = "/speedtest/negotiate"
	LatencyPath   = "/speedtest/latency"
	DownloadPath  = "/speedtest/download"
	UploadPath    = "/speedtest/upload"
	CollectPath   = "/speedtest/collect"

	// Methodology 2: each request is upgraded to a raw stream.
	V2DownloadPath = "/speedtest/v2/download"
	V2UploadPath   = "/speedtest/v2/upload"
	V2PingPath     = "/speedtest/v2/ping"
)

// Limits and timers.
const (
	// TestTimeout is the per-test timer (negotiate.TestTimeout): a token
	// whose test has not collected within it is revoked and its slot freed.
	TestTimeout = negotiate.TestTimeout
	// MaxRange is the largest download range of one GET.
	MaxRange = 64 << 20
	// MaxUploadBody is the largest body of one upload POST.
	MaxUploadBody = 64 << 20
	// MaxCollectBody bounds the record posted to collect.
	MaxCollectBody = 1 << 20
)

// UploadResponse answers every upload POST with what the server measured
// as receiver, for the whole test so far (all connections).
type UploadResponse struct {
	// Bytes received in this request.
	Bytes int64 `json:"bytes"`
	// TotalBytes received by all upload requests of this token so far.
	TotalBytes int64 `json:"total_bytes"`
	// TS is the server's time of the last byte, in seconds since the first
	// upload byte of this token.
	TS float64 `json:"t_s"`
}

// Upgrade is the protocol named in the Upgrade header of the v2 requests;
// the server answers 101 Switching Protocols and the connection becomes a
// raw stream (download: the server sends; upload: the client sends and the
// server sends report lines; ping: PingSize-byte messages echoed).
const Upgrade = "neubot-speedtest-v2"

// Methodology 2's stream constants.
const (
	// MaxStream bounds one v2 download or upload stream: the server
	// stops sending or reading after it.
	MaxStream = 15 * time.Second
	// ReportEvery is the period of the server's upload reports.
	ReportEvery = 100 * time.Millisecond
	// MaxReportLine bounds one report line, newline included.
	MaxReportLine = 256
	// PingSize is the size of one ping message (echoed as is).
	PingSize = 16
	// MaxPingStream bounds the life of a ping connection.
	MaxPingStream = 30 * time.Second
)

// ParseUploadReport decodes one report line (JSON and its newline, at most
// MaxReportLine bytes), strictly: no unknown fields, no negative values.
func ParseUploadReport(line []byte) (UploadReport, error) {
	var r UploadReport
	if len(line) > MaxReportLine {
		return r, fmt.Errorf("upload report of %d bytes, more than %d", len(line), MaxReportLine)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("upload report: %w", err)
	}
	if dec.More() {
		return r, errors.New("upload report: trailing data")
	}
	if r.TS < 0 || r.TS > 600 || r.Bytes < 0 || r.Arrived < 0 || math.IsNaN(r.TS) {
		return r, fmt.Errorf("upload report: t_s %g, bytes %d or arrived %d out of range", r.TS, r.Bytes, r.Arrived)
	}
	return r, nil
}

// UploadReport is one line (JSON, then a newline) of the server's reports
// on a v2 upload stream: what the server received from this token so far
// over all its v2 upload connections.
type UploadReport struct {
	// TS is the server's time since the first v2 upload connection of
	// this token reached it, seconds.
	TS float64 `json:"t_s"`
	// Bytes is the payload the server read over all the token's upload
	// streams.
	Bytes int64 `json:"bytes"`
	// Arrived is the payload that reached the server's TCP over those
	// streams, in order or not (methodology 2's counter: data segments
	// received times the segment size, from TCP_INFO, never below the
	// bytes read); 0 where the server cannot read TCP_INFO.
	Arrived int64 `json:"arrived,omitempty"`
}

// Counted is the payload methodology 2 counts for the report: the larger
// of the bytes arrived and read (the client's upload series, and the
// server's copy of it that the cross-check at collect reads).
func (r UploadReport) Counted() uint64 { return uint64(max(r.Bytes, r.Arrived)) }
