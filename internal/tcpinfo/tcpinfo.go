// Package tcpinfo reads the kernel's view of a TCP connection (TCP_INFO):
// smoothed round-trip time, its variance and retransmissions. It is
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
