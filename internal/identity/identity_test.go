package identity

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/schemas"
)

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d", "server.key")
	k1, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreate(path)
	if err != nil || k2.Public() != k1.Public() {
		t.Fatalf("second start: %v, key %s != %s", err, k2.Public(), k1.Public())
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode())
	}
	os.WriteFile(path, []byte("garbage\n"), 0o600)
	if _, err := LoadOrCreate(path); err == nil {
		t.Fatal("a malformed key file was accepted")
	}
}

func TestEnrollAndAllowList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "enrolled.txt")
	a, err := OpenAllowList(path)
	if err != nil || a.Len() != 0 {
		t.Fatalf("missing file: %v, %d entries", err, a.Len())
	}
	k, other := NewKey(), NewKey()
	if added, err := Enroll(path, k.Public(), "ts1"); err != nil || !added {
		t.Fatal(added, err)
	}
	if added, err := Enroll(path, k.Public(), "ts1"); err != nil || added {
		t.Fatal("enrolling again:", added, err)
	}
	if _, err := Enroll(path, k.Public(), "ts2"); err == nil {
		t.Fatal("one key enrolled under two ids")
	}
	if _, err := Enroll(path, other.Public(), "ts1"); err == nil {
		t.Fatal("one id enrolled with two keys")
	}
	if _, err := Enroll(path, other.Public(), "peer-x"); err == nil {
		t.Fatal("a peer id was enrolled")
	}
	// The list is checked once a second: the key is found within a few.
	e, ok := a.Lookup(k.Public())
	for deadline := time.Now().Add(5 * time.Second); !ok && time.Now().Before(deadline); e, ok = a.Lookup(k.Public()) {
		time.Sleep(20 * time.Millisecond)
	}
	if !ok || e.ID != "ts1" {
		t.Fatalf("enrolled key not found after the file changed: %v %v", e, ok)
	}
	if _, ok := a.Lookup(other.Public()); ok {
		t.Fatal("a key that was never enrolled is admitted")
	}
	if _, err := ParseAllowList(strings.NewReader("notakey ts\n")); err == nil {
		t.Fatal("a malformed line was accepted")
	}
}

func signedRequest(t *testing.T, k *Key, body string, now time.Time) *http.Request {
	req := httptest.NewRequest(http.MethodPost, rendezvous.RegisterPath, strings.NewReader(body))
	k.SignRequest(req, []byte(body), now)
	return req
}

func TestVerifyRequest(t *testing.T) {
	k, rogue := NewKey(), NewKey()
	v := &Verifier{Allow: StaticAllowList(Enrolled{Key: mustKey(k.Public()), ID: "ts1"})}
	now := time.Now()
	req := signedRequest(t, k, `{"id":"ts1"}`, now)
	if e, err := v.VerifyRequest(req, []byte(`{"id":"ts1"}`), now); err != nil || e.ID != "ts1" {
		t.Fatalf("good request: %v %v", e, err)
	}
	if _, err := v.VerifyRequest(req, []byte(`{"id":"ts1"}`), now); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replayed request: %v", err)
	}
	req = signedRequest(t, k, `{"id":"ts1"}`, now)
	if _, err := v.VerifyRequest(req, []byte(`{"id":"ts2"}`), now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("altered body: %v", err)
	}
	req = signedRequest(t, k, `{}`, now.Add(-time.Hour))
	if _, err := v.VerifyRequest(req, []byte(`{}`), now); !errors.Is(err, ErrStale) {
		t.Fatalf("old request: %v", err)
	}
	req = signedRequest(t, rogue, `{}`, now)
	if _, err := v.VerifyRequest(req, []byte(`{}`), now); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("rogue key: %v", err)
	}
	req = httptest.NewRequest(http.MethodPost, "/", nil)
	if _, err := v.VerifyRequest(req, nil, now); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("unsigned: %v", err)
	}
}

func mustKey(s string) []byte {
	k, err := DecodeKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

func decodeSig(t *testing.T, line []byte) *schemas.ServerSignature {
	t.Helper()
	var r struct {
		S *schemas.ServerSignature `json:"server_signature"`
	}
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatal(err)
	}
	return r.S
}

