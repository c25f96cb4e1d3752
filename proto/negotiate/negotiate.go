// Package negotiate is the negotiation protocol that every test of a Neubot
// test server starts with (the white list of the 2011 Neubot paper): the
// agent asks for a slot at the test's negotiate path, gets a random token and
// either starts at once or waits its turn in FIFO order, long-polling; the
// token then goes on every request of the test. Described in
// spec/negotiate.md; each test names its own negotiate path in its own
// protocol package (proto/speedtest, proto/ndt7, proto/bittorrent).
package negotiate

import "time"

// Version of the protocol described in spec/negotiate.md.
const Version = "v1.2.0"

// TokenHeader carries the token on every test request, as
// "Authorization: Bearer <token>".
const TokenHeader = "Authorization"

// BearerPrefix starts the value of TokenHeader.
const BearerPrefix = "Bearer "

// Timers and limits.
const (
	// LongPoll is how long the server holds a negotiate request of an
	// agent that may not start yet before answering "wait, ask again".
	LongPoll = 15 * time.Second
	// QueueGrace is how long a queued token survives without the agent
	// asking again; then its place is given away.
	QueueGrace = 2 * LongPoll
	// TestTimeout is the default per-test timer: a token whose test has
	// not collected within it is revoked and its slot freed. A test may
	// set a longer one (proto/bittorrent.TestTimeout).
	TestTimeout = 30 * time.Second
	// MaxBody bounds a negotiate request.
	MaxBody = 4 << 10
	// MaxTokenBytes and MaxUIDBytes bound the fields of a Request.
	MaxTokenBytes = 64
	MaxUIDBytes   = 64
)

// Request is the body of POST to a test's negotiate path.
type Request struct {
	// Token is empty on the first request and the token received
	// otherwise, to keep the agent's place in the queue.
	Token string `json:"token,omitempty"`
	// MeasurementUID is the UUID of the measurement about to start.
	MeasurementUID string `json:"measurement_uid"`
}

// Response answers a negotiate request.
type Response struct {
	Token string `json:"token"`
	// Unchoked: the agent may start now; the token is live for TTLS.
	Unchoked bool `json:"unchoked"`
	// QueuePos is 0 when unchoked, else the number of agents ahead.
	QueuePos int `json:"queue_pos"`
	// TTLS is the life of the token in seconds: TestTimeout once
	// unchoked, QueueGrace while queued.
	TTLS float64 `json:"ttl_s"`
}

// Error is the JSON body of every 4xx and 5xx answer of a test server.
type Error struct {
	Error string `json:"error"`
}
