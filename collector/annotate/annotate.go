// Package annotate turns client IP addresses into the network metadata that
// the Neubot collector stores instead of the address itself: the origin
// autonomous system (number and organisation), the country, and the address
// truncated to a /24 (IPv4) or /48 (IPv6) prefix.
//
// The data comes from two openly licensed databases of the ip-location-db
// project, installed by scripts/setup with npm under
// .deps/ipdb/node_modules/@ip-location-db:
//
//   - @ip-location-db/asn (asn/asn-ipv4.csv, asn/asn-ipv6.csv), rows
//     "start_ip,end_ip,asn,org", CC-BY-4.0 by RouteViews, DB-IP.com and NRO;
//   - @ip-location-db/geo-whois-asn-country
//     (geo-whois-asn-country/geo-whois-asn-country-ipv4.csv and -ipv6.csv),
//     rows "start_ip,end_ip,country_code", CC0-1.0 package built from
//     NRO/RIR data (CC-BY-4.0).
//
// [Open] loads all four CSV files into memory as sorted, non-overlapping
// range tables (IPv4 bounds as uint32, IPv6 bounds as 128-bit integers,
// organisation names interned), and every lookup is a binary search (for
// IPv4, only over the ranges starting in the address's /16, found through a
// 256 KiB index). The upstream files contain a few hundred nested or overlapping rows (mostly
// GeoFeed sub-ranges inside a wider WHOIS range); they are resolved at load
// time so that, after sorting rows by start address (wider first on equal
// starts, file order otherwise), a later row wins over the earlier ones where
// they overlap. In practice a more specific range nested inside a wider one
// takes precedence over it.
//
// Addresses that are not [Public] (private, loopback, link-local, multicast,
// CGNAT shared space, ...) are never looked up: they get a prefix but no
// ASN, organisation or country.
//
// A [DB] is read-only after it has been built, so it is safe for concurrent
// use by any number of goroutines.
//
// Users of the data must give attribution: see [DB.Licence].
package annotate

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// Annotation is what the collector stores instead of the client address.
type Annotation struct {
	ASN     uint32 // 0 when unknown
	Org     string // "" when unknown
	Country string // ISO 3166-1 alpha-2 upper case, "" when unknown
	Prefix  string // the address truncated: /24 for IPv4, /48 for IPv6, e.g. "203.0.113.0/24", "2001:db8:1::/48"; "" for an invalid address
}

// Prefix lengths used by [TruncatePrefix].
const (
	PrefixBits4 = 24
	PrefixBits6 = 48
)

// MaxAddrLen is the longest string [DB.LookupString] accepts. The longest
// textual IPv6 address without a zone is 45 bytes.
const MaxAddrLen = 64

// ErrInvalidAddress is wrapped by the errors of [DB.LookupString].
var ErrInvalidAddress = errors.New("annotate: invalid IP address")

// licence is the attribution required by the data licences.
const licence = "ASN data: @ip-location-db/asn, CC-BY-4.0, by RouteViews (routeviews.org), " +
	"DB-IP.com (https://db-ip.com, IP to ASN Lite) and NRO (nro.net); " +
	"country data: @ip-location-db/geo-whois-asn-country, CC0-1.0, " +
	"derived from RIR WHOIS/ASN data by NRO (nro.net, CC-BY-4.0) and GeoFeed"

// asRecord is one distinct (ASN, organisation) pair.
type asRecord struct {
	asn uint32
	org string
}

// u128 is an IPv6 address as a 128-bit unsigned integer.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func u128From(addr netip.Addr) u128 {
	b := addr.As16()
	return u128{hi: be64(b[0:8]), lo: be64(b[8:16])}
}

func be64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

