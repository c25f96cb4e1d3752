package identity

import (
	"bytes"
	"testing"
)

// FuzzVerifyManifest: a downloaded manifest and its signature file are
// untrusted input; no input panics, and only the signer's own signature of
// the exact manifest verifies.
func FuzzVerifyManifest(f *testing.F) {
	k := KeyFromSeed(bytes.Repeat([]byte{7}, 32))
	manifest := []byte(`{"test":"speedtest","rows":3}` + "\n")
	f.Add(manifest, k.SignManifest(manifest))
	f.Add(manifest, []byte(`{"algorithm":"ed25519","context":"neubot-manifest-v1","signed":"manifest.json","key":"x","signature":"y"}`))
	f.Add([]byte{}, []byte(`{}`))
	f.Fuzz(func(t *testing.T, m, sig []byte) {
		err := VerifyManifest(k.PublicKey(), m, sig)
		if err == nil && !bytes.Equal(m, manifest) {
			t.Fatalf("a signature verified over other bytes: %q", m)
		}
	})
}
