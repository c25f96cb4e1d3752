package schemas

import (
	"net/netip"
	"time"
)

// SchemaVersion is the version of the record layout this code writes and
// the newest it accepts. Bump it whenever a field is added.
//
//   - 1: first layout.
//   - 2: server.peer (peer-to-peer mode).
//   - 3: the speedtest's methodology 2 (stop reason, window, parameters,
//     loaded latency, the server's TCP_INFO series per phase) and failure
//     records (failure, failure_phase).
//   - 3: server_signature (records signed by enrolled test servers) and
//     server.plausibility (the server's cross-check of the client's numbers).
//   - 3: the BitTorrent test's methodology version 2 (factorial design, blocked).
const SchemaVersion = 3

// MaxClockSkew is how far in the future a start_time may be before the
// record is refused: agents' clocks drift, but not by hours.
const MaxClockSkew = 10 * time.Minute

// earliestStart is the oldest start_time accepted: Neubot's first release.
var earliestStart = time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)

// Envelope is the part of every record that does not depend on the test.
type Envelope struct {
	MeasurementUID string    `json:"measurement_uid" v:"required,uuid" doc:"Random UUID the agent makes when the test starts. The idempotency key end to end: every copy of one measurement carries the same value and is stored once."`
	AgentID        string    `json:"agent_id" v:"required,uuid" doc:"Random UUID the agent makes once, at install. Links the measurements of one agent without identifying the volunteer."`
	TestName       string    `json:"test_name" v:"required,maxlen=32,safe" doc:"Name of the test, e.g. speedtest. Selects the layout of test_keys."`
	TestVersion    string    `json:"test_version" v:"required,maxlen=16,safe" doc:"Version of the test's methodology; a change in how the test measures bumps it."`
	SchemaVersion  int       `json:"schema_version" v:"min=1" doc:"Version of the record layout (see schemas.SchemaVersion)."`
	StartTime      time.Time `json:"start_time" v:"required" doc:"When the test started, UTC, RFC 3339. Not accepted more than 10 minutes in the future."`
	DurationS      float64   `json:"duration_s" v:"min=0,max=3600" doc:"Wall time of the whole test, seconds."`
	Agent          Agent     `json:"agent" doc:"The software that ran the client side of the test."`
	Server         Server    `json:"server" doc:"The test server (or peer) that served the test."`
	Consent        Consent   `json:"consent" doc:"The volunteer's choices, as they were when the test ran."`
	Synthetic      bool      `json:"synthetic" doc:"True for records made by the simulator (neubot-server simulate). Never in a real public dump."`
	// ServerSignature is appended by the test server's forwarder as the
	// last member of the JSON text (see spec/trust.md); absent elsewhere.
	ServerSignature *ServerSignature `json:"server_signature,omitempty" doc:"The test server's signature of this record (spec/trust.md): present only in the copy an enrolled test server forwards, as the last member of the JSON text. The collector stores a row as verified (authoritative) only when it verifies against an enrolled key."`
}

// Agent describes the client software.
type Agent struct {
	Software string `json:"software" v:"required,maxlen=32,safe" doc:"Name of the client software, e.g. neubot."`
	Version  string `json:"version" v:"required,maxlen=32,safe" doc:"Version of the client software."`
	OS       string `json:"os" v:"maxlen=32,safe" doc:"Operating system, as Go's GOOS (linux, darwin, windows, ...)."`
	Arch     string `json:"arch" v:"maxlen=32,safe" doc:"CPU architecture, as Go's GOARCH (amd64, arm64, ...)."`
}

// Server describes the test server and what it saw of the client.
type Server struct {
	ID            string `json:"id" v:"maxlen=128,safe" doc:"Identifier of the test server, as registered with the collector's rendezvous."`
	Version       string `json:"version" v:"maxlen=32,safe" doc:"Version of the test server software."`
	Peer          bool   `json:"peer,omitempty" doc:"True when the test was served by another volunteer's agent in peer-to-peer mode rather than by a platform test server. Peer tests measure the path between two volunteers, whose uplink may be the bottleneck: the per-ISP figures leave them out."`
	ClientAddress string `json:"client_address,omitempty" v:"ip,maxlen=64" doc:"Client IP address as the server saw it. Used by the collector to derive ASN, organisation, country and a truncated prefix, then dropped: it is never stored in the measurement tables nor published. Trusted only in a record whose server_signature verifies; otherwise the collector annotates from the address that submitted the record."`
	Plausibility  string `json:"plausibility,omitempty" v:"enum=ok|download_mismatch|upload_mismatch|download_upload_mismatch" doc:"The test server's cross-check of the client's numbers against its own (bytes sent or acked, time; spec/trust.md): ok, or which direction disagrees beyond the tolerance. Empty when the server did not check (an agent's own copy). Flagged rows are left out of the published figures."`
}

// Consent holds the volunteer's choices. A record is accepted only when the
// volunteer was informed and allowed collection; can_publish=false records
// are stored but never published.
type Consent struct {
	Informed   bool `json:"informed" doc:"The volunteer was shown what Neubot measures and publishes."`
	CanCollect bool `json:"can_collect" doc:"The volunteer allows the collector to receive and store the result."`
	CanPublish bool `json:"can_publish" doc:"The volunteer allows the result to appear in public dumps, API and dashboards."`
}

func validIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// check adds to c the problems of the envelope that its tags cannot express.
func (e *Envelope) check(c *checker, now time.Time) {
	if e.SchemaVersion > SchemaVersion {
		c.add("schema_version", "%d is newer than this software understands (%d): upgrade the collector", e.SchemaVersion, SchemaVersion)
	}
	if !e.StartTime.IsZero() {
		switch {
		case e.StartTime.After(now.Add(MaxClockSkew)):
			c.add("start_time", "is in the future (%s, now is %s)", e.StartTime.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		case e.StartTime.Before(earliestStart):
			c.add("start_time", "is before %s", earliestStart.Format(time.DateOnly))
		}
	}
	if !e.Consent.Informed {
		c.add("consent.informed", "must be true: nothing is collected before the volunteer is informed")
	} else if !e.Consent.CanCollect {
		c.add("consent.can_collect", "must be true: the volunteer did not allow collection")
	}
}
