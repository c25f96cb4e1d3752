package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"sync"

	"github.com/neubot/neubot/schemas"
)

// Records are signed in batches (spec/trust.md): the leaves of a Merkle
// tree (RFC 6962's shape, SHA-256) are the records' JSON texts, the test
// server signs the root once, and each record carries the signature and
// its audit path. The collector then checks one Ed25519 signature per
// batch (its result cached by root) and a few hashes per record.

// recordsContext separates the signatures of record batches from every
// other use of a key.
const recordsContext = "neubot-records-v1\n"

// MaxBatch is the most records one signature covers: audit paths stay
// short (6 hashes, 256 characters) while one Ed25519 verification serves
// 64 records.
const MaxBatch = 64

func leafHash(text []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(text)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// signedLeaf hashes a signed record's text without its signature member:
// line[:cut] followed by the closing brace.
func signedLeaf(line []byte, cut int) [32]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(line[:cut])
	h.Write([]byte{'}'})
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func nodeHash(l, r [32]byte) [32]byte {
	var buf [65]byte
	buf[0] = 1
	copy(buf[1:], l[:])
	copy(buf[33:], r[:])
	return sha256.Sum256(buf[:])
}

// split is the largest power of two below n (n >= 2).
func split(n int) int { return 1 << (bits.Len(uint(n-1)) - 1) }

func treeRoot(leaves [][32]byte) [32]byte {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := split(len(leaves))
	return nodeHash(treeRoot(leaves[:k]), treeRoot(leaves[k:]))
}

// auditPath is the siblings from leaf m up to the root, leaf first.
func auditPath(m int, leaves [][32]byte) [][32]byte {
	if len(leaves) == 1 {
		return nil
	}
	k := split(len(leaves))
	if m < k {
		return append(auditPath(m, leaves[:k]), treeRoot(leaves[k:]))
	}
	return append(auditPath(m-k, leaves[k:]), treeRoot(leaves[:k]))
}

// rootFrom recomputes the root of a tree of n leaves from leaf m's hash and
// its audit path (leaf first).
func rootFrom(m, n int, leaf [32]byte, path [][32]byte) ([32]byte, bool) {
	if n == 1 {
		return leaf, len(path) == 0
	}
	if len(path) == 0 {
		return leaf, false
	}
	k := split(n)
	sib, rest := path[len(path)-1], path[:len(path)-1]
	if m < k {
		l, ok := rootFrom(m, k, leaf, rest)
		return nodeHash(l, sib), ok
	}
	r, ok := rootFrom(m-k, n-k, leaf, rest)
	return nodeHash(sib, r), ok
}

func rootMessage(n int, root [32]byte) []byte {
	msg := make([]byte, 0, len(recordsContext)+4+32)
	msg = append(msg, recordsContext...)
	msg = binary.BigEndian.AppendUint32(msg, uint32(n))
	return append(msg, root[:]...)
}

// SignRecords signs records (JSON objects without server_signature, as
// json.Marshal writes them) in batches of at most MaxBatch and returns
// each with its signature appended as the last member.
func (k *Key) SignRecords(records [][]byte) ([][]byte, error) {
	out := make([][]byte, 0, len(records))
	for start := 0; start < len(records); start += MaxBatch {
		batch := records[start:min(start+MaxBatch, len(records))]
		leaves := make([][32]byte, len(batch))
		for i, r := range batch {
			r = bytes.TrimSpace(r)
			if len(r) < 2 || r[0] != '{' || r[len(r)-1] != '}' {
				return nil, fmt.Errorf("identity: record %d is not a JSON object", start+i)
			}
			if bytes.Contains(r, []byte(`"server_signature"`)) {
				return nil, fmt.Errorf("identity: record %d is already signed", start+i)
			}
			batch[i] = r
			leaves[i] = leafHash(r)
		}
		root := treeRoot(leaves)
		sig := base64.RawURLEncoding.EncodeToString(k.Sign(rootMessage(len(batch), root)))
		for i, r := range batch {
			path := auditPath(i, leaves)
			raw := make([]byte, 0, 32*len(path))
			for _, h := range path {
				raw = append(raw, h[:]...)
			}
			member, err := json.Marshal(schemas.ServerSignature{Key: k.pub, Sig: sig, Leaves: len(batch), Index: i,
				Path: base64.RawURLEncoding.EncodeToString(raw)})
			if err != nil {
				return nil, err
			}
			line := make([]byte, 0, len(r)+len(schemas.ServerSignatureMember)+len(member))
			line = append(line, r[:len(r)-1]...)
			line = append(line, schemas.ServerSignatureMember...)
			line = append(line, member...)
			out = append(out, append(line, '}'))
		}
	}
	return out, nil
}

// Errors of VerifyRecord.
var (
	ErrNoSignature  = errors.New("the record carries no server_signature")
	ErrMalformedSig = errors.New("server_signature is not the record's last member in its canonical form")
)

// RecordVerifier verifies signed records against an allow-list, caching
// the batches whose signature verified.
type RecordVerifier struct {
	Allow *AllowList

	mu   sync.Mutex
	good map[[32]byte]string // root -> key that signed it
}

// maxCachedRoots bounds the cache; it is emptied when full.
const maxCachedRoots = 1 << 16

// VerifyRecord checks the signature of line, a record's JSON text as
// received, whose decoded server_signature is sig, and returns the
// enrolled server that signed it.
func (v *RecordVerifier) VerifyRecord(line []byte, sig *schemas.ServerSignature) (Enrolled, error) {
	if sig == nil {
		return Enrolled{}, ErrNoSignature
	}
	line = bytes.TrimSpace(line)
	cut := bytes.LastIndex(line, []byte(schemas.ServerSignatureMember))
	if cut <= 0 {
		return Enrolled{}, ErrMalformedSig
	}
	member, err := json.Marshal(sig)
	if err != nil {
		return Enrolled{}, ErrMalformedSig
	}
	tail := line[cut+len(schemas.ServerSignatureMember):]
	if len(tail) != len(member)+1 || !bytes.Equal(tail[:len(member)], member) || tail[len(member)] != '}' {
		return Enrolled{}, ErrMalformedSig
	}
	e, ok := v.Allow.Lookup(sig.Key)
	if !ok {
		return Enrolled{}, ErrNotEnrolled
	}
	raw, err := base64.RawURLEncoding.DecodeString(sig.Path)
	if err != nil || len(raw)%32 != 0 || len(raw) > 32*17 || sig.Leaves < 1 || sig.Index < 0 || sig.Index >= sig.Leaves {
		return e, ErrMalformedSig
	}
	path := make([][32]byte, len(raw)/32)
	for i := range path {
		copy(path[i][:], raw[32*i:])
	}
	root, ok := rootFrom(sig.Index, sig.Leaves, signedLeaf(line, cut), path)
	if !ok {
		return e, ErrBadSignature
	}
	v.mu.Lock()
	signer, cached := v.good[root]
	v.mu.Unlock()
	if cached && signer == sig.Key {
		return e, nil
	}
	s, err := base64.RawURLEncoding.DecodeString(sig.Sig)
	if err != nil || len(s) != ed25519.SignatureSize || !ed25519.Verify(e.Key, rootMessage(sig.Leaves, root), s) {
		return e, ErrBadSignature
	}
	v.mu.Lock()
	if v.good == nil || len(v.good) >= maxCachedRoots {
		v.good = map[[32]byte]string{}
	}
	v.good[root] = sig.Key
	v.mu.Unlock()
	return e, nil
}
