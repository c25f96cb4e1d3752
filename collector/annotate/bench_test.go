package annotate

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
)

// Benchmarks run against the real database (see realDB).

func BenchmarkOpen(b *testing.B) {
	realDB(b)
	dir, _ := DefaultDir()
	var before, after runtime.MemStats
	var db *DB
	for b.Loop() {
		b.StopTimer()
		db = nil
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		var err error
		if db, err = Open(dir); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "MiB-live")
	runtime.KeepAlive(db)
}

// randomAddrs returns n addresses: uniformly random IPv4, or IPv6 in
// 2000::/4 (most of the allocated space).
func randomAddrs(n int, v6 bool) []netip.Addr {
	r := rand.New(rand.NewPCG(5, 6))
	out := make([]netip.Addr, n)
	for i := range out {
		if v6 {
			var b [16]byte
			for j := range b {
				b[j] = byte(r.Uint32())
			}
			b[0] = 0x20 | b[0]&0x0f
			out[i] = netip.AddrFrom16(b)
		} else {
			var b [4]byte
			for j := range b {
				b[j] = byte(r.Uint32())
			}
			out[i] = netip.AddrFrom4(b)
		}
	}
	return out
}

func benchLookup(b *testing.B, v6 bool, f func(db *DB, a netip.Addr)) {
	db := realDB(b)
	addrs := randomAddrs(1<<14, v6)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		f(db, addrs[i&(len(addrs)-1)])
		i++
	}
}

var sink Annotation

func BenchmarkLookupIPv4(b *testing.B) {
	benchLookup(b, false, func(db *DB, a netip.Addr) { sink = db.Lookup(a) })
}

func BenchmarkLookupIPv6(b *testing.B) {
	benchLookup(b, true, func(db *DB, a netip.Addr) { sink = db.Lookup(a) })
}

func BenchmarkOriginIPv4(b *testing.B) {
	benchLookup(b, false, func(db *DB, a netip.Addr) { sink.ASN, sink.Org, sink.Country = db.Origin(a) })
}

func BenchmarkOriginIPv6(b *testing.B) {
	benchLookup(b, true, func(db *DB, a netip.Addr) { sink.ASN, sink.Org, sink.Country = db.Origin(a) })
}

func BenchmarkLookupString(b *testing.B) {
	db := realDB(b)
	addrs := randomAddrs(1<<12, false)
	strs := make([]string, len(addrs))
	for i, a := range addrs {
		strs[i] = a.String()
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sink, _ = db.LookupString(strs[i&(len(strs)-1)])
		i++
	}
}
