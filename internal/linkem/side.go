package linkem

import (
	"net/netip"
	"time"
)

// Side is one end of the link.
type Side int

const (
	// A is the client's side: the up direction leaves it.
	A Side = iota
	// B is the server's side: the down direction leaves it.
	B
)

func (s Side) String() string {
	if s == A {
		return "a"
	}
	return "b"
}

// Addr is a side's address: 198.18.0.1 for A, 198.18.0.2 for B (in
// 198.18.0.0/15, reserved for benchmarks).
func Addr(s Side) netip.Addr {
	if s == A {
		return netip.AddrFrom4([4]byte{198, 18, 0, 1})
	}
	return netip.AddrFrom4([4]byte{198, 18, 0, 2})
}

// DirStats counts what one direction did with its packets.
type DirStats struct {
	Packets, Bytes uint64 // arrived
	Delivered      uint64 // written to the other side
	DeliveredBytes uint64
	Dropped        uint64 // the queue was full
	Lost           uint64 // random loss
	// Overrun: dropped by the sending side's kernel at its TUN device,
	// never read by the link (its reader fell behind the device's queue).
	Overrun           uint64
	LateMean, LateMax time.Duration // how long after its time a packet was written (LateMax: since the start or the last Link.TakeLateMax)
}

// epoch is the origin of clock.
var epoch = time.Now()

// clock is monotonic nanoseconds.
func clock() int64 { return int64(time.Since(epoch)) }
