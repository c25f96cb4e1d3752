package annotate

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

const testDir = "testdata/ipdb"

func openTestDB(t testing.TB) *DB {
	t.Helper()
	db, err := Open(testDir)
	if err != nil {
		t.Fatalf("Open(%q): %v", testDir, err)
	}
	return db
}

func TestLookup(t *testing.T) {
	db := openTestDB(t)
	tests := []struct {
		name, addr string
		want       Annotation
	}{
		{"unspecified address ignored despite a row", "0.0.0.0", Annotation{0, "", "", "0.0.0.0/24"}},
		{"second address of IPv4 space", "0.0.0.1", Annotation{64500, "Bottom Of Space", "", "0.0.0.0/24"}},
		{"quoted org with comma", "1.0.0.1", Annotation{13335, "Cloudflare, Inc.", "AU", "1.0.0.0/24"}},
		{"just after a range, in a gap", "1.0.1.0", Annotation{0, "", "CN", "1.0.1.0/24"}},
		{"inside an ASN gap with a country", "1.0.2.1", Annotation{0, "", "CN", "1.0.2.0/24"}},
		{"first address of a range", "1.0.4.0", Annotation{38803, "Gtelecom Pty Ltd", "", "1.0.4.0/24"}},
		{"last address of a range", "1.0.7.255", Annotation{38803, "Gtelecom Pty Ltd", "", "1.0.7.0/24"}},
		{"gap in both tables", "1.0.8.0", Annotation{0, "", "", "1.0.8.0/24"}},
		{"private address ignored despite a country row", "172.16.5.4", Annotation{0, "", "", "172.16.5.0/24"}},
		{"IPv4-mapped private address ignored", "::ffff:172.16.5.4", Annotation{0, "", "", "172.16.5.0/24"}},
		{"shared CGNAT space ignored", "100.64.0.1", Annotation{0, "", "", "100.64.0.0/24"}},
		{"loopback ignored", "127.0.0.1", Annotation{0, "", "", "127.0.0.0/24"}},
		{"escaped quotes in org", "11.200.0.1", Annotation{64512, `The "Eleven" Net`, "ZZ", "11.200.0.0/24"}},
		{"nested ASN range wins", "11.1.0.77", Annotation{64513, "Nested Example", "ZZ", "11.1.0.0/24"}},
		{"outer ASN range resumes after nested one", "11.1.1.0", Annotation{64512, `The "Eleven" Net`, "ZZ", "11.1.1.0/24"}},
		{"narrower country range with same start wins", "11.0.0.1", Annotation{64512, `The "Eleven" Net`, "NL", "11.0.0.0/24"}},
		{"doubly nested country, last address", "11.0.1.255", Annotation{64512, `The "Eleven" Net`, "DE", "11.0.1.0/24"}},
		{"middle country range resumes", "11.0.2.0", Annotation{64512, `The "Eleven" Net`, "NL", "11.0.2.0/24"}},
		{"adjacent equal rows merged", "198.51.100.200", Annotation{64497, "Docs, Part A", "", "198.51.100.0/24"}},
		{"same org, other ASN", "192.0.2.9", Annotation{64496, "Example Org", "", "192.0.2.0/24"}},
		{"lower-case country normalised", "203.0.113.7", Annotation{64498, "Example Org", "AU", "203.0.113.0/24"}},
		{"limited broadcast ignored despite a row", "255.255.255.255", Annotation{0, "", "", "255.255.255.0/24"}},
		{"last but one address of IPv4 space", "255.255.255.254", Annotation{64499, "Top Of Space", "", "255.255.255.0/24"}},
		{"IPv4-mapped IPv6 is IPv4", "::ffff:8.8.8.8", Annotation{15169, "Google LLC", "US", "8.8.8.0/24"}},
		{"IPv4-mapped IPv6 in hex", "::ffff:808:808", Annotation{15169, "Google LLC", "US", "8.8.8.0/24"}},
		{"IPv6 unspecified ignored despite a row", "::", Annotation{0, "", "", "::/48"}},
		{"IPv6 loopback ignored despite a row", "::1", Annotation{0, "", "", "::/48"}},
		{"IPv6 third address of space", "::2", Annotation{64500, "Bottom Of Space", "", "::/48"}},
		{"IPv6 last address of first range", "::ffff", Annotation{64500, "Bottom Of Space", "", "::/48"}},
		{"IPv6 just after first range", "::1:0", Annotation{0, "", "", "::/48"}},
		{"IPv6 quoted org with comma", "2001:db8::1", Annotation{64501, "Doc Six, Ltd.", "NL", "2001:db8::/48"}},
		{"IPv6 last address of a range", "2001:db8:0:ffff:ffff:ffff:ffff:ffff", Annotation{64501, "Doc Six, Ltd.", "NL", "2001:db8::/48"}},
		{"IPv6 first address of next range, nested country", "2001:db8:1::", Annotation{64502, "Doc Six B", "DE", "2001:db8:1::/48"}},
		{"IPv6 last address of nested country", "2001:db8:1:0:ffff:ffff:ffff:ffff", Annotation{64502, "Doc Six B", "DE", "2001:db8:1::/48"}},
		{"IPv6 outer country resumes", "2001:db8:1:1::", Annotation{64502, "Doc Six B", "NL", "2001:db8:1::/48"}},
		{"IPv6 ASN gap", "2001:db8:2::1", Annotation{0, "", "NL", "2001:db8:2::/48"}},
		{"IPv6 zone stripped", "fe80::1%eth0", Annotation{0, "", "", "fe80::/48"}},
		{"IPv6 Google", "2001:4860:4860::8888", Annotation{15169, "Google LLC", "US", "2001:4860:4860::/48"}},
		{"IPv6 multicast ignored despite a row", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Annotation{0, "", "", "ffff:ffff:ffff::/48"}},
		{"IPv6 unique local ignored", "fd00::1", Annotation{0, "", "", "fd00::/48"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := db.Lookup(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("Lookup(%s) = %+v, want %+v", tt.addr, got, tt.want)
			}
			got, err := db.LookupString(tt.addr)
			if err != nil || got != tt.want {
				t.Errorf("LookupString(%q) = %+v, %v, want %+v, nil", tt.addr, got, err, tt.want)
			}
			asn, org, cc := db.Origin(netip.MustParseAddr(tt.addr))
			if asn != tt.want.ASN || org != tt.want.Org || cc != tt.want.Country {
				t.Errorf("Origin(%s) = %d, %q, %q", tt.addr, asn, org, cc)
			}
		})
	}
}

