// Package spec holds the constants of the speedtest protocol, shared by the
// test server (testserver/speedtest) and the agent's client
// (agent/speedtest). The protocol is described in spec/speedtest.md; this
// package mirrors it and nothing else.
package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Version of the protocol described in spec/speedtest.md.
const Version = "v2.0.0"

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
	if r.TS < 0 || r.TS > 600 || r.Bytes < 0 || math.IsNaN(r.TS) {
		return r, fmt.Errorf("upload report: t_s %g or bytes %d out of range", r.TS, r.Bytes)
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
	// Bytes is the payload received over all the token's upload streams.
	Bytes int64 `json:"bytes"`
}

// TokenHeader carries the token on every test request, as
// "Authorization: Bearer <token>".
const TokenHeader = "Authorization"

// Limits and timers.
const (
	// LongPoll is how long the server holds a negotiate request of an
	// agent that may not start yet before answering "wait, ask again".
	LongPoll = 15 * time.Second
	// QueueGrace is how long a queued token survives without the agent
	// asking again; then its place is given away.
	QueueGrace = 2 * LongPoll
	// TestTimeout is the per-test timer: a token whose test has not
	// collected within it is revoked and its slot freed.
	TestTimeout = 30 * time.Second
	// MaxRange is the largest download range of one GET.
	MaxRange = 64 << 20
	// MaxUploadBody is the largest body of one upload POST.
	MaxUploadBody = 64 << 20
	// MaxCollectBody bounds the record posted to collect.
	MaxCollectBody = 1 << 20
	// MaxNegotiateBody bounds a negotiate request.
	MaxNegotiateBody = 4 << 10
)

// NegotiateRequest is the body of POST NegotiatePath.
type NegotiateRequest struct {
	// Token is empty on the first request and the token received
	// otherwise, to keep the agent's place in the queue.
	Token string `json:"token,omitempty"`
	// MeasurementUID is the UUID of the measurement about to start.
	MeasurementUID string `json:"measurement_uid"`
}

// NegotiateResponse answers a negotiate request.
type NegotiateResponse struct {
	Token string `json:"token"`
	// Unchoked: the agent may start now; the token is live for TTLS.
	Unchoked bool `json:"unchoked"`
	// QueuePos is 0 when unchoked, else the number of agents ahead.
	QueuePos int `json:"queue_pos"`
	// TTLS is the life of the token in seconds: TestTimeout once
	// unchoked, QueueGrace while queued.
	TTLS float64 `json:"ttl_s"`
}

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

// Error is the JSON body of every 4xx and 5xx answer.
type Error struct {
	Error string `json:"error"`
}
