// Package identity holds the Ed25519 identities of test servers and of the
// collector, the operator's allow-list of enrolled test servers, the signed
// requests of test servers (registration, heartbeats, forwarded records)
// and the signatures of records (spec/trust.md).
package identity

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Key is an Ed25519 key pair.
type Key struct {
	priv ed25519.PrivateKey
	pub  string // base64url of the public key
}

// KeyFileHeader starts every key file: its format is this line, then the
// 32-byte Ed25519 seed in base64url (no padding) on the second line.
const KeyFileHeader = "neubot ed25519 private key v1"

// NewKey makes a random key pair.
func NewKey() *Key {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic("identity: no randomness: " + err.Error())
	}
	return fromPrivate(priv)
}

// KeyFromSeed makes the key pair of a 32-byte seed (tests: a fixed
// identity).
func KeyFromSeed(seed []byte) *Key {
	return fromPrivate(ed25519.NewKeyFromSeed(seed))
}

// PublicKey is the key's public half.
func (k *Key) PublicKey() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

func fromPrivate(priv ed25519.PrivateKey) *Key {
	return &Key{priv: priv, pub: EncodeKey(priv.Public().(ed25519.PublicKey))}
}

// EncodeKey is the text form of a public key: base64url without padding.
func EncodeKey(pub ed25519.PublicKey) string {
	return base64.RawURLEncoding.EncodeToString(pub)
}

// DecodeKey parses the text form of a public key.
func DecodeKey(s string) (ed25519.PublicKey, error) {
	if len(s) != 43 {
		return nil, fmt.Errorf("an Ed25519 public key is 43 base64url characters, not %d", len(s))
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("not a base64url Ed25519 public key")
	}
	return ed25519.PublicKey(b), nil
}

// Public is the text form of the key's public half.
func (k *Key) Public() string { return k.pub }

// Sign signs msg.
func (k *Key) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

// LoadOrCreate reads the key in path, or makes one and writes it there
// (mode 0600, directories created) when the file does not exist: a server
// has its identity from its first start on.
func LoadOrCreate(path string) (*Key, error) {
	k, err := Load(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return k, err
	}
	k = NewKey()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	body := KeyFileHeader + "\n" + base64.RawURLEncoding.EncodeToString(k.priv.Seed()) + "\n"
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) { // made by a concurrent start
			return Load(path)
		}
		return nil, fmt.Errorf("identity: %w", err)
	}
	if _, err := f.WriteString(body); err != nil {
		f.Close()
		return nil, fmt.Errorf("identity: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("identity: write %s: %w", path, err)
	}
	return k, f.Close()
}

// Load reads a key file.
func Load(path string) (*Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	header, seed, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if strings.TrimSpace(header) != KeyFileHeader {
		return nil, fmt.Errorf("identity: %s is not a key file (its first line is not %q)", path, KeyFileHeader)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(seed))
	if err != nil || len(raw) != ed25519.SeedSize {
		return nil, fmt.Errorf("identity: %s: the second line is not a base64url Ed25519 seed", path)
	}
	return fromPrivate(ed25519.NewKeyFromSeed(raw)), nil
}

// Enrolled is one entry of an allow-list: a test server's key and the one
// server ID it may register and sign records as.
type Enrolled struct {
	Key ed25519.PublicKey
	ID  string
}

// AllowList is the operator's list of enrolled test servers, read from a
// file: one server per line, "<public key> <server id>", '#' starts a
// comment. The file is read again when it changes (checked at most once a
// second), so that enrolling or removing a server needs no restart. An
// empty or missing file admits nobody.
type AllowList struct {
	path string

	mu      sync.Mutex
	checked time.Time
	modTime time.Time
	size    int64
	byKey   map[string]Enrolled
	err     error
}

// MaxAllowListBytes bounds the allow-list file.
const MaxAllowListBytes = 4 << 20

// OpenAllowList reads the allow-list in path; a missing file is an empty
// list (nobody enrolled yet), a malformed one an error.
func OpenAllowList(path string) (*AllowList, error) {
	a := &AllowList{path: path}
	a.reload(time.Now())
	return a, a.err
}

// StaticAllowList is an allow-list that is not backed by a file (tests).
func StaticAllowList(entries ...Enrolled) *AllowList {
	a := &AllowList{byKey: map[string]Enrolled{}, checked: time.Now().Add(100 * 365 * 24 * time.Hour)}
	for _, e := range entries {
		a.byKey[EncodeKey(e.Key)] = e
	}
	return a
}

