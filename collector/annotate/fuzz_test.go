package annotate

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

var fuzzDB = sync.OnceValues(func() (*DB, error) { return Open(testDir) })

// FuzzLookupString checks that arbitrary input never panics, that errors
// come with the zero Annotation, and that every result has a masked /24 or
// /48 prefix containing the address.
func FuzzLookupString(f *testing.F) {
	for _, s := range []string{
		"", "1.0.0.1", "0.0.0.0", "255.255.255.255", "11.0.1.255", "172.16.0.1", "10.0.0.1", "::", "::ffff",
		"::ffff:8.8.8.8", "::ffff:808:808", "2001:db8::1", "2001:db8:1:0:ffff:ffff:ffff:ffff",
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe80::1%eth0", "fe80::1%", "1.2.3.4:80",
		"[::1]", "1.2.3.4/24", "01.2.3.4", "::1::", "garbage", "\x00", "\xff\xfe",
		"1:2:3:4:5:6:7:8%" + strings.Repeat("z", 60),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		db, err := fuzzDB()
		if err != nil {
			t.Fatal(err)
		}
		a, err := db.LookupString(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidAddress) || a != (Annotation{}) {
				t.Fatalf("LookupString(%q) = %+v, %v", s, a, err)
			}
			return
		}
		if len(s) > MaxAddrLen {
			t.Fatalf("LookupString accepted %d bytes", len(s))
		}
		addr := netip.MustParseAddr(s).Unmap().WithZone("")
		p, err := netip.ParsePrefix(a.Prefix)
		if err != nil {
			t.Fatalf("LookupString(%q): bad prefix %q: %v", s, a.Prefix, err)
		}
		want := PrefixBits6
		if addr.Is4() {
			want = PrefixBits4
		}
		if !p.Contains(addr) || p.Bits() != want || p != p.Masked() || p != TruncatePrefix(netip.MustParseAddr(s)) {
			t.Fatalf("LookupString(%q): prefix %s does not fit %s", s, p, addr)
		}
		if c := a.Country; c != "" && (len(c) != 2 || c != strings.ToUpper(c)) {
			t.Fatalf("LookupString(%q): country %q", s, c)
		}
		if asn, org, cc := db.Origin(addr); asn != a.ASN || org != a.Org || cc != a.Country {
			t.Fatalf("LookupString(%q) = %+v but Origin = %d, %q, %q", s, a, asn, org, cc)
		}
	})
}
