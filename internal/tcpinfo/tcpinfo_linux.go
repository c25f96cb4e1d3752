package tcpinfo

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

func read(c *net.TCPConn) (Info, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Info{}, err
	}
	var (
		ti   *unix.TCPInfo
		gerr error
	)
	if err := raw.Control(func(fd uintptr) {
		ti, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		return Info{}, err
	}
	if gerr != nil {
		return Info{}, gerr
	}
	return Info{
		RTT:          time.Duration(ti.Rtt) * time.Microsecond,
		RTTVar:       time.Duration(ti.Rttvar) * time.Microsecond,
		TotalRetrans: uint64(ti.Total_retrans),
		BytesAcked:   ti.Bytes_acked,
		BytesRecv:    ti.Bytes_received,
	}, nil
}
