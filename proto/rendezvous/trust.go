package rendezvous

// Signed requests of enrolled test servers and the collector's identity
// (spec/trust.md). The cryptography is in internal/identity.

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
