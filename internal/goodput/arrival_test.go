package goodput

import (
	"io"
	"net"
	"testing"

	"github.com/neubot/neubot/internal/looptest"
	"github.com/neubot/neubot/internal/tcpinfo"
)

// TestArrival counts a transfer over a real loopback connection: the count
// is never below the bytes read, never decreases, and (where TCP_INFO is
// read) is about what was sent.
func TestArrival(t *testing.T) {
	const total = 4 << 20
	addr := looptest.ServeOne(t, func(c net.Conn) { c.Write(make([]byte, total)) })
	c := looptest.Dial(t, addr)
	a := NewArrival(c)
	buf := make([]byte, 64<<10)
	var read, last uint64
	for {
		n, err := c.Read(buf)
		read += uint64(n)
		got := a.Count(read)
		if got < read || got < last {
			t.Fatalf("count %d after %d (read %d)", got, last, read)
		}
		last = got
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if read != total {
		t.Fatalf("read %d of %d", read, total)
	}
	// A packet that came out of order is counted at TCP's estimate of
	// the sender's segment size (rcv_mss), which on loopback, where
	// segments vary up to 64 KiB, may be more than it held.
	over := 0.01 * total
	if info, err := tcpinfo.Read(c); err == nil {
		over += float64((info.RcvOOOPack - a.ooo0) * uint64(info.RcvMSS))
	}
	if a.ok && (last < total || float64(last) > total+over) {
		t.Fatalf("arrived %d for %d sent (at most %.0f more)", last, total, over)
	}
}

// TestArrivalAlwaysAHole counts a stream where some hole always waits
// (long round trip, random loss: at 200 Mbit/s, 300 ms and 0.1 % each
// connection has thousands of segments in flight): bytes_received over
// data_segs_in reads low until a hole fills, and rises then. The count
// never exceeds what arrived, never falls below the bytes received in
// order, ends within 1 % of what arrived, and over a window grows by what
// arrived in it: v2.6.0 valued every segment since the start at that
// ratio's newest value, and jumped.
func TestArrivalAlwaysAHole(t *testing.T) {
	const (
		mss   = 1448
		n     = 20000 // segments sent
		every = 250   // one lost of every
		late  = 350   // segments that arrive before its retransmission
	)
	// arrival[i] is when segment i arrives, in segment times.
	arrival := make([]int, n)
	for i := range arrival {
		arrival[i] = i
		if i%every == 7 {
			arrival[i] = i + late
		}
	}
	// ooo[i]: segment i arrived while one before it was still missing.
	ooo := make([]bool, n)
	for i := range ooo {
		for j := max(i-late+1, 0); j < i; j++ {
			ooo[i] = ooo[i] || arrival[j] > arrival[i]
		}
	}
	a := &Arrival{ok: true}
	var counts, arrivals []uint64 // at each sample
	for now := 100; now <= n+late; now += 100 {
		var info tcpinfo.Info
		rcvNxt := 0 // first segment not yet arrived
		for rcvNxt < n && arrival[rcvNxt] <= now {
			rcvNxt++
		}
		arrived := 0
		for i, at := range arrival {
			if at <= now {
				arrived++
				if ooo[i] {
					info.RcvOOOPack++
				}
			}
		}
		info.DataSegsIn, info.BytesRecv, info.RcvMSS = uint64(arrived), uint64(rcvNxt*mss), mss
		got := a.count(0, &info)
		counts, arrivals = append(counts, got), append(arrivals, uint64(arrived*mss))
		if got > uint64(arrived*mss) || got < info.BytesRecv {
			t.Fatalf("at %d: count %d, arrived %d, in order %d", now, got, arrived*mss, info.BytesRecv)
		}
		if now == n+late && float64(got) < 0.99*float64(arrived*mss) {
			t.Fatalf("at the end: count %d, arrived %d", got, arrived*mss)
		}
	}
	// Over every stretch of ten samples (a window), the count grows by
	// what arrived in it (v2.6.0's count grew by up to 1.21 times that).
	worst := 0.0
	for i := 10; i < len(counts); i++ {
		worst = max(worst, float64(counts[i]-counts[i-10])/float64(arrivals[i]-arrivals[i-10]))
	}
	t.Logf("largest count over arrivals in a window: %.3f", worst)
	if worst > 1.05 {
		t.Errorf("a window counted %.3f times what arrived", worst)
	}
}
