package tcpinfo

import (
	"io"
	"net"
	"runtime"
	"testing"
)

func TestRead(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(make([]byte, 1<<20))
	info, err := Read(c)
	if runtime.GOOS != "linux" {
		if err != ErrUnsupported {
			t.Fatalf("got %v, want ErrUnsupported", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if info.RTT <= 0 || info.BytesAcked == 0 {
		t.Fatalf("implausible TCP_INFO on loopback: %+v", info)
	}
}
