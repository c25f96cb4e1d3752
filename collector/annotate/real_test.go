package annotate

import (
	"math/rand/v2"
	"net/netip"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// The real database installed by scripts/setup is required: these tests
// fail, never skip, when it is missing.

var realData struct {
	once sync.Once
	db   *DB
	err  error
}

func realDB(t testing.TB) *DB {
	t.Helper()
	realData.once.Do(func() {
		dir, err := DefaultDir()
		if err != nil {
			realData.err = err
			return
		}
		realData.db, realData.err = Open(dir)
	})
	if realData.err != nil {
		t.Fatalf("the real IP database is required (run scripts/setup to install it): %v", realData.err)
	}
	return realData.db
}

// TestRealDatabase checks well-known, long-stable facts, verified against
// @ip-location-db/asn and geo-whois-asn-country 2.3.2026061719.
func TestRealDatabase(t *testing.T) {
	db := realDB(t)
	tests := []struct {
		addr    string
		asn     uint32
		org     string // substring
		country string // "" = not checked
		prefix  string
	}{
		{"1.1.1.1", 13335, "Cloudflare", "", "1.1.1.0/24"},
		{"1.0.0.1", 13335, "Cloudflare", "", "1.0.0.0/24"},
		{"8.8.8.8", 15169, "Google", "US", "8.8.8.0/24"},
		{"::ffff:8.8.4.4", 15169, "Google", "US", "8.8.4.0/24"},
		{"9.9.9.9", 19281, "Quad9", "", "9.9.9.0/24"},
		{"2001:4860:4860::8888", 15169, "Google", "US", "2001:4860:4860::/48"},
		{"2606:4700:4700::1111", 13335, "Cloudflare", "", "2606:4700:4700::/48"},
		{"193.204.0.1", 137, "GARR", "IT", "193.204.0.0/24"}, // Consortium GARR, Italian research network
		{"2001:760::1", 137, "GARR", "IT", "2001:760::/48"},
	}
	for _, tt := range tests {
		a, err := db.LookupString(tt.addr)
		if err != nil {
			t.Errorf("LookupString(%s): %v", tt.addr, err)
			continue
		}
		if a.ASN != tt.asn || !strings.Contains(a.Org, tt.org) || a.Prefix != tt.prefix ||
			(tt.country != "" && a.Country != tt.country) {
			t.Errorf("LookupString(%s) = %+v, want AS%d, org containing %q, country %q, prefix %s",
				tt.addr, a, tt.asn, tt.org, tt.country, tt.prefix)
		}
		if len(a.Country) != 2 {
			t.Errorf("LookupString(%s): country %q is not alpha-2", tt.addr, a.Country)
		}
	}
	// Special-purpose addresses are in no range but still get a prefix.
	for _, s := range []string{"10.1.2.3", "127.0.0.1", "192.168.1.1", "0.0.0.1", "255.255.255.255", "::1", "fe80::1%eth0"} {
		a, err := db.LookupString(s)
		if err != nil || a.ASN != 0 || a.Org != "" || a.Country != "" || a.Prefix == "" {
			t.Errorf("LookupString(%s) = %+v, %v; want no ASN, org or country but a prefix", s, a, err)
		}
	}
	if v := db.Version(); !regexp.MustCompile(`^@ip-location-db/asn@\S+ @ip-location-db/geo-whois-asn-country@\S+$`).MatchString(v) {
		t.Errorf("Version() = %q", v)
	}
	st := db.Stats()
	if st.ASNRanges4 < 100_000 || st.ASNRanges6 < 10_000 || st.CountryRanges4 < 100_000 ||
		st.CountryRanges6 < 10_000 || st.Countries < 200 || st.ASRecords < 10_000 {
		t.Errorf("Stats() = %+v: the database looks truncated", st)
	}
	t.Logf("%s: %+v", db.Version(), st)
}

// TestRealOpen measures a fresh Open of the real database.
func TestRealOpen(t *testing.T) {
	realDB(t) // fail early with the setup hint
	dir, _ := DefaultDir()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	db, err := Open(dir)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("Open took %v; live heap after Open grew by %.1f MiB (%.0f MiB allocated in total while loading)",
		elapsed, float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20),
		float64(after.TotalAlloc-before.TotalAlloc)/(1<<20))
	runtime.KeepAlive(db)
}

// TestRealTablesSorted checks that the real tables are sorted and disjoint
// and compares random binary searches against a linear scan.
func TestRealTablesSorted(t *testing.T) {
	db := realDB(t)
	check4 := func(name string, lo, hi []uint32) {
		for i := range lo {
			if hi[i] < lo[i] || (i > 0 && lo[i] <= hi[i-1]) {
				t.Fatalf("%s: range %d [%d, %d] not sorted and disjoint", name, i, lo[i], hi[i])
			}
		}
	}
	check6 := func(name string, lo, hi []u128) {
		for i := range lo {
			if hi[i].less(lo[i]) || (i > 0 && !hi[i-1].less(lo[i])) {
				t.Fatalf("%s: range %d not sorted and disjoint", name, i)
			}
		}
	}
	check4("asn4", db.asn4.lo, db.asn4.hi)
	check4("cc4", db.cc4.lo, db.cc4.hi)
	check6("asn6", db.asn6.lo, db.asn6.hi)
	check6("cc6", db.cc6.lo, db.cc6.hi)
	r := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		x := r.Uint32()
		_, ok := db.asn4.find(x)
		want := false
		i := r.IntN(len(db.asn4.lo)) // and a known start, end
		for _, y := range []uint32{db.asn4.lo[i], db.asn4.hi[i]} {
			if _, ok := db.asn4.find(y); !ok {
				t.Fatalf("%d: bound of range %d not found", y, i)
			}
		}
		for j := range db.asn4.lo {
			if db.asn4.lo[j] <= x && x <= db.asn4.hi[j] {
				want = true
				break
			}
			if db.asn4.lo[j] > x {
				break
			}
		}
		if ok != want {
			t.Fatalf("find(%d) = %v, linear scan says %v", x, ok, want)
		}
	}
}

func TestRealAllocs(t *testing.T) {
	db := realDB(t)
	v4 := netip.MustParseAddr("8.8.8.8")
	if n := testing.AllocsPerRun(1000, func() { db.Origin(v4) }); n != 0 {
		t.Errorf("Origin(IPv4) allocates %v times", n)
	}
	if n := testing.AllocsPerRun(1000, func() { db.Lookup(v4) }); n > 1 {
		t.Errorf("Lookup(IPv4) allocates %v times, want only the prefix string", n)
	}
}
