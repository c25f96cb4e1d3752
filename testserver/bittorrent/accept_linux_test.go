package bittorrent

import (
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/neubot/neubot/testserver"
)

// TestAcceptSurvivesEMFILE: with the file table full, accept fails with
// EMFILE; the loop backs off and serves the connection once a descriptor is
// free again, instead of ending for good.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	p := NewProvider(Provider{Env: testserver.Env{Negotiator: testserver.NewNegotiator(testserver.NegotiatorConfig{})}})
	if err := p.Listen("127.0.0.1:0", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	bt, _ := p.Ports()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// The limit bounds descriptor numbers, and a new descriptor takes the
	// lowest free one: leave room for the client's socket only, so that
	// the server's accept finds no free descriptor. The runtime may take a
	// descriptor between the measure and the dial (seen once under load):
	// then measure again.
	restore := func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) }
	var c net.Conn
	for attempt := 1; ; attempt++ {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		lowest := f.Fd()
		f.Close()
		tight := lim
		tight.Cur = uint64(lowest) + 1
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &tight); err != nil {
			t.Fatal(err)
		}
		c, err = net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(bt))
		if err == nil {
			break
		}
		restore()
		if attempt == 5 {
			t.Fatalf("dial with one descriptor left, %d attempts: %v", attempt, err)
		}
	}
	defer c.Close()
	time.Sleep(300 * time.Millisecond) // accept fails, several times
	restore()
	// A bad handshake: the server, once it accepted, refuses and closes.
	if _, err := c.Write(make([]byte, 68)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the connection was never served: the accept loop ended on EMFILE")
	}
	if err == nil {
		t.Fatal("the server answered a bad handshake")
	}
}
