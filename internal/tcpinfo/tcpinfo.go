// Package tcpinfo reads the kernel's view of a TCP connection (TCP_INFO):
// round-trip times, retransmissions, byte counters and the time the
// connection was limited by the sender or the receiver. It is
// available on Linux; elsewhere Read returns ErrUnsupported.
package tcpinfo

import (
	"errors"
	"net"
	"time"
)

// ErrUnsupported is returned where TCP_INFO cannot be read.
var ErrUnsupported = errors.New("tcpinfo: not supported on this platform or connection")

// Info is the part of TCP_INFO that Neubot records.
type Info struct {
	RTT          time.Duration // smoothed RTT
	RTTVar       time.Duration // RTT variance
	TotalRetrans uint64        // segments retransmitted over the connection's life
	BytesAcked   uint64        // bytes acknowledged by the peer (sender side)
	BytesRecv    uint64        // bytes received (receiver side)
	// The rest of the ndt7 specification's subset (Linux 4.19 and later;
	// 0 where the kernel lacks a field).
	MinRTT        time.Duration // minimum RTT seen
	BusyTime      time.Duration // time the send queue was not empty
	RWndLimited   time.Duration // time stalled by the receiver's window
	SndBufLimited time.Duration // time stalled by the send buffer
	BytesSent     uint64        // bytes transmitted, retransmissions included
	BytesRetrans  uint64        // bytes retransmitted
	DeliveryRate  uint64        // the kernel's latest delivery rate estimate, bytes/s (Linux 4.9+)
	// Receiver side: data segments that arrived, in order or not,
	// retransmissions included (Linux 4.6+), and the receiver's estimate
	// of the sender's segment size.
	DataSegsIn uint64
	RcvMSS     uint32
	// RcvOOOPack counts the data packets that arrived out of order (Linux
	// 5.4+; 0 where the kernel does not report it).
	RcvOOOPack uint64
}

// SetCongestion selects the congestion control of c (TCP_CONGESTION, e.g.
// "bbr"); ErrUnsupported where it cannot be set.
func SetCongestion(c net.Conn, name string) error {
	for {
		if tc, ok := c.(*net.TCPConn); ok {
			return setCongestion(tc, name)
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return ErrUnsupported
		}
		c = u.NetConn()
	}
}

// Read returns TCP_INFO of c, which must be a *net.TCPConn (or wrap one
// through a NetConn method, as TLS connections do).
func Read(c net.Conn) (Info, error) {
	for {
		if tc, ok := c.(*net.TCPConn); ok {
			return read(tc)
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return Info{}, ErrUnsupported
		}
		c = u.NetConn()
	}
}
