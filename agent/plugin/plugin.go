// Package plugin is the contract between the agent and its tests. A test is
// one folder of agent/ (the client side) exporting Config and NewMeasurer,
// plus its server side in testserver/ and its record in schemas/; it is made
// known to the agent in agent/registry. Nothing else changes to add a test.
package plugin

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"runtime"
	"time"

	"github.com/neubot/neubot/internal/version"
	"github.com/neubot/neubot/schemas"
)

// Env is what the agent gives a test when it runs it.
type Env struct {
	// ServerURL is the test server (or peer) to test against.
	ServerURL string
	// ServerPeer is true when ServerURL is another volunteer's agent
	// (peer-to-peer mode): the record's server.peer.
	ServerPeer bool
	// AgentID, AgentVersion and Consent go into the record's envelope.
	AgentID      string
	AgentVersion string
	Consent      schemas.Consent
	// HTTPClient is used for requests that are not measurements (nil:
	// a default one). Measurements use connections the test makes itself.
	HTTPClient *http.Client
	// Progress receives live updates; nil discards them.
	Progress func(Progress)
}

// Client is the client for requests that are not measurements:
// HTTPClient, or http.DefaultClient.
func (env Env) Client() *http.Client {
	if env.HTTPClient != nil {
		return env.HTTPClient
	}
	return http.DefaultClient
}

// Report passes p to Progress, if any.
func (env Env) Report(p Progress) {
	if env.Progress != nil {
		env.Progress(p)
	}
}

// Version is the agent's software version for records (AgentVersion, or
// this build's).
func (env Env) Version() string {
	if env.AgentVersion != "" {
		return env.AgentVersion
	}
	return version.Version
}

// Envelope is the envelope of a record of test (methodology testVersion),
// measurement uid, started at start and ending now: who measured, with
// which software, under which consent.
func (env Env) Envelope(test, testVersion, uid string, start time.Time) schemas.Envelope {
	return schemas.Envelope{
		MeasurementUID: uid,
		AgentID:        env.AgentID,
		TestName:       test,
		TestVersion:    testVersion,
		SchemaVersion:  schemas.SchemaVersion,
		StartTime:      start.UTC().Truncate(time.Millisecond),
		DurationS:      math.Round(time.Since(start).Seconds()*1000) / 1000,
		Agent:          schemas.Agent{Software: "neubot", Version: env.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH},
		Server:         schemas.Server{Peer: env.ServerPeer},
		Consent:        env.Consent,
	}
}

// minSampleGap is the shortest interval, seconds, a sample's rate is
// computed over: a sample microseconds after the previous one (the last one
// of a phase, or counters that arrive bunched) would read a megabyte as
// Tbit/s. Such a sample replaces the previous one instead.
const minSampleGap = schemas.MinSampleGapS

// AppendSample appends to samples the sample of a cumulative byte counter
// at t seconds since the phase started (rounded to the millisecond), with
// the goodput since the previous sample, or since the start for the first;
// past schemas.MaxThroughputSamples it appends nothing. It returns the
// samples and that goodput, Mbit/s, not rounded. The speedtest's and ndt7's
// clients sample this way.
func AppendSample(samples []schemas.ThroughputSample, t float64, bytes uint64) ([]schemas.ThroughputSample, float64) {
	t = math.Round(t*1000) / 1000
	if k := len(samples); k > 0 && t-samples[k-1].TS < minSampleGap {
		samples = samples[:k-1]
	}
	mbps := 0.0
	if k := len(samples); k > 0 {
		prev := samples[k-1]
		if dt := t - prev.TS; dt > 0 {
			mbps = float64(bytes-prev.Bytes) * 8 / 1e6 / dt
		}
	} else if t > 0 {
		mbps = float64(bytes) * 8 / 1e6 / t
	}
	if len(samples) < schemas.MaxThroughputSamples {
		samples = append(samples, schemas.ThroughputSample{TS: t, Bytes: bytes, Mbps: math.Round(mbps*1000) / 1000})
	}
	return samples, mbps
}

// Progress is a live update of a running test.
type Progress struct {
	Phase    string  // e.g. negotiate, latency, download, upload, collect
	Mbps     float64 // current speed, when the phase measures one
	Elapsed  float64 // seconds since the phase started
	QueuePos int     // while negotiating: agents ahead
	Message  string  // free text for humans
}

// Measurer runs one test. Run returns an error only when the test could
// not run or complete (server unreachable, refused, protocol violated); the
// record it returns is the server's authoritative, merged record. A test
// may also return a record with its error: a failure record (e.g. the
// speedtest's test_keys.failure), which the agent stores and uploads like
// any other, so that failures are counted.
type Measurer interface {
	Name() string
	Run(ctx context.Context, env Env) (*schemas.Record, error)
}

// ProtocolError is returned by a test when the server answers something
// its protocol does not allow, or refuses a request (Status is the HTTP
// status; 429 and 503 mean "busy, come back later").
type ProtocolError struct {
	Test   string
	Op     string
	Status int
	Msg    string
}

// Is makes a refusal (an HTTP error status) schemas.ErrRefused and any
// other answer the protocol does not allow schemas.ErrProtocol, for
// schemas.FailureOf.
func (e *ProtocolError) Is(target error) bool {
	switch target {
	case schemas.ErrRefused:
		return e.Status >= 400
	case schemas.ErrProtocol:
		return e.Status < 400
	}
	return false
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("%s %s: server answered %d: %s", e.Test, e.Op, e.Status, e.Msg)
}
