package schemas

// The signatures of records (spec/trust.md): the shape of the member a
// signed record carries, and the SQL conditions of what is published. The
// cryptography is in internal/identity; the signed requests of test servers
// are in proto/rendezvous.

// ServerSignature is the test server's signature of one record: an
// Ed25519 signature of the root of a Merkle tree (SHA-256) over the records
// of one batch, and the path from this record's leaf to that root, so that
// each record verifies on its own while the collector checks one Ed25519
// signature per batch.
type ServerSignature struct {
	Key    string `json:"key" v:"required,maxlen=64" doc:"The signing test server's Ed25519 public key, base64url without padding (43 characters)."`
	Sig    string `json:"sig" v:"required,maxlen=128" doc:"Ed25519 signature of the batch's Merkle root (spec/trust.md), base64url without padding."`
	Leaves int    `json:"leaves" v:"min=1,max=65536" doc:"Records in the signed batch (leaves of the Merkle tree)."`
	Index  int    `json:"index" v:"min=0,max=65535" doc:"Position of this record in the batch, from 0."`
	Path   string `json:"path" v:"maxlen=1024" doc:"The audit path from this record's leaf to the root: the sibling hashes, leaf first, 32 bytes each, concatenated and base64url-encoded without padding."`
}

// ServerSignatureMember is how the signature member starts in a signed
// record's JSON text: it is the last member of the top-level object, and
// the signed bytes are the text without it (spec/trust.md).
const ServerSignatureMember = `,"server_signature":`

// PublishedSQL is a ClickHouse condition on a measurement table's row
// (after FINAL): true when the row may be published in dumps and the
// measurements API, i.e. it is the copy signed by an enrolled test server.
// Simulated rows pass: they are never in real outputs (synthetic = 0 is a
// condition of those), whoever sent them.
const PublishedSQL = "(synthetic = 1 OR verified = 1)"

// FiguresSQL is the condition of the rows counted in figures (analytics,
// dashboards): published, and not flagged by the server's cross-check.
const FiguresSQL = "(synthetic = 1 OR (verified = 1 AND plausibility IN ('', 'ok')))"

// MaxTestsPerAgentDay is how many tests of one agent in one UTC day count
// in figures (the earliest ones); an agent tests at most every 15 minutes.
const MaxTestsPerAgentDay = 96

// PrivateColumns are the columns of the measurement tables that never
// leave ClickHouse: the clear agent_id (agent_pseudonym is published).
var PrivateColumns = map[string]bool{"agent_id": true}
