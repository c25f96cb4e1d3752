package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// The collector signs each published day's manifest (spec/trust.md,
// "Signed dumps"): the manifest names every data file with its size and
// SHA-256, so one signature over the manifest's bytes covers the whole
// day. The signature is detached, in ManifestSigName beside the manifest,
// so that the manifest stays the very bytes that were signed.

// ManifestSigName is the signature file's name, beside manifest.json.
const ManifestSigName = "manifest.json.sig"

// manifestContext separates manifest signatures from every other use of a
// key (records, requests).
const manifestContext = "neubot-manifest-v1\n"

// ManifestSignature is the content of ManifestSigName (JSON).
type ManifestSignature struct {
	Algorithm string `json:"algorithm"` // "ed25519"
	Context   string `json:"context"`   // "neubot-manifest-v1"
	Signed    string `json:"signed"`    // "manifest.json"
	Key       string `json:"key"`       // the signer's public key, base64url
	Signature string `json:"signature"` // Ed25519 of context "\n" + the manifest's bytes, base64url
}

func manifestMessage(manifest []byte) []byte {
	return append([]byte(manifestContext), manifest...)
}

// SignManifest returns the text of the signature file of manifest (its
// bytes exactly as written to manifest.json).
func (k *Key) SignManifest(manifest []byte) []byte {
	b, err := json.MarshalIndent(ManifestSignature{Algorithm: "ed25519", Context: manifestContext[:len(manifestContext)-1], Signed: "manifest.json",
		Key: k.pub, Signature: base64.RawURLEncoding.EncodeToString(k.Sign(manifestMessage(manifest)))}, "", "  ")
	if err != nil {
		panic(err) // a struct of strings
	}
	return append(b, '\n')
}

// ErrManifestSignature is a manifest signature that does not verify.
var ErrManifestSignature = errors.New("the manifest's signature does not verify")

// VerifyManifest checks sigFile (the text of ManifestSigName) over
// manifest's bytes against pub, the collector's public key.
func VerifyManifest(pub ed25519.PublicKey, manifest, sigFile []byte) error {
	if len(sigFile) > 4096 {
		return fmt.Errorf("%s is larger than 4096 bytes", ManifestSigName)
	}
	var s ManifestSignature
	dec := json.NewDecoder(bytes.NewReader(sigFile))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return fmt.Errorf("%s: %w", ManifestSigName, err)
	}
	if s.Algorithm != "ed25519" || s.Context+"\n" != manifestContext || s.Signed != "manifest.json" {
		return fmt.Errorf("%s: algorithm %q, context %q, signed %q: not a Neubot manifest signature", ManifestSigName, s.Algorithm, s.Context, s.Signed)
	}
	if s.Key != EncodeKey(pub) {
		return fmt.Errorf("%s: signed by the key %s, not by %s", ManifestSigName, s.Key, EncodeKey(pub))
	}
	sig, err := base64.RawURLEncoding.DecodeString(s.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub, manifestMessage(manifest), sig) {
		return ErrManifestSignature
	}
	return nil
}