func TestLookupInvalid(t *testing.T) {
	db := openTestDB(t)
	if got := db.Lookup(netip.Addr{}); got != (Annotation{}) {
		t.Errorf("Lookup(zero Addr) = %+v, want zero", got)
	}
	if asn, org, cc := db.Origin(netip.Addr{}); asn != 0 || org != "" || cc != "" {
		t.Errorf("Origin(zero Addr) = %d, %q, %q", asn, org, cc)
	}
	for _, s := range []string{
		"", "garbage", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4:80",
		" 1.2.3.4", "1.2.3.4\n", "[::1]", "::1::", "1.2.3.4/24", "2001:db8::/48",
		"fe80::1%", "1.2.3.4%eth0", "\xff\xfe", "::ffff:1.2.3",
		strings.Repeat("1", MaxAddrLen+1),
		"fe80::1%" + strings.Repeat("e", MaxAddrLen), // valid syntax, too long
	} {
		got, err := db.LookupString(s)
		if !errors.Is(err, ErrInvalidAddress) || got != (Annotation{}) {
			t.Errorf("LookupString(%q) = %+v, %v, want zero, ErrInvalidAddress", s, got, err)
		}
	}
}

// TestTableBounds searches the extreme addresses directly: lookups ignore
// them as special-purpose addresses.
func TestTableBounds(t *testing.T) {
	db := openTestDB(t)
	max6 := u128{^uint64(0), ^uint64(0)}
	tests := []struct {
		name string
		got  func() (uint32, bool)
		asn  uint32 // 0: not found
	}{
		{"IPv4 0", func() (uint32, bool) { return db.asn4.find(0) }, 64500},
		{"IPv4 max", func() (uint32, bool) { return db.asn4.find(^uint32(0)) }, 64499},
		{"IPv6 0", func() (uint32, bool) { return db.asn6.find(u128{}) }, 64500},
		{"IPv6 max", func() (uint32, bool) { return db.asn6.find(max6) }, 64503},
		{"IPv6 gap after ::ffff", func() (uint32, bool) { return db.asn6.find(u128{0, 0x10000}) }, 0},
	}
	for _, tt := range tests {
		i, ok := tt.got()
		if tt.asn == 0 {
			if ok {
				t.Errorf("%s: found %+v, want nothing", tt.name, db.recs[i])
			}
			continue
		}
		if !ok || db.recs[i].asn != tt.asn {
			t.Errorf("%s: found %v %v, want AS%d", tt.name, ok, i, tt.asn)
		}
	}
	var empty6 table6[uint32]
	if _, ok := empty6.find(max6); ok {
		t.Errorf("empty IPv6 table: found")
	}
	empty4 := makeTable4(nil)
	if _, ok := empty4.find(0); ok {
		t.Errorf("empty IPv4 table: found")
	}
}

