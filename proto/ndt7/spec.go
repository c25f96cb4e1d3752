// Package ndt7 holds the constants and messages of ndt7 as Neubot speaks it
// (spec/ndt7.md): the ndt7 protocol of M-Lab's specification, version
// v0.11.0, plus the Neubot additions (negotiation, collect, a locate-style
// answer and the browser page). It is shared by the test server
// (testserver/ndt7) and the agent's client (agent/ndt7) and mirrors the
// specification and nothing else.
package ndt7

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/neubot/neubot/schemas"
)

// Version of ndt7 specification implemented.
const Version = "v0.11.0"

// Paths and subprotocol of ndt7.
const (
	DownloadPath = "/ndt/v7/download"
	UploadPath   = "/ndt/v7/upload"
	// SecWebSocketProtocol is the WebSocket subprotocol; client and server
	// both send it in the handshake.
	SecWebSocketProtocol = "net.measurementlab.ndt.v7"
)

// Neubot's additions, all under /ndt7/.
const (
	// NegotiatePath takes the speedtest's negotiate request and answer
	// (spec/speedtest.md); the token then goes in AccessTokenParam.
	NegotiatePath = "/ndt7/negotiate"
	// LocatePath answers like M-Lab's locate v2 "nearest" API: one
	// result whose URLs carry a fresh, already unchoked token. A stock
	// ndt7 client given -locate.url http://HOST/ndt7/v2/nearest finds it
	// (the locate client appends "ndt/ndt7").
	LocatePath = "/ndt7/v2/nearest/ndt/ndt7"
	// CollectPath takes the client's record (Authorization: Bearer TOKEN)
	// and answers with the authoritative one.
	CollectPath = "/ndt7/collect"
	// PagePath is the browser test page; its files are under PagePath +
	// "static/".
	PagePath = "/ndt7/"
	// AccessTokenParam is the query parameter carrying the token on the
	// ndt7 upgrade requests, as M-Lab's locate URLs do.
	AccessTokenParam = "access_token"
)

// Message sizes and timing.
const (
	// MinMessageSize and MaxMessageSize bound binary messages (the spec:
	// between 1<<10 and 1<<24 bytes). Every implementation must accept
	// messages up to MaxMessageSize.
	MinMessageSize = 1 << 10
	MaxMessageSize = 1 << 24
	// InitialMessageSize is the size of the first binary messages.
	InitialMessageSize = 1 << 13
	// MaxScaledMessageSize caps the scaling of binary messages we send
	// (as ndt-server: a compromise between Go and JavaScript receivers).
	MaxScaledMessageSize = 1 << 20
	// ScalingFraction: a message doubles while it is smaller than
	// 1/ScalingFraction of the bytes queued so far (the spec's appendix).
	ScalingFraction = 16
	// MaxTextMessageSize bounds the measurement messages we read.
	MaxTextMessageSize = 1 << 16
	// DefaultDuration is the length of a subtest since the WebSocket
	// handshake completed; MaxDuration is when a peer may close the
	// connection whatever happens.
	DefaultDuration = 10 * time.Second
	MaxDuration     = 13 * time.Second
	// MeasureEvery is the period of the measurement messages (at most
	// ten per second on average, says the spec).
	MeasureEvery = 250 * time.Millisecond
	// HandshakeTimeout bounds connect, TLS and WebSocket handshakes.
	HandshakeTimeout = 10 * time.Second
	// MaxQueryBytes is the longest query string an upgrade may carry.
	MaxQueryBytes = 4096
	// MaxCollectBody bounds the record posted to CollectPath.
	MaxCollectBody = 1 << 20
)

// Origins and tests of a measurement message.
const (
	OriginServer = "server"
	OriginClient = "client"
	TestDownload = "download"
	TestUpload   = "upload"
)

// Measurement is the textual message of ndt7: a JSON object with optional
// parts. Field names are the specification's.
type Measurement struct {
	AppInfo        *AppInfo        `json:",omitempty"`
	ConnectionInfo *ConnectionInfo `json:",omitempty"`
	BBRInfo        *BBRInfo        `json:",omitempty"`
	TCPInfo        *TCPInfo        `json:",omitempty"`
	Origin         string          `json:",omitempty"`
	Test           string          `json:",omitempty"`
}

// AppInfo is an application-level measurement: payload bytes sent or
// received since the test began, and when (microseconds).
type AppInfo struct {
	ElapsedTime int64
	NumBytes    int64
}

// ConnectionInfo describes the connection; servers always send it (since
// v0.9.0), clients never.
type ConnectionInfo struct {
	Client    string
	Server    string
	UUID      string    `json:",omitempty"`
	StartTime time.Time `json:",omitzero"`
}

// BBRInfo is not in the specification's text but sent by M-Lab's server
// where BBR runs; it is accepted and passed on when present. Units are the
// kernel's: BW in bytes/s, MinRTT in microseconds.
type BBRInfo struct {
	BW          int64 `json:",omitempty"`
	MinRTT      int64 `json:",omitempty"`
	PacingGain  int64 `json:",omitempty"`
	CwndGain    int64 `json:",omitempty"`
	ElapsedTime int64
}

// TCPInfo is the specification's subset of TCP_INFO. Every field is
// optional (a kernel may lack it), hence the pointers; times are in
// microseconds, bytes count TCP payload including WebSocket and TLS.
type TCPInfo struct {
	BusyTime      *int64 `json:",omitempty"`
	BytesAcked    *int64 `json:",omitempty"`
	BytesReceived *int64 `json:",omitempty"`
	BytesSent     *int64 `json:",omitempty"`
	BytesRetrans  *int64 `json:",omitempty"`
	ElapsedTime   *int64 `json:",omitempty"`
	MinRTT        *int64 `json:",omitempty"`
	RTT           *int64 `json:",omitempty"`
	RTTVar        *int64 `json:",omitempty"`
	RWndLimited   *int64 `json:",omitempty"`
	SndBufLimited *int64 `json:",omitempty"`
}

