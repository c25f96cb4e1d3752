package tcpinfo

import (
	"io"
	"net"
	"runtime"
	"testing"

	"github.com/neubot/neubot/internal/looptest"
)

func TestRead(t *testing.T) {
	addr := looptest.ServeOne(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	c := looptest.Dial(t, addr)
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