func u32From(addr netip.Addr) uint32 {
	b := addr.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// table4 holds sorted, disjoint IPv4 ranges [lo[i], hi[i]] with values
// val[i]. idx[p] is the number of ranges starting before p<<16, so the
// binary search for x only visits ranges starting in x's /16 (256 KiB of
// index turns ~19 cache-missing steps into a handful).
type table4[V any] struct {
	lo, hi []uint32
	val    []V
	idx    []uint32 // len 1<<16 + 1, or nil for an empty table
}

// index fills t.idx.
func (t *table4[V]) index() {
	if len(t.lo) == 0 {
		return
	}
	t.idx = make([]uint32, 1<<16+1)
	i := 0
	for p := range 1 << 16 {
		for i < len(t.lo) && t.lo[i]>>16 < uint32(p) {
			i++
		}
		t.idx[p] = uint32(i)
	}
	t.idx[1<<16] = uint32(len(t.lo))
}

func (t *table4[V]) find(x uint32) (v V, ok bool) {
	if len(t.idx) != 1<<16+1 {
		return v, false
	}
	// First index whose start is > x: every range starting in an earlier
	// /16 starts before x, every range starting in a later one after x.
	p := x >> 16
	i, j := int(t.idx[p]), int(t.idx[p+1])
	for i < j {
		m := int(uint(i+j) >> 1)
		if t.lo[m] <= x {
			i = m + 1
		} else {
			j = m
		}
	}
	if i--; i >= 0 && x <= t.hi[i] {
		return t.val[i], true
	}
	return v, false
}

// table6 holds sorted, disjoint IPv6 ranges [lo[i], hi[i]] with values val[i].
type table6[V any] struct {
	lo, hi []u128
	val    []V
}

func (t *table6[V]) find(x u128) (v V, ok bool) {
	i, j := 0, len(t.lo)
	for i < j {
		m := int(uint(i+j) >> 1)
		if !x.less(t.lo[m]) {
			i = m + 1
		} else {
			j = m
		}
	}
	if i--; i >= 0 && !t.hi[i].less(x) {
		return t.val[i], true
	}
	return v, false
}

// DB is an in-memory IP to ASN/organisation/country database. Build it with
// [Open] or [FromRanges]; it is read-only and safe for concurrent use.
type DB struct {
	asn4      table4[uint32] // values index recs
	asn6      table6[uint32]
	cc4       table4[uint16] // values index countries
	cc6       table6[uint16]
	recs      []asRecord
	countries []string
	version   string
}

// Stats describes the size of a [DB] after overlapping rows have been
// resolved and adjacent rows with identical values merged.
type Stats struct {
	ASNRanges4, ASNRanges6         int // ranges in the ASN tables
	CountryRanges4, CountryRanges6 int // ranges in the country tables
	ASRecords                      int // distinct (ASN, organisation) pairs
	Countries                      int // distinct country codes
}

// Stats returns the table sizes.
func (db *DB) Stats() Stats {
	return Stats{
		ASNRanges4:     len(db.asn4.lo),
		ASNRanges6:     len(db.asn6.lo),
		CountryRanges4: len(db.cc4.lo),
		CountryRanges6: len(db.cc6.lo),
		ASRecords:      len(db.recs),
		Countries:      len(db.countries),
	}
}

// Version identifies the data, e.g. "@ip-location-db/asn@2.3.2026061719
// @ip-location-db/geo-whois-asn-country@2.3.2026061719" for [Open].
func (db *DB) Version() string { return db.version }

// Licence returns the attribution that users of the data must display.
// DB-IP.com additionally asks web applications that show or use results to
// link back to https://db-ip.com.
func (db *DB) Licence() string { return licence }

// Lookup annotates addr. IPv4-mapped IPv6 addresses are treated as IPv4 and
// zones are stripped. An address in no range, or not [Public], gets ASN 0,
// Org "" and Country "" but still a Prefix; an invalid addr gets the zero
// Annotation.
//
// The range searches do not allocate; formatting Prefix costs exactly one
// small allocation (use [DB.Origin] and [TruncatePrefix] to avoid it).
func (db *DB) Lookup(addr netip.Addr) Annotation {
	if !addr.IsValid() {
		return Annotation{}
	}
	addr = addr.Unmap().WithZone("")
	var a Annotation
	a.ASN, a.Org, a.Country = db.origin(addr)
	a.Prefix = formatPrefix(addr)
	return a
}

// Origin is [DB.Lookup] without the prefix: it returns the ASN, organisation
// and country of addr (zero values when unknown or invalid) and never
// allocates.
func (db *DB) Origin(addr netip.Addr) (asn uint32, org, country string) {
	if !addr.IsValid() {
		return 0, "", ""
	}
	return db.origin(addr.Unmap().WithZone(""))
}

// origin expects an unmapped address without zone.
func (db *DB) origin(addr netip.Addr) (asn uint32, org, country string) {
	if !Public(addr) {
		return 0, "", ""
	}
	if addr.Is4() {
		return originIn(db, &db.asn4, &db.cc4, u32From(addr))
	}
	return originIn(db, &db.asn6, &db.cc6, u128From(addr))
}

// ranges is a table of address ranges with keys K: table4 or table6.
type ranges[K, V any] interface {
	find(x K) (v V, ok bool)
}

// originIn looks x up in one family's tables, asn and cc.
func originIn[K any](db *DB, asns ranges[K, uint32], cc ranges[K, uint16], x K) (asn uint32, org, country string) {
	if i, ok := asns.find(x); ok {
		asn, org = db.recs[i].asn, db.recs[i].org
	}
	if i, ok := cc.find(x); ok {
		country = db.countries[i]
	}
	return asn, org, country
}

// sharedSpace is the RFC 6598 shared address space used by carrier-grade NAT.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// Public reports whether addr is a global unicast address that is not
// private (RFC 1918, RFC 4193) or shared carrier-grade NAT space (RFC 6598).
// Lookups ignore the databases for other addresses (unspecified, loopback,
// link-local, multicast, broadcast, private, shared): they carry no
// meaningful origin, and the upstream country data does contain bogus rows
// for some of them (e.g. 192.168.0.0/16 and 172.16.0.0/12 as "AU" in
// geo-whois-asn-country 2.3.2026061719). IPv4-mapped addresses are judged
// as IPv4.
func Public(addr netip.Addr) bool {
	addr = addr.Unmap()
	return addr.IsGlobalUnicast() && !addr.IsPrivate() && !sharedSpace.Contains(addr)
}

// LookupString parses s, an IP address from untrusted input (at most
// [MaxAddrLen] bytes, no surrounding spaces, no port), and annotates it like
// [DB.Lookup]. It returns an error wrapping [ErrInvalidAddress] for anything
// else.
func (db *DB) LookupString(s string) (Annotation, error) {
	if len(s) > MaxAddrLen {
		return Annotation{}, fmt.Errorf("%w: %d bytes long, more than %d", ErrInvalidAddress, len(s), MaxAddrLen)
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return Annotation{}, fmt.Errorf("%w: %v", ErrInvalidAddress, err)
	}
	return db.Lookup(addr), nil
}

// TruncatePrefix returns the /24 (IPv4, including IPv4-mapped IPv6) or /48
// (IPv6) prefix containing addr, with the host bits zeroed and any zone
// dropped. It returns the zero, invalid Prefix for an invalid addr.
func TruncatePrefix(addr netip.Addr) netip.Prefix {
	if !addr.IsValid() {
		return netip.Prefix{}
	}
	addr = addr.Unmap().WithZone("")
	bits := PrefixBits6
	if addr.Is4() {
		bits = PrefixBits4
	}
	p, _ := addr.Prefix(bits) // cannot fail: valid address without zone
	return p
}

// formatPrefix is TruncatePrefix(addr).String() with a single allocation.
// addr must be valid, unmapped and without zone.
func formatPrefix(addr netip.Addr) string {
	var buf [64]byte
	if addr.Is4() {
		a := addr.As4()
		b := strconv.AppendUint(buf[:0], uint64(a[0]), 10)
		b = append(b, '.')
		b = strconv.AppendUint(b, uint64(a[1]), 10)
		b = append(b, '.')
		b = strconv.AppendUint(b, uint64(a[2]), 10)
		b = append(b, ".0/24"...)
		return string(b)
	}
	p, _ := addr.Prefix(PrefixBits6)
	return string(p.AppendTo(buf[:0]))
}