func TestPublic(t *testing.T) {
	for s, want := range map[string]bool{
		"8.8.8.8": true, "0.0.0.1": true, "100.63.255.255": true, "100.128.0.0": true,
		"2001:db8::1": true, "::ffff:8.8.8.8": true, "fe80::1%eth0": false,
		"0.0.0.0": false, "127.0.0.1": false, "10.1.2.3": false, "172.31.0.1": false,
		"192.168.0.1": false, "100.64.0.1": false, "100.127.255.255": false, "169.254.1.1": false,
		"224.0.0.1": false, "255.255.255.255": false, "::": false, "::1": false, "fc00::1": false,
		"ff02::1": false, "::ffff:10.0.0.1": false,
	} {
		if got := Public(netip.MustParseAddr(s)); got != want {
			t.Errorf("Public(%s) = %v, want %v", s, got, want)
		}
	}
	if Public(netip.Addr{}) {
		t.Errorf("Public(zero Addr) = true")
	}
}

func TestTruncatePrefix(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"203.0.113.77", "203.0.113.0/24"},
		{"0.0.0.0", "0.0.0.0/24"},
		{"255.255.255.255", "255.255.255.0/24"},
		{"::ffff:203.0.113.77", "203.0.113.0/24"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1::/48"},
		{"2001:db8:1:ffff::1", "2001:db8:1::/48"},
		{"fe80::1%eth0", "fe80::/48"},
		{"::1", "::/48"},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff::/48"},
	}
	for _, tt := range tests {
		addr := netip.MustParseAddr(tt.addr)
		got := TruncatePrefix(addr)
		if got.String() != tt.want {
			t.Errorf("TruncatePrefix(%s) = %s, want %s", tt.addr, got, tt.want)
		}
		if fp := formatPrefix(addr.Unmap().WithZone("")); fp != tt.want {
			t.Errorf("formatPrefix(%s) = %s, want %s", tt.addr, fp, tt.want)
		}
	}
	if p := TruncatePrefix(netip.Addr{}); p.IsValid() {
		t.Errorf("TruncatePrefix(zero Addr) = %s, want invalid", p)
	}
}

func TestVersionLicenceStats(t *testing.T) {
	db := openTestDB(t)
	if got, want := db.Version(), "@ip-location-db/asn@0.0.1-test @ip-location-db/geo-whois-asn-country@0.0.2-test"; got != want {
		t.Errorf("Version() = %q, want %q", got, want)
	}
	for _, s := range []string{"CC-BY-4.0", "RouteViews", "DB-IP.com", "CC0-1.0", "NRO"} {
		if !strings.Contains(db.Licence(), s) {
			t.Errorf("Licence() = %q, does not mention %q", db.Licence(), s)
		}
	}
	// 11 ASN rows: one adjacent pair merged, one range split in three by a
	// nested one. 9 country rows: 11/8 is split in four by two nested rows.
	want := Stats{ASNRanges4: 11, ASNRanges6: 5, CountryRanges4: 10, CountryRanges6: 4, ASRecords: 13, Countries: 7}
	if got := db.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestOrgInterned(t *testing.T) {
	db := openTestDB(t)
	ptr := func(s string) *byte { return unsafe.StringData(s) }
	_, a, _ := db.Origin(netip.MustParseAddr("192.0.2.1"))
	_, b, _ := db.Origin(netip.MustParseAddr("203.0.113.1"))
	if a != "Example Org" || ptr(a) != ptr(b) {
		t.Errorf("org %q of two ASNs not shared", a)
	}
	_, a, _ = db.Origin(netip.MustParseAddr("8.8.8.8"))
	_, b, _ = db.Origin(netip.MustParseAddr("2001:4860::1"))
	if a != "Google LLC" || ptr(a) != ptr(b) {
		t.Errorf("org %q of IPv4 and IPv6 rows not shared", a)
	}
}

func TestMalformedFile(t *testing.T) {
	f, err := os.Open("testdata/malformed/asn-ipv4.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = FromRanges(f, nil, nil, nil, "test")
	var re *RowError
	if !errors.As(err, &re) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("FromRanges(malformed) error = %v, want a *RowError wrapping ErrMalformed", err)
	}
	if re.File != "asn-ipv4.csv" || re.Line != 3 {
		t.Errorf("RowError at %s:%d, want asn-ipv4.csv:3", re.File, re.Line)
	}
	if msg := err.Error(); !strings.Contains(msg, "asn-ipv4.csv:3:") || !strings.Contains(msg, `"AS15169"`) {
		t.Errorf("error %q does not name the file, line and bad field", msg)
	}
}

// TestOpenMalformed checks that Open names the full path of the bad file.
func TestOpenMalformed(t *testing.T) {
	dir := copyTestDB(t)
	bad, err := os.ReadFile("testdata/malformed/asn-ipv4.csv")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "asn", "asn-ipv4.csv")
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), path+":3:") {
		t.Errorf("Open with malformed file: error = %v, want it to name %s:3", err, path)
	}
}

