package annotate

import (
	"cmp"
	"math/bits"
	"net/netip"
	"slices"
)

// special4 are the IPv4 blocks that are not [Public]: a prefix overlapping
// one of them is never returned by [DB.Prefixes], because lookups ignore
// the database there. CIDR blocks either nest or are disjoint, so a prefix
// that overlaps none of these holds only public addresses.
var special4 = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),          // this network, unspecified
	netip.MustParsePrefix("10.0.0.0/8"),         // private
	netip.MustParsePrefix("100.64.0.0/10"),      // shared CGNAT space
	netip.MustParsePrefix("127.0.0.0/8"),        // loopback
	netip.MustParsePrefix("169.254.0.0/16"),     // link-local
	netip.MustParsePrefix("172.16.0.0/12"),      // private
	netip.MustParsePrefix("192.168.0.0/16"),     // private
	netip.MustParsePrefix("224.0.0.0/4"),        // multicast
	netip.MustParsePrefix("255.255.255.255/32"), // limited broadcast
}

// Prefixes returns up to max IPv4 prefixes (all of them when max <= 0)
// that together cover address ranges the database maps to asn: each range
// of the ASN table is split into its CIDR prefixes, without non-[Public]
// space (a prefix that straddles it is split further), so every address of every prefix returned
// gets asn from [DB.Lookup]. The order is deterministic: widest prefixes
// first (the blocks holding most of the ASN's addresses), then by address.
// It returns nil for an ASN with no IPv4 range.
//
// It scans the whole IPv4 table (a few milliseconds): call it once per ASN,
// not per lookup.
func (db *DB) Prefixes(asn uint32, max int) []netip.Prefix {
	var out []netip.Prefix
	for i, v := range db.asn4.val {
		if db.recs[v].asn != asn {
			continue
		}
		out = appendRange4(out, db.asn4.lo[i], db.asn4.hi[i])
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := cmp.Compare(a.Bits(), b.Bits()); c != 0 {
			return c
		}
		return a.Addr().Compare(b.Addr())
	})
	if max > 0 && len(out) > max {
		out = slices.Clip(out[:max])
	}
	return out
}

// appendRange4 appends the CIDR prefixes covering the public addresses of
// [lo, hi], in address order.
func appendRange4(dst []netip.Prefix, lo, hi uint32) []netip.Prefix {
	for x, end := uint64(lo), uint64(hi); x <= end; {
		// The widest block aligned at x that does not pass hi.
		size := uint64(1) << 32
		if x != 0 {
			size = x & -x
		}
		for x+size-1 > end {
			size >>= 1
		}
		dst = appendPublic(dst, netip.PrefixFrom(addr4(uint32(x)), 32-bits.TrailingZeros64(size)))
		x += size
	}
	return dst
}

// appendPublic appends p if it overlaps no special4 block, nothing if one
// holds it, else the public parts of its two halves.
func appendPublic(dst []netip.Prefix, p netip.Prefix) []netip.Prefix {
	if !slices.ContainsFunc(special4, p.Overlaps) {
		return append(dst, p)
	}
	for _, s := range special4 {
		if s.Bits() <= p.Bits() && s.Contains(p.Addr()) {
			return dst
		}
	}
	// A special block lies strictly inside p, so p is wider than a /32.
	lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
	hi := netip.PrefixFrom(addr4(u32From(p.Addr())|1<<(31-p.Bits())), p.Bits()+1)
	return appendPublic(appendPublic(dst, lo), hi)
}

func addr4(x uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
}

// Org returns the organisation of asn: the name the ASN table gives it over
// most IPv4 addresses (the upstream data names some ASNs in more than one
// way), else its first name in the IPv6 table, else "" for an unknown ASN.
// Like [DB.Prefixes] it scans the table: call it once per ASN.
func (db *DB) Org(asn uint32) string {
	var ids []uint32 // indexes of recs for asn, in order
	for i, r := range db.recs {
		if r.asn == asn {
			ids = append(ids, uint32(i))
		}
	}
	switch len(ids) {
	case 0:
		return ""
	case 1:
		return db.recs[ids[0]].org
	}
	size := make(map[uint32]uint64, len(ids))
	for i, v := range db.asn4.val {
		if db.recs[v].asn == asn {
			size[v] += uint64(db.asn4.hi[i]) - uint64(db.asn4.lo[i]) + 1
		}
	}
	best := ids[0]
	for _, id := range ids[1:] {
		if size[id] > size[best] {
			best = id
		}
	}
	return db.recs[best].org
}
