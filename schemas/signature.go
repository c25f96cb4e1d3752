package schemas

// Wire format of the signatures of records and of the requests of enrolled
// test servers (spec/trust.md). The cryptography is in internal/identity;
// these are the shapes both ends share.

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

// Headers of a request signed by an enrolled test server (registration,
// heartbeat, forwarded records): its public key, the time (Unix seconds),
// a random nonce (hex, 16 to 64 characters) and the Ed25519 signature
// (base64url) of the canonical request (spec/trust.md).
const (
	HeaderKey       = "Neubot-Key"
	HeaderTime      = "Neubot-Time"
	HeaderNonce     = "Neubot-Nonce"
	HeaderSignature = "Neubot-Signature"
)

// MaxRequestSkewS is how far, in seconds, the time of a signed request may
// be from the collector's clock; its nonce is remembered that long.
const MaxRequestSkewS = 300

// IdentityPath is where the collector publishes its own public key (GET,
// JSON CollectorIdentity).
const IdentityPath = "/api/v1/identity"

// CollectorIdentity is the answer of IdentityPath.
type CollectorIdentity struct {
	Key string `json:"key"` // Ed25519 public key, base64url without padding
}

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