// copyTestDB copies testdata/ipdb into a temporary folder.
func copyTestDB(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(testDir)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMalformedRows(t *testing.T) {
	const ok4 = "1.0.0.0,1.0.0.255,13335,ok\n"
	tests := []struct {
		name   string
		stream int // 0 asn4, 1 asn6, 2 cc4, 3 cc6
		data   string
		line   int
		substr string
	}{
		{"too few fields", 0, "1.0.0.0,1.0.0.255,13335\n", 1, "want 4 fields"},
		{"too many fields on line 2", 0, ok4 + "1.0.1.0,1.0.1.255,1,x,y\n", 2, "want 4 fields"},
		{"header row", 0, "start_ip,end_ip,asn,org\n" + ok4, 1, `bad ASN "asn"`},
		{"ASN too large", 0, "1.0.0.0,1.0.0.1,4294967296,x\n", 1, "bad ASN"},
		{"negative ASN", 0, "1.0.0.0,1.0.0.1,-1,x\n", 1, "bad ASN"},
		{"empty ASN", 0, "1.0.0.0,1.0.0.1,,x\n", 1, "bad ASN"},
		{"bad start", 0, ok4 + ok4 + "1.0.0,1.0.0.255,1,x\n", 3, `bad start address "1.0.0"`},
		{"bad end", 0, "1.0.0.0,1.0.0.256,1,x\n", 1, "bad end address"},
		{"IPv6 in IPv4 file", 0, "::1,::2,1,x\n", 1, "not IPv4"},
		{"IPv4-mapped in IPv4 file", 0, "::ffff:1.0.0.0,::ffff:1.0.0.255,1,x\n", 1, "not IPv4"},
		{"end before start", 0, "1.0.0.9,1.0.0.1,1,x\n", 1, "before start"},
		{"bare quote", 0, ok4 + "1.0.0.0,1.0.0.1,1,bad\"quote\n", 2, "bare"},
		{"line numbers count blank lines", 0, ok4 + "\n\n1.0.0.0,1.0.0.1,x,y\n", 4, "bad ASN"},
		{"IPv4 in IPv6 file", 1, "1.0.0.0,1.0.0.255,1,x\n", 1, "not IPv6"},
		{"zone in IPv6 file", 1, "fe80::%eth0,fe80::1,1,x\n", 1, "not IPv6"},
		{"IPv6 end before start", 1, "2001:db8::1,2001:db8::,1,x\n", 1, "before start"},
		{"three-letter country", 2, "1.0.0.0,1.0.0.255,AUS\n", 1, "bad country code"},
		{"digit in country", 2, "1.0.0.0,1.0.0.255,A1\n", 1, "bad country code"},
		{"empty country", 2, "1.0.0.0,1.0.0.255,\n", 1, "bad country code"},
		{"country row with ASN", 2, ok4, 1, "want 3 fields"},
		{"two fields", 3, "2001:db8::,2001:db8::1\n", 1, "want 3 fields"},
		{"non-letter IPv6 country", 3, "2001:db8::,2001:db8::1,U$\n", 1, "bad country code"},
	}
	names := [4]string{"asn-ipv4.csv", "asn-ipv6.csv", "geo-whois-asn-country-ipv4.csv", "geo-whois-asn-country-ipv6.csv"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in [4]io.Reader
			in[tt.stream] = strings.NewReader(tt.data)
			db, err := FromRanges(in[0], in[1], in[2], in[3], "test")
			var re *RowError
			if !errors.As(err, &re) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("FromRanges = %v, %v; want a *RowError wrapping ErrMalformed", db, err)
			}
			if re.File != names[tt.stream] || re.Line != tt.line {
				t.Errorf("error at %s:%d, want %s:%d", re.File, re.Line, names[tt.stream], tt.line)
			}
			if want := fmt.Sprintf("%s:%d: ", names[tt.stream], tt.line); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
			if !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("error %q does not contain %q", err, tt.substr)
			}
		})
	}
}