// Add enrolls e in a static list (tests, and programs that enroll their
// own servers); it has no effect on a list read from a file.
func (a *AllowList) Add(e Enrolled) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.path == "" {
		a.byKey[EncodeKey(e.Key)] = e
	}
}

// Path is the file of the list ("" for a static one).
func (a *AllowList) Path() string { return a.path }

// Lookup returns the enrolled entry of key (text form).
func (a *AllowList) Lookup(key string) (Enrolled, bool) {
	if a == nil {
		return Enrolled{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if now := time.Now(); a.path != "" && now.Sub(a.checked) >= time.Second {
		a.reload(now)
	}
	e, ok := a.byKey[key]
	return e, ok
}

// Len is the number of enrolled servers.
func (a *AllowList) Len() int {
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.byKey)
}

// reload reads the file again if it changed; on an error the previous
// list stays in force.
func (a *AllowList) reload(now time.Time) {
	a.checked = now
	st, err := os.Stat(a.path)
	if errors.Is(err, os.ErrNotExist) {
		a.byKey, a.err = map[string]Enrolled{}, nil
		return
	}
	if err != nil {
		a.err = fmt.Errorf("identity: allow-list: %w", err)
		return
	}
	if st.ModTime().Equal(a.modTime) && st.Size() == a.size && a.byKey != nil {
		return
	}
	f, err := os.Open(a.path)
	if err != nil {
		a.err = fmt.Errorf("identity: allow-list: %w", err)
		return
	}
	defer f.Close()
	m, err := ParseAllowList(io.LimitReader(f, MaxAllowListBytes+1))
	if err != nil {
		a.err = fmt.Errorf("identity: allow-list %s: %w", a.path, err)
		return
	}
	a.byKey, a.err, a.modTime, a.size = m, nil, st.ModTime(), st.Size()
}

// ParseAllowList parses the text of an allow-list.
func ParseAllowList(r io.Reader) (map[string]Enrolled, error) {
	out := map[string]Enrolled{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 4096)
	n, total := 0, 0
	for sc.Scan() {
		n++
		total += len(sc.Bytes()) + 1
		if total > MaxAllowListBytes {
			return nil, fmt.Errorf("over %d bytes", MaxAllowListBytes)
		}
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"<public key> <server id>\"", n)
		}
		pub, err := DecodeKey(f[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if err := checkID(f[1]); err != nil {
			return nil, fmt.Errorf("line %d: server id: %w", n, err)
		}
		if prev, dup := out[f[0]]; dup && prev.ID != f[1] {
			return nil, fmt.Errorf("line %d: the key is enrolled twice, as %s and %s", n, prev.ID, f[1])
		}
		out[f[0]] = Enrolled{Key: pub, ID: f[1]}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return out, nil
}

func checkID(id string) error {
	if id == "" || len(id) > 128 {
		return errors.New("must be 1 to 128 bytes")
	}
	if strings.HasPrefix(id, "peer-") || id == "peer" {
		return errors.New("must not start with \"peer-\": that is for volunteers' agents")
	}
	for _, r := range id {
		if !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("._:-", r))) {
			return fmt.Errorf("has %q: only A-Z a-z 0-9 . _ : - are allowed", r)
		}
	}
	return nil
}

// Enroll adds key (text form) as server id to the allow-list file in path,
// creating it; enrolling the same key as the same id again changes
// nothing. It refuses a key enrolled under another id, and an id enrolled
// with another key. The file is replaced atomically.
func Enroll(path, key, id string) (added bool, err error) {
	if _, err := DecodeKey(key); err != nil {
		return false, err
	}
	if err := checkID(id); err != nil {
		return false, fmt.Errorf("server id %q %w", id, err)
	}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	m, err := ParseAllowList(strings.NewReader(string(old)))
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if e, ok := m[key]; ok {
		if e.ID == id {
			return false, nil
		}
		return false, fmt.Errorf("key %s is already enrolled as %s", key, e.ID)
	}
	for k, e := range m {
		if e.ID == id {
			return false, fmt.Errorf("server id %s is already enrolled with key %s: remove that line first", id, k)
		}
	}
	body := string(old)
	if len(body) == 0 {
		body = "# Test servers enrolled by the operator: \"<Ed25519 public key> <server id>\" per line.\n"
	} else if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	body += key + " " + id + "\n"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		return false, err
	}
	if f, err := os.Open(tmp); err == nil {
		_ = f.Sync()
		f.Close()
	}
	return true, os.Rename(tmp, path)
}
