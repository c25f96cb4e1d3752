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

		MinRTT:        time.Duration(ti.Min_rtt) * time.Microsecond,
		BusyTime:      time.Duration(ti.Busy_time) * time.Microsecond,
		RWndLimited:   time.Duration(ti.Rwnd_limited) * time.Microsecond,
		SndBufLimited: time.Duration(ti.Sndbuf_limited) * time.Microsecond,
		BytesSent:     ti.Bytes_sent,
		BytesRetrans:  ti.Bytes_retrans,
		DeliveryRate:  ti.Delivery_rate,
		DataSegsIn:    uint64(ti.Data_segs_in),
		RcvMSS:        ti.Rcv_mss,
		RcvOOOPack:    uint64(ti.Rcv_ooopack),
	}, nil
}

func setCongestion(c *net.TCPConn, name string) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, name)
	}); err != nil {
		return err
	}
	return serr
}