func TestOpenMissing(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) string
	}{
		{"missing folder", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }},
		{"empty folder", func(t *testing.T) string { return t.TempDir() }},
		{"missing CSV file", func(t *testing.T) string {
			dir := copyTestDB(t)
			if err := os.Remove(filepath.Join(dir, "geo-whois-asn-country", "geo-whois-asn-country-ipv6.csv")); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := Open(tt.setup(t))
			if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "run scripts/setup") {
				t.Errorf("Open = %v, %v; want an fs.ErrNotExist error saying to run scripts/setup", db, err)
			}
		})
	}
}

func TestOpenEmptyFile(t *testing.T) {
	dir := copyTestDB(t)
	if err := os.WriteFile(filepath.Join(dir, "asn", "asn-ipv6.csv"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "holds no rows") {
		t.Errorf("Open with an empty file: error = %v, want \"holds no rows\"", err)
	}
}

func TestOpenBadPackageJSON(t *testing.T) {
	dir := copyTestDB(t)
	path := filepath.Join(dir, "asn", "package.json")
	if err := os.WriteFile(path, []byte(`{"name": "@ip-location-db/asn"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Open without version: error = %v, want it to name %s", err, path)
	}
}

func TestDefaultDir(t *testing.T) {
	t.Run("environment", func(t *testing.T) {
		t.Setenv(EnvDir, "/somewhere/else")
		if d, err := DefaultDir(); d != "/somewhere/else" || err != nil {
			t.Errorf("DefaultDir() = %q, %v", d, err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		t.Setenv(EnvDir, "")
		t.Chdir(t.TempDir())
		d, err := DefaultDir()
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "run scripts/setup") {
			t.Errorf("DefaultDir() = %q, %v; want an error saying to run scripts/setup", d, err)
		}
	})
	t.Run("walks up", func(t *testing.T) {
		t.Setenv(EnvDir, "")
		root := t.TempDir()
		want := filepath.Join(root, filepath.FromSlash(RelDir))
		deep := filepath.Join(root, "a", "b", "c")
		for _, d := range []string{want, deep} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		t.Chdir(deep)
		d, err := DefaultDir()
		if err != nil {
			t.Fatal(err)
		}
		// Compare resolved paths: the temporary folder may be a symlink.
		if got, _ := filepath.EvalSymlinks(d); got != mustEval(t, want) {
			t.Errorf("DefaultDir() = %q, want %q", d, want)
		}
	})
}

func mustEval(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestUnsortedInput checks that row order does not matter except between
// rows with identical bounds.
func TestUnsortedInput(t *testing.T) {
	sorted := openTestDB(t)
	reversed := func(name string) io.Reader {
		data, err := os.ReadFile(filepath.Join(testDir, name))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitAfter(strings.TrimSuffix(string(data), "\n"), "\n")
		slices.Reverse(lines)
		return strings.NewReader(strings.Join(lines, "\n") + "\n")
	}
	db, err := FromRanges(reversed("asn/asn-ipv4.csv"), reversed("asn/asn-ipv6.csv"),
		reversed("geo-whois-asn-country/geo-whois-asn-country-ipv4.csv"),
		reversed("geo-whois-asn-country/geo-whois-asn-country-ipv6.csv"), "reversed")
	if err != nil {
		t.Fatal(err)
	}
	if db.Stats() != sorted.Stats() {
		t.Errorf("Stats differ: %+v vs %+v", db.Stats(), sorted.Stats())
	}
	for _, s := range []string{"0.0.0.1", "1.0.0.1", "1.0.2.1", "11.0.0.1", "11.0.1.3", "11.1.0.1", "11.1.1.1",
		"198.51.100.200", "255.255.255.254", "::2", "2001:db8::1", "2001:db8:1::1", "2001:db8:1:1::1", "ffff::1"} {
		a := netip.MustParseAddr(s)
		if got, want := db.Lookup(a), sorted.Lookup(a); got != want {
			t.Errorf("%s: unsorted input gives %+v, sorted %+v", s, got, want)
		}
	}
}

// TestOverlapsMatchNaive compares the flattened tables against a naive
// scan over many random, heavily overlapping ranges: the answer for x must
// be the value of the last range containing x once ranges are stably sorted
// by start, wider first. The IPv6 base address makes ranges cross the
// boundary between the two 64-bit halves.
func TestOverlapsMatchNaive(t *testing.T) {
	type rng struct {
		lo, hi uint64
		cc     string
	}
	base4 := netip.MustParseAddr("11.0.250.0") // crosses a /16 boundary
	base6 := netip.MustParseAddr("2001:db8::ffff:ffff:ffff:fc00")
	add := func(base netip.Addr, n uint64) netip.Addr {
		for range n {
			base = base.Next()
		}
		return base
	}
	const space = 2000
	addrs4 := make([]netip.Addr, space+100)
	addrs6 := make([]netip.Addr, space+100)
	addrs4[0], addrs6[0] = base4, base6
	for i := 1; i < len(addrs4); i++ {
		addrs4[i], addrs6[i] = add(addrs4[i-1], 1), add(addrs6[i-1], 1)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for iter := range 50 {
		n := 1 + r.IntN(60)
		ranges := make([]rng, n)
		var csv4, csv6 strings.Builder
		for i := range ranges {
			lo := uint64(r.IntN(space))
			if r.IntN(5) == 0 && i > 0 { // reuse a start to create ties
				lo = ranges[r.IntN(i)].lo
			}
			hi := min(lo+uint64(r.IntN(1+r.IntN(space/2))), space-1)
			if r.IntN(10) == 0 && i > 0 { // duplicate a whole range
				lo, hi = ranges[i-1].lo, ranges[i-1].hi
			}
			cc := string([]byte{'A' + byte(r.IntN(3)), 'A' + byte(r.IntN(3))})
			ranges[i] = rng{lo, hi, cc}
			fmt.Fprintf(&csv4, "%s,%s,%s\n", addrs4[lo], addrs4[hi], cc)
			fmt.Fprintf(&csv6, "%s,%s,%s\n", addrs6[lo], addrs6[hi], cc)
		}
		db, err := FromRanges(nil, nil, strings.NewReader(csv4.String()), strings.NewReader(csv6.String()), "random")
		if err != nil {
			t.Fatal(err)
		}
		slices.SortStableFunc(ranges, func(a, b rng) int {
			if a.lo != b.lo {
				return int(a.lo) - int(b.lo)
			}
			return int(b.hi) - int(a.hi)
		})
		for x := range uint64(len(addrs4)) {
			want := ""
			for _, rg := range ranges {
				if rg.lo <= x && x <= rg.hi {
					want = rg.cc
				}
			}
			if _, _, got := db.Origin(addrs4[x]); got != want {
				t.Fatalf("iteration %d: %s (offset %d) = %q, want %q; ranges %v", iter, addrs4[x], x, got, want, ranges)
			}
			if _, _, got := db.Origin(addrs6[x]); got != want {
				t.Fatalf("iteration %d: %s (offset %d) = %q, want %q; ranges %v", iter, addrs6[x], x, got, want, ranges)
			}
		}
	}
}

func TestConcurrentLookups(t *testing.T) {
	db := openTestDB(t)
	addrs := []string{"1.0.0.1", "11.0.1.3", "2001:db8::1", "::ffff:8.8.8.8", "172.16.0.1", "ffff::1"}
	want := make([]Annotation, len(addrs))
	for i, s := range addrs {
		want[i] = db.Lookup(netip.MustParseAddr(s))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				k := (g + i) % len(addrs)
				if got, err := db.LookupString(addrs[k]); err != nil || got != want[k] {
					t.Errorf("concurrent LookupString(%s) = %+v, %v", addrs[k], got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestAllocs(t *testing.T) {
	db := openTestDB(t)
	v4, v6 := netip.MustParseAddr("1.0.0.1"), netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		name string
		max  float64
		f    func()
	}{
		{"Origin IPv4", 0, func() { db.Origin(v4) }},
		{"Origin IPv6", 0, func() { db.Origin(v6) }},
		{"TruncatePrefix", 0, func() { TruncatePrefix(v6) }},
		{"Lookup IPv4 (prefix string only)", 1, func() { db.Lookup(v4) }},
		{"Lookup IPv6 (prefix string only)", 1, func() { db.Lookup(v6) }},
		{"LookupString IPv4", 1, func() { db.LookupString("1.0.0.1") }},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(100, tt.f); n > tt.max {
			t.Errorf("%s: %v allocations, want at most %v", tt.name, n, tt.max)
		}
	}
}
