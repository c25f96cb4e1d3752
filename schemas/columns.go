package schemas

import (
	"time"

	"github.com/google/uuid"
)

// EnvelopeColumns are the first columns of every measurement table, in the
// order of (*Envelope).Values.
var EnvelopeColumns = []string{
	"measurement_uid", "agent_id", "test_version", "schema_version", "start_time", "duration_s",
	"agent_software", "agent_version", "agent_os", "agent_arch", "server_id", "server_version",
	"server_peer", "consent_informed", "consent_can_collect", "consent_can_publish", "synthetic",
}

// Values appends the envelope's column values. It assumes a validated record.
func (e *Envelope) Values(dst []any) []any {
	return append(dst,
		uuid.MustParse(e.MeasurementUID), uuid.MustParse(e.AgentID), e.TestVersion,
		uint16(e.SchemaVersion), e.StartTime.UTC(), e.DurationS,
		e.Agent.Software, e.Agent.Version, e.Agent.OS, e.Agent.Arch, e.Server.ID, e.Server.Version,
		boolU8(e.Server.Peer), boolU8(e.Consent.Informed), boolU8(e.Consent.CanCollect), boolU8(e.Consent.CanPublish), boolU8(e.Synthetic),
	)
}

// AnnotationColumns follow the envelope's: what the collector adds. The
// client address itself is not among them.
var AnnotationColumns = []string{
	"client_asn", "client_org", "client_country", "client_prefix", "annotation_db", "authority", "ingested_at",
	"copy_version",
	"verified", "server_key", "plausibility", "agent_pseudonym",
}

// Annotation is what the collector derives from a record on ingest.
type Annotation struct {
	ASN        uint32
	Org        string
	Country    string
	Prefix     string
	DB         string // version of the IP database used
	IngestedAt time.Time
	// Verified is true when the record's server_signature verified
	// against an enrolled key (ServerKey): only then is the row
	// authoritative (authority 1) and published (spec/trust.md).
	Verified  bool
	ServerKey string
	// Pseudonym is the published stand-in for agent_id (spec/trust.md).
	Pseudonym string
}

// CopyVersion orders the copies of one measurement: the earliest
// authoritative copy wins. Authority comes first, then the earliest
// ingested_at (to the second, as the column stores it). Stored in the
// copy_version column; the loader inserts no copy whose version is not
// above the stored one, so a late copy never changes a published row. The
// same formula is the column's DEFAULT for rows loaded before it existed
// (migration 0008).
func CopyVersion(authoritative bool, ingestedAt time.Time) uint64 {
	var v uint64
	if authoritative {
		v = 1 << 32
	}
	sec := ingestedAt.Unix()
	sec = max(0, min(sec, 1<<32-1))
	return v + (1<<32 - 1 - uint64(sec))
}

// Row returns the values of the record's row in its test's table, in the
// order EnvelopeColumns, AnnotationColumns, Test.Columns.
func (r *Record) Row(a Annotation, dst []any) []any {
	dst = r.Envelope.Values(dst)
	// A copy is authoritative only when an enrolled test server signed
	// it: carrying a server view proves nothing (anyone can write one).
	authority := boolU8(a.Verified)
	plausibility := ""
	if a.Verified {
		plausibility = r.Server.Plausibility
	}
	dst = append(dst, a.ASN, a.Org, a.Country, a.Prefix, a.DB, authority, a.IngestedAt.UTC(), CopyVersion(a.Verified, a.IngestedAt),
		authority, a.ServerKey, plausibility, a.Pseudonym)
	return r.TestKeys.Values(dst)
}

// TableColumns returns every column of test t's table, in Row's order.
func (t *Test) TableColumns() []string {
	cols := append([]string(nil), EnvelopeColumns...)
	cols = append(cols, AnnotationColumns...)
	return append(cols, t.Columns...)
}
