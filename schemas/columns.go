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
}

// Annotation is what the collector derives from a record on ingest.
type Annotation struct {
	ASN        uint32
	Org        string
	Country    string
	Prefix     string
	DB         string // version of the IP database used
	IngestedAt time.Time
}

// Authoritative is implemented by keys that know whether they carry the
// server's merged view; such copies win over the agent's own copy.
type Authoritative interface {
	Authoritative() bool
}

// Authoritative reports whether the speedtest record was merged by the server.
func (s *Speedtest) Authoritative() bool { return s.ServerView != nil }

// IsAuthoritative reports whether r is an authoritative copy of its
// measurement (today: it carries the server's merged view). It is the one
// input of CopyVersion that says so.
func (r *Record) IsAuthoritative() bool {
	au, ok := r.TestKeys.(Authoritative)
	return ok && au.Authoritative()
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
	var authority uint8
	auth := r.IsAuthoritative()
	if auth {
		authority = 1
	}
	dst = append(dst, a.ASN, a.Org, a.Country, a.Prefix, a.DB, authority, a.IngestedAt.UTC(), CopyVersion(auth, a.IngestedAt))
	return r.TestKeys.Values(dst)
}

// TableColumns returns every column of test t's table, in Row's order.
func (t *Test) TableColumns() []string {
	cols := append([]string(nil), EnvelopeColumns...)
	cols = append(cols, AnnotationColumns...)
	return append(cols, t.Columns...)
}
