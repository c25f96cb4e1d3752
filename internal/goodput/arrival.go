package goodput

import (
	"net"

	"github.com/neubot/neubot/internal/tcpinfo"
)

// Arrival counts the payload that reached the receiver's TCP on one
// connection, in order or not: the counter methodology 2 samples.
//
// The bytes an application reads stop at the first hole after a loss:
// everything behind it waits in the kernel until the retransmission
// arrives, a round trip or more later, and then comes at once. At long
// round trips such a stall and its catch-up cover a large part of a
// phase of a few seconds (in the link emulator at 10 Mbit/s and 300 ms,
// 0.6 s without a byte and then twice the link's rate: the window read
// 8.2 of 9.65 Mbit/s). What crossed the bottleneck is what the link
// carried: the data segments the receiver's TCP got (TCP_INFO
// data_segs_in, in order or not, retransmissions included) times their
// size: TCP's estimate of the sender's segment size (rcv_mss; since
// v2.7.0, see count), or where there is none the bytes TCP received in
// order (bytes_received) over the segments, at its largest so far. On
// loopback or after small writes segments are smaller than rcv_mss,
// which counts too much, within the bound below. The estimate is used
// only once a segment has arrived out of order (TCP_INFO rcv_ooopack):
// until then there is no hole, and what arrived is exactly the bytes TCP
// received in order (where segment sizes vary, as on loopback, the
// estimate would count up to a fifth too much), and it never exceeds the bytes received in order plus what the
// out-of-order packets can hold. The count is never below the bytes read
// and never decreases.
// Where TCP_INFO cannot be read it is the bytes read.
type Arrival struct {
	c      net.Conn
	ok     bool
	segs0  uint64
	bytes0 uint64
	ooo0   uint64
	size   float64 // largest bytes_received / data_segs_in seen
	best   uint64
}

// NewArrival starts counting on c from now on.
func NewArrival(c net.Conn) *Arrival {
	a := &Arrival{c: c}
	if info, err := tcpinfo.Read(c); err == nil {
		a.ok, a.segs0, a.bytes0, a.ooo0 = true, info.DataSegsIn, info.BytesRecv, info.RcvOOOPack
	}
	return a
}

// Count returns the payload arrived since NewArrival, given the bytes
// the application read from c since then. It is not safe for concurrent
// use.
func (a *Arrival) Count(read uint64) uint64 {
	var info *tcpinfo.Info
	if a.ok {
		if i, err := tcpinfo.Read(a.c); err == nil {
			info = &i
		}
	}
	return a.count(read, info)
}

// count is Count given the connection's TCP_INFO (nil: not read).
func (a *Arrival) count(read uint64, info *tcpinfo.Info) uint64 {
	n := max(a.best, read)
	if info != nil && info.DataSegsIn > a.segs0 && info.BytesRecv >= a.bytes0 {
		segs, inOrder := float64(info.DataSegsIn-a.segs0), info.BytesRecv-a.bytes0
		a.size = max(a.size, float64(inOrder)/segs)
		n = max(n, inOrder)
		if info.RcvOOOPack > a.ooo0 { // a hole: data waits behind it
			// The segments' size: TCP's own estimate of the sender's
			// (rcv_mss) where it has one. The ratio reads low while a
			// hole waits and rises when it fills; at long round trips
			// and 0.1 % loss some hole always waits, and valuing every
			// segment at the ratio's newest value made the count jump
			// by the whole difference at once (v2.6.0: an upload read
			// 265 of 193 Mbit/s over its window).
			size := a.size
			if info.RcvMSS > 0 {
				size = float64(info.RcvMSS)
			}
			// Never more than the out-of-order packets could hold.
			ooo := float64(info.RcvOOOPack - a.ooo0)
			n = max(n, min(uint64(segs*size), inOrder+uint64(ooo*size)))
		}
	}
	a.best = n
	return n
}
