//go:build !linux

package tcpinfo

import "net"

func read(*net.TCPConn) (Info, error) { return Info{}, ErrUnsupported }

func setCongestion(*net.TCPConn, string) error { return ErrUnsupported }
