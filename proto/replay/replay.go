// Package replay holds the paths, message types and constants of the replay
// differential test (spec/replay.md); the traces and the flows both ends
// play are in proto/replay/trace.
package replay

import "time"

// Version of the protocol described in spec/replay.md.
const Version = "v1.1.0"

// Paths and limits of the protocol.
const (
	NegotiatePath = "/replay/negotiate"
	StartPath     = "/replay/start"
	CollectPath   = "/replay/collect"

	TestTimeout      = 90 * time.Second
	MaxFlows         = 32
	HandshakeTimeout = 10 * time.Second
	StallTimeout     = 3 * time.Second
	MaxCollectBody   = 1 << 20
	MaxStartBody     = 4 << 10
	MinFlowDuration  = 200 * time.Millisecond
	MaxFlowDuration  = 10 * time.Second
	MinSampleEvery   = 50 * time.Millisecond
	MaxSampleEvery   = time.Second
)

// StartRequest is the body of POST StartPath.
type StartRequest struct {
	Trace         string  `json:"trace"`
	TraceVersion  int     `json:"trace_version"`
	FlowDurationS float64 `json:"flow_duration_s"`
	SampleEveryS  float64 `json:"sample_every_s"`
}

// StartResponse answers it with the address of the flows (Host: an IP
// literal, or empty for the HTTP host) and the trace's version.
type StartResponse struct {
	Host         string `json:"host,omitempty"`
	Port         int    `json:"port"`
	TraceVersion int    `json:"trace_version"`
}
