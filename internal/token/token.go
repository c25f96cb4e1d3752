// Package token makes and compares the random secrets Neubot hands out:
// the test server's session tokens, nonces, the agent's CSRF token and
// peer id.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
)

// Hex returns n bytes from crypto/rand in hex (2n characters).
func Hex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand's Read never fails: it crashes the program instead
	return hex.EncodeToString(b)
}

// Equal says whether got is the secret want. It compares their SHA-256
// digests in constant time, so that neither want's bytes nor its length
// leak through timing.
func Equal(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
