package annotate

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestPrefixes(t *testing.T) {
	asn4 := strings.Join([]string{
		"203.0.113.5,203.0.113.20,64500,Five To Twenty",
		"9.255.255.0,11.0.0.255,64501,Across Ten",
		"198.51.100.0,198.51.100.255,64502,Docs Old Name",
		"198.51.101.0,198.51.101.255,64502,Docs",
		"198.51.102.0,198.51.103.255,64502,Docs",
		"255.255.255.0,255.255.255.255,64503,Top",
		"223.255.255.254,224.0.0.1,64505,Edge Of Multicast",
	}, "\n")
	asn6 := "2001:db8::,2001:db8::ffff,64504,Six Only\n"
	db, err := FromRanges(strings.NewReader(asn4), strings.NewReader(asn6), nil, nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		asn  uint32
		max  int
		want string
	}{
		{64500, 0, "203.0.113.8/29 203.0.113.16/30 203.0.113.6/31 203.0.113.5/32 203.0.113.20/32"},
		{64500, 2, "203.0.113.8/29 203.0.113.16/30"},
		{64500, 100, "203.0.113.8/29 203.0.113.16/30 203.0.113.6/31 203.0.113.5/32 203.0.113.20/32"},
		{64501, 0, "9.255.255.0/24 11.0.0.0/24"}, // 10.0.0.0/8 is private
		{64502, -1, "198.51.102.0/23 198.51.100.0/24 198.51.101.0/24"},
		{64503, 0, "255.255.255.0/25 255.255.255.128/26 255.255.255.192/27 255.255.255.224/28 " +
			"255.255.255.240/29 255.255.255.248/30 255.255.255.252/31 255.255.255.254/32"},
		{64505, 0, "223.255.255.254/31"},
		{64504, 0, ""}, // IPv6 only
		{1, 0, ""},
	}
	for _, tt := range tests {
		got := db.Prefixes(tt.asn, tt.max)
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if strings.Join(s, " ") != tt.want {
			t.Errorf("Prefixes(%d, %d) = %v, want %s", tt.asn, tt.max, s, tt.want)
		}
		if tt.want == "" && got != nil {
			t.Errorf("Prefixes(%d, %d) = %#v, want nil", tt.asn, tt.max, got)
		}
	}
	orgs := map[uint32]string{64500: "Five To Twenty", 64502: "Docs", 64504: "Six Only", 1: ""}
	for asn, want := range orgs {
		if got := db.Org(asn); got != want {
			t.Errorf("Org(%d) = %q, want %q", asn, got, want)
		}
	}
}

// TestAppendRange4 checks the split of whole IPv4 space: the prefixes are
// disjoint, public, in address order, and cover every public address.
func TestAppendRange4(t *testing.T) {
	ps := appendRange4(nil, 0, 1<<32-1)
	var total uint64
	for i, p := range ps {
		if i > 0 && !ps[i-1].Addr().Less(p.Addr()) || i > 0 && ps[i-1].Overlaps(p) {
			t.Fatalf("%v then %v: not in order or overlapping", ps[i-1], p)
		}
		last := addr4(u32From(p.Addr()) | uint32(1<<(32-p.Bits())-1))
		if !Public(p.Addr()) || !Public(last) {
			t.Errorf("%v is not public", p)
		}
		total += 1 << (32 - p.Bits())
	}
	var special uint64
	for _, s := range special4 {
		special += 1 << (32 - s.Bits())
	}
	if total+special != 1<<32 {
		t.Errorf("prefixes cover %d addresses, special blocks %d: want %d in all", total, special, uint64(1)<<32)
	}
	t.Logf("whole IPv4 space: %d public prefixes", len(ps))
}

// TestRealPrefixes checks Prefixes and Org against the real database:
// AS3269 (Telecom Italia) announces many ranges.
func TestRealPrefixes(t *testing.T) {
	db := realDB(t)
	all := db.Prefixes(3269, 0)
	if len(all) < 100 {
		t.Fatalf("Prefixes(3269, 0) has %d prefixes, want many", len(all))
	}
	var size uint64
	for i, p := range all {
		if !p.Addr().Is4() || p.Addr() != p.Masked().Addr() {
			t.Fatalf("%v is not a masked IPv4 prefix", p)
		}
		if i > 0 && (all[i-1].Bits() > p.Bits() || all[i-1].Bits() == p.Bits() && !all[i-1].Addr().Less(p.Addr())) {
			t.Fatalf("%v before %v: not widest first, then by address", all[i-1], p)
		}
		first, last := u32From(p.Addr()), u32From(p.Addr())|uint32(1<<(32-p.Bits())-1)
		for _, x := range []uint32{first, first + (last-first)/2, last} {
			if asn, _, _ := db.Origin(addr4(x)); asn != 3269 {
				t.Fatalf("%v: %v maps to AS%d, not AS3269", p, addr4(x), asn)
			}
		}
		size += uint64(last-first) + 1
	}
	// Together they are exactly the ranges of AS3269.
	var want uint64
	for i, v := range db.asn4.val {
		if db.recs[v].asn == 3269 {
			want += uint64(db.asn4.hi[i]) - uint64(db.asn4.lo[i]) + 1
		}
	}
	sorted := slices.Clone(all)
	slices.SortFunc(sorted, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	for i := 1; i < len(sorted); i++ {
		if sorted[i-1].Overlaps(sorted[i]) {
			t.Fatalf("%v overlaps %v", sorted[i-1], sorted[i])
		}
	}
	if size != want {
		t.Errorf("prefixes cover %d addresses, the ranges of AS3269 %d", size, want)
	}
	top := db.Prefixes(3269, 16)
	if !slices.Equal(top, all[:16]) {
		t.Errorf("Prefixes(3269, 16) = %v, want the first 16 of all: %v", top, all[:16])
	}
	if again := db.Prefixes(3269, 0); !slices.Equal(again, all) {
		t.Error("Prefixes is not deterministic")
	}
	if org := db.Org(3269); !strings.Contains(org, "Telecom Italia") {
		t.Errorf("Org(3269) = %q", org)
	}
	if org := db.Org(15169); !strings.Contains(org, "Google") {
		t.Errorf("Org(15169) = %q", org)
	}
	if p := db.Prefixes(23456, 10); p != nil || db.Org(23456) != "" { // AS_TRANS, never an origin
		t.Errorf("AS23456: Prefixes = %v, Org = %q; want none", p, db.Org(23456))
	}
	t.Logf("AS3269 %q: %d prefixes covering %d addresses; widest %v", db.Org(3269), len(all), size, all[:4])
}