func TestRecordSignatures(t *testing.T) {
	k, rogue := NewKey(), NewKey()
	v := &RecordVerifier{Allow: StaticAllowList(Enrolled{Key: mustKey(k.Public()), ID: "ts1"})}
	for _, n := range []int{1, 2, 3, 7, 64, 65, 150} {
		var recs [][]byte
		for i := range n {
			recs = append(recs, []byte(fmt.Sprintf(`{"measurement_uid":"%d","test_keys":{"download":{"goodput_mbps":%d.5}}}`, i, i)))
		}
		signed, err := k.SignRecords(recs)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range signed {
			if e, err := v.VerifyRecord(line, decodeSig(t, line)); err != nil || e.ID != "ts1" {
				t.Fatalf("n=%d record %d: %v", n, i, err)
			}
		}
		// The replayed record with an altered goodput fails.
		bad := bytes.Replace(signed[n-1], []byte(`"goodput_mbps":`), []byte(`"goodput_mbps":9`), 1)
		if _, err := v.VerifyRecord(bad, decodeSig(t, bad)); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("n=%d altered record: %v", n, err)
		}
	}
	forged, _ := rogue.SignRecords([][]byte{[]byte(`{"a":1}`)})
	if _, err := v.VerifyRecord(forged[0], decodeSig(t, forged[0])); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("rogue key: %v", err)
	}
	// A signature moved into another record, or not last, fails.
	good, _ := k.SignRecords([][]byte{[]byte(`{"a":1}`)})
	sig := decodeSig(t, good[0])
	if _, err := v.VerifyRecord([]byte(`{"a":2}`), sig); err == nil {
		t.Fatal("a signature verified on a record without its member")
	}
	moved := bytes.Replace(good[0], []byte(`{"a":1,`), []byte(`{"a":2,`), 1)
	if _, err := v.VerifyRecord(moved, decodeSig(t, moved)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("moved signature: %v", err)
	}
}

// BenchmarkVerifyRecord is the collector's cost per signed record of a
// batch of MaxBatch 2 kB records (one Ed25519 verification per batch).
func BenchmarkVerifyRecord(b *testing.B) {
	k := NewKey()
	v := &RecordVerifier{Allow: StaticAllowList(Enrolled{Key: k.PublicKey(), ID: "ts1"})}
	var recs [][]byte
	for i := range MaxBatch {
		recs = append(recs, []byte(fmt.Sprintf(`{"measurement_uid":"%d","pad":"%s"}`, i, strings.Repeat("x", 2000))))
	}
	sigs := make([]*schemas.ServerSignature, MaxBatch)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%MaxBatch == 0 {
			b.StopTimer()
			signed, _ := k.SignRecords(recs)
			for j, l := range signed {
				var r struct {
					S *schemas.ServerSignature `json:"server_signature"`
				}
				json.Unmarshal(l, &r)
				sigs[j] = r.S
			}
			v.good = nil // a new batch: its root is verified once
			b.StartTimer()
			for j := range signed {
				if _, err := v.VerifyRecord(signed[j], sigs[j]); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(((b.N+MaxBatch-1)/MaxBatch)*MaxBatch), "ns/record")
}

// TestManifestSignature: a manifest's signature verifies with the signer's
// key only, and not once one byte of the manifest changed.
func TestManifestSignature(t *testing.T) {
	k, other := NewKey(), NewKey()
	manifest := []byte(`{"test":"speedtest","files":[{"name":"a.parquet","bytes":10,"sha256":"00"}]}` + "\n")
	sig := k.SignManifest(manifest)
	if err := VerifyManifest(k.PublicKey(), manifest, sig); err != nil {
		t.Fatalf("the signature of a manifest does not verify: %v", err)
	}
	altered := bytes.Replace(manifest, []byte(`"bytes":10`), []byte(`"bytes":11`), 1)
	if err := VerifyManifest(k.PublicKey(), altered, sig); !errors.Is(err, ErrManifestSignature) {
		t.Fatalf("an altered manifest: %v, want ErrManifestSignature", err)
	}
	if err := VerifyManifest(other.PublicKey(), manifest, sig); err == nil || !strings.Contains(err.Error(), "signed by the key") {
		t.Fatalf("another key: %v", err)
	}
	// A signature of the same bytes without the manifest context (as
	// another use of the key would make) is refused.
	var s ManifestSignature
	if err := json.Unmarshal(sig, &s); err != nil {
		t.Fatal(err)
	}
	s.Signature = base64.RawURLEncoding.EncodeToString(k.Sign(manifest))
	bare, _ := json.Marshal(s)
	if err := VerifyManifest(k.PublicKey(), manifest, bare); !errors.Is(err, ErrManifestSignature) {
		t.Fatalf("a signature without the context: %v", err)
	}
	if err := VerifyManifest(k.PublicKey(), manifest, []byte(`{"algorithm":"ed25519"`)); err == nil {
		t.Fatal("a truncated signature file verified")
	}
}
