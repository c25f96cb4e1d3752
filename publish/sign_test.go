package publish_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/publish"
	"github.com/neubot/neubot/schemas"
)

// TestSignedDay: the collector's key signs a day's manifest; the day
// verifies against that key and no other, an export of the same rows
// keeps the signature, and a data file or the manifest changed by one
// byte, or a file missing, fails verification.
func TestSignedDay(t *testing.T) {
	_, conn := localchtest.NewDatabase(t)
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	seed(t, conn, day, 200, 64496)
	dir := t.TempDir()
	test, _ := schemas.Lookup(schemas.SpeedtestName)
	key := identity.NewKey()
	cfg := publish.ExportConfig{Conn: conn, Dir: dir, ASNDB: "test-db", Key: key}
	if _, err := publish.ExportDay(context.Background(), cfg, test, day); err != nil {
		t.Fatal(err)
	}
	dayDir := filepath.Join(dir, publish.DayDir(test.Name, day))
	m, err := publish.VerifyDay(dayDir, key.PublicKey())
	if err != nil || m.Rows == 0 || len(m.Files) != 2 {
		t.Fatalf("the exported day does not verify: %v (%+v)", err, m)
	}
	if _, err := publish.VerifyDay(dayDir, identity.NewKey().PublicKey()); err == nil || !strings.Contains(err.Error(), "signed by the key") {
		t.Fatalf("the day verified against another key: %v", err)
	}
	sigPath := filepath.Join(dayDir, identity.ManifestSigName)
	sig, _ := os.ReadFile(sigPath)
	if _, err := publish.ExportDay(context.Background(), cfg, test, day); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(sigPath); string(again) != string(sig) {
		t.Fatal("exporting the same rows again rewrote the signature")
	}

	// Tampering, each on a fresh copy of the day.
	tampered := func(name string, change func(dir string)) {
		cp := t.TempDir()
		ents, _ := os.ReadDir(dayDir)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dayDir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(cp, e.Name()), b, 0o644)
		}
		if _, err := publish.VerifyDay(cp, key.PublicKey()); err != nil {
			t.Fatalf("the copy does not verify before %s: %v", name, err)
		}
		change(cp)
		if _, err := publish.VerifyDay(cp, key.PublicKey()); err == nil {
			t.Errorf("%s: the day still verifies", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	flip := func(path string, at int) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[at%len(b)] ^= 1
		os.WriteFile(path, b, 0o644)
	}
	tampered("one bit of the Parquet file", func(d string) { flip(filepath.Join(d, m.Files[0].Name), 1000) })
	tampered("one bit of the CSV.gz file", func(d string) { flip(filepath.Join(d, m.Files[1].Name), 500) })
	tampered("the manifest's row count", func(d string) {
		p := filepath.Join(d, "manifest.json")
		b, _ := os.ReadFile(p)
		os.WriteFile(p, []byte(strings.Replace(string(b), `"rows": `, `"rows": 1`, 1)), 0o644)
	})
	tampered("a file appended to", func(d string) {
		f, _ := os.OpenFile(filepath.Join(d, m.Files[1].Name), os.O_APPEND|os.O_WRONLY, 0)
		f.Write([]byte("x"))
		f.Close()
	})
	tampered("a file removed", func(d string) { os.Remove(filepath.Join(d, m.Files[0].Name)) })
	tampered("the signature removed", func(d string) { os.Remove(filepath.Join(d, identity.ManifestSigName)) })
	tampered("the manifest re-signed by another key", func(d string) {
		b, _ := os.ReadFile(filepath.Join(d, "manifest.json"))
		os.WriteFile(filepath.Join(d, identity.ManifestSigName), identity.NewKey().SignManifest(b), 0o644)
	})

	// Without a key, a rewritten manifest loses its stale signature.
	seed(t, conn, day, 10, 64497)
	cfg.Key = nil
	if _, err := publish.ExportDay(context.Background(), cfg, test, day); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sigPath); !os.IsNotExist(err) {
		t.Fatalf("a manifest rewritten without a key kept its old signature: %v", err)
	}
}
