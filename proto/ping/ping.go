// Package ping is the ping test's protocol (spec/ping.md): after the
// negotiation of proto/negotiate at NegotiatePath, the client opens one
// WebSocket at WSPath and sends Count text messages, one at a time; the
// server echoes each at once; the client posts its record to CollectPath.
package ping

import "time"

// Version of the protocol described in spec/ping.md.
const Version = "v1.0.0"

// Paths and WebSocket subprotocol.
const (
	NegotiatePath        = "/ping/negotiate"
	WSPath               = "/ping/ws"
	CollectPath          = "/ping/collect"
	SecWebSocketProtocol = "net.neubot.ping.v1"
)

// Limits.
const (
	// Count is how many pings a client sends; MaxCount is the most a
	// server echoes on one connection (schemas.MaxPings).
	Count    = 10
	MaxCount = 100
	// MaxMessage bounds a ping message.
	MaxMessage = 256
	// Timeout bounds the whole exchange on the connection.
	Timeout = 10 * time.Second
	// MaxCollectBody bounds the record posted to CollectPath.
	MaxCollectBody = 64 << 10
)

// Message is a ping and its echo (JSON text messages): the server sends
// back what it received.
type Message struct {
	Seq int `json:"seq"`
}
