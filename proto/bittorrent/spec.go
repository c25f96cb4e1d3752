// Package bittorrent holds the constants of the BitTorrent differential test
// (spec/bittorrent.md), shared by the test server (testserver/bittorrent)
// and the agent's client (agent/bittorrent), and the JSON bodies of its HTTP
// steps. It mirrors the document and nothing else.
package bittorrent

import "time"

// Version of the protocol described in spec/bittorrent.md.
const Version = "v2.3.0"

// Paths of the HTTP steps (on the test server's HTTP port).
const (
	NegotiatePath = "/bittorrent/negotiate"
	StartPath     = "/bittorrent/start"
	CollectPath   = "/bittorrent/collect"
)

// Default ports of the raw TCP listeners.
const (
	// BitTorrentPort is the first port of BitTorrent's classic range
	// 6881-6889, the one throttlers match on.
	BitTorrentPort = 6881
	// NeutralPort is a port with no known application.
	NeutralPort = 9776
	// WebPort is HTTPS's: the port policies leave alone when they throttle
	// "everything but the web".
	WebPort = 443
)

// Peer wire (BEP 3).
const (
	Protocol       = "BitTorrent protocol"
	HandshakeLen   = 1 + len(Protocol) + 8 + 20 + 20
	InfoHashOffset = 1 + len(Protocol) + 8
	PeerIDOffset   = InfoHashOffset + 20
	// Message ids.
	MsgChoke         = 0
	MsgUnchoke       = 1
	MsgInterested    = 2
	MsgNotInterested = 3
	MsgHave          = 4
	MsgBitfield      = 5
	MsgRequest       = 6
	MsgPiece         = 7
	MsgCancel        = 8
	// BlockSize is the length of every request (16 KiB, what clients use).
	BlockSize = 16 << 10
	// PieceBlocks is the blocks per piece (256 KiB pieces).
	PieceBlocks = 16
	// Pieces is the size of the torrent in pieces; the bitfield has
	// Pieces/8 bytes.
	Pieces = 1024
	// Pipeline is the fewest requests a leecher keeps outstanding; it keeps
	// more as throughput × round-trip time grows (MaxPipeline at most).
	// (v1 kept 16, which capped a flow at 256 KiB per round trip.)
	Pipeline    = 4
	MaxPipeline = 1024
	// MaxMessage bounds the length prefix a peer accepts.
	MaxMessage = 1 + 8 + BlockSize
)

// Flow keys: the 20 bytes at InfoHashOffset of the first bytes of every
// flow, HMAC-SHA256(token, FlowKeyLabel + "|" + kind + "|" + direction +
// "|" + index), truncated.
const FlowKeyLabel = "neubot-bittorrent-v1"

// Limits of the test.
const (
	// TestTimeout is the per-test timer of a BitTorrent token.
	TestTimeout = 90 * time.Second
	// MaxFlows is the most flows one test may open.
	MaxFlows = 128
	// HandshakeTimeout bounds the wait for a flow's first bytes.
	HandshakeTimeout = 10 * time.Second
	// StallTimeout ends a flow that moved no byte for this long: the
	// evidence "timeout" of a stalled (blocked) flow.
	StallTimeout = 3 * time.Second
	// MaxHosts bounds the server addresses a test spreads its flows over.
	MaxHosts = 8
	// MaxCollectBody bounds the record posted to collect.
	MaxCollectBody = 1 << 20
	// MaxStartBody bounds a start request.
	MaxStartBody = 4 << 10
)

// Bounds of the parameters a client may ask for in StartRequest.
const (
	MinFlowDuration = 200 * time.Millisecond
	MaxFlowDuration = 10 * time.Second
	MinSampleEvery  = 50 * time.Millisecond
	MaxSampleEvery  = time.Second
	MaxFlowBytes    = 64 << 20
)

// StartRequest is the body of POST StartPath: the parameters of the flows,
// which the server needs to be the receiver of upload flows.
type StartRequest struct {
	FlowDurationS float64 `json:"flow_duration_s"`
	SampleEveryS  float64 `json:"sample_every_s"`
	// MaxFlowBytes ends a flow early once its receiver has read this many
	// bytes (0: no limit), bounding the data a test uses on fast links.
	MaxFlowBytes int64 `json:"max_flow_bytes"`
	// KneeBytes (since v2.3.0; 0 or absent: none) makes every flow run
	// until its receiver has read this many bytes and then as long
	// again, flow_duration_s at most (0 to MaxFlowBytes): the flows'
	// tails then follow the first KneeBytes, where a throttle triggered
	// by a byte count of up to KneeBytes has begun.
	KneeBytes int64 `json:"knee_bytes,omitempty"`
}

// StartResponse answers a start request with the ports to connect to
// and, since v2, the web port (0: none) and the server's addresses for the
// flows (IP literals, at most MaxHosts; empty: the HTTP host).
type StartResponse struct {
	BitTorrentPort int      `json:"bittorrent_port"`
	NeutralPort    int      `json:"neutral_port"`
	WebPort        int      `json:"web_port,omitempty"`
	Hosts          []string `json:"hosts,omitempty"`
}

// Decision thresholds of methodology versions 1 and 2 (spec/bittorrent.md).
const (
	Alpha      = 0.05
	MinDiff    = 0.25
	MinSamples = 8
	// MinPairs is the fewest pairs of flows a version 2.1 comparison
	// decides on: below, even every pair slower cannot make the sign
	// test's p-value (2^-n) fall below Alpha.
	MinPairs = 5
)