// maxInt53 is the largest integer every JSON implementation represents
// exactly (the specification's remark on JavaScript).
const maxInt53 = 1<<53 - 1

// ErrMessage is wrapped by every error of DecodeMeasurement.
var ErrMessage = errors.New("ndt7: bad measurement message")

// DecodeMeasurement parses a textual message from the peer. The peer is
// untrusted: the message is bounded, must be one JSON object, and every
// counter must be an integer from 0 to 2^53-1. Unknown members are
// ignored, as the specification asks (peers may send more TCP_INFO
// fields), and so are unknown Origin and Test values' meanings, but both
// strings are bounded.
func DecodeMeasurement(b []byte) (*Measurement, error) {
	if len(b) > MaxTextMessageSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMessage, len(b), MaxTextMessageSize)
	}
	var m Measurement
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMessage, err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("%w: trailing data", ErrMessage)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMessage, err)
	}
	return &m, nil
}

func counter(name string, v int64) error {
	if v < 0 || v > maxInt53 {
		return fmt.Errorf("%s is %d, not in 0..2^53-1", name, v)
	}
	return nil
}

func (m *Measurement) check() error {
	if len(m.Origin) > 16 || len(m.Test) > 16 {
		return errors.New("the Origin or Test member is longer than 16 bytes")
	}
	var errs []error
	if a := m.AppInfo; a != nil {
		errs = append(errs, counter("AppInfo.ElapsedTime", a.ElapsedTime), counter("AppInfo.NumBytes", a.NumBytes))
	}
	if c := m.ConnectionInfo; c != nil {
		if len(c.Client) > 128 || len(c.Server) > 128 || len(c.UUID) > 128 {
			errs = append(errs, errors.New("ConnectionInfo field longer than 128 bytes"))
		}
	}
	if b := m.BBRInfo; b != nil {
		errs = append(errs, counter("BBRInfo.BW", b.BW), counter("BBRInfo.MinRTT", b.MinRTT), counter("BBRInfo.ElapsedTime", b.ElapsedTime))
	}
	if t := m.TCPInfo; t != nil {
		for name, p := range t.fields() {
			if p != nil {
				errs = append(errs, counter("TCPInfo."+name, *p))
			}
		}
	}
	return errors.Join(errs...)
}

// fields lists the TCPInfo fields by name, in the specification's order.
func (t *TCPInfo) fields() map[string]*int64 {
	return map[string]*int64{
		"BusyTime": t.BusyTime, "BytesAcked": t.BytesAcked, "BytesReceived": t.BytesReceived,
		"BytesSent": t.BytesSent, "BytesRetrans": t.BytesRetrans, "ElapsedTime": t.ElapsedTime,
		"MinRTT": t.MinRTT, "RTT": t.RTT, "RTTVar": t.RTTVar, "RWndLimited": t.RWndLimited,
		"SndBufLimited": t.SndBufLimited,
	}
}

// Mbps is the goodput of n bytes in elapsed microseconds, Mbit/s.
func Mbps(n, elapsedUS int64) float64 {
	if elapsedUS <= 0 {
		return 0
	}
	return float64(n) * 8 / float64(elapsedUS)
}

// NextMessageSize is the size of the next binary message after total
// bytes were queued with messages of size cur (the spec's appendix).
func NextMessageSize(cur int, total int64) int {
	if cur >= MaxScaledMessageSize || int64(cur) >= total/ScalingFraction {
		return cur
	}
	return cur * 2
}

// LocateResult is the answer at LocatePath, in the shape of M-Lab's locate
// v2 (only the members ndt7 clients read).
type LocateResult struct {
	Results []LocateTarget `json:"results"`
	Error   *LocateError   `json:"error,omitempty"`
}

// LocateTarget is one server; URLs maps "ws:///ndt/v7/download" and the
// like to complete URLs with the access token.
type LocateTarget struct {
	Machine  string            `json:"machine"`
	Hostname string            `json:"hostname"`
	URLs     map[string]string `json:"urls"`
}

// LocateError is locate's error object.
type LocateError struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// LocateKey is the key of a URL in LocateTarget.URLs, e.g.
// LocateKey("wss", DownloadPath) = "wss:///ndt/v7/download".
func LocateKey(scheme, path string) string { return scheme + "://" + path }

// Record converts t into the record's units; nil stays nil. Fields the
// peer did not send are 0.
func (t *TCPInfo) Record() *schemas.NDT7TCPInfo {
	if t == nil {
		return nil
	}
	v := func(p *int64) int64 {
		if p == nil {
			return 0
		}
		return *p
	}
	ms := func(p *int64) float64 { return float64(v(p)) / 1e3 }
	s := func(p *int64) float64 { return float64(v(p)) / 1e6 }
	return &schemas.NDT7TCPInfo{
		ElapsedS: s(t.ElapsedTime), RTTMS: ms(t.RTT), MinRTTMS: ms(t.MinRTT), RTTVarMS: ms(t.RTTVar),
		BytesAcked: uint64(v(t.BytesAcked)), BytesReceived: uint64(v(t.BytesReceived)),
		BytesSent: uint64(v(t.BytesSent)), BytesRetrans: uint64(v(t.BytesRetrans)),
		BusyS: s(t.BusyTime), RWndLimitedS: s(t.RWndLimited), SndBufLimitedS: s(t.SndBufLimited),
	}
}
