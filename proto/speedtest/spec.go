// Package speedtest holds the constants and messages of the speedtest
// protocol, shared by the test server (testserver/speedtest) and the agent's
// client (agent/speedtest). The protocol is described in spec/speedtest.md;
// this package mirrors it and nothing else. Its first step is the
// negotiation of proto/negotiate, at NegotiatePath.
package speedtest

import "github.com/neubot/neubot/proto/negotiate"

// Version of the protocol described in spec/speedtest.md.
const Version = "v1.0.0"

// Paths of the protocol.
const (
	NegotiatePath = "/speedtest/negotiate"
	LatencyPath   = "/speedtest/latency"
	DownloadPath  = "/speedtest/download"
	UploadPath    = "/speedtest/upload"
	CollectPath   = "/speedtest/collect"
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
