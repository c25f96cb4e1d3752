package goodput

import (
	"io"
	"net"
	"testing"

	"github.com/neubot/neubot/internal/looptest"
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
	if a.ok && (last < total || float64(last) > 1.01*total) {
		t.Fatalf("arrived %d for %d sent", last, total)
	}
}
