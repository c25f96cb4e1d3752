// Package looptest holds the raw TCP side of the tests on loopback: a
// server that takes one connection, a client connection, and a port that
// nothing listens on. Every error fails the test, and what it opens closes
// when the test ends.
package looptest

import (
	"net"
	"testing"
)

// Listen listens on a loopback port; the listener is closed when the test
// ends.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// ServeEach accepts connections from l, in the background until l is
// closed, and hands each to serve in a goroutine of its own; serve closes
// the connection.
func ServeEach(l net.Listener, serve func(net.Conn)) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
}

// ServeOne listens on a loopback port and hands the first connection it
// accepts to serve, in a goroutine; the connection is closed when serve
// returns, the listener when the test ends. It returns the address.
func ServeOne(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	l := Listen(t)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}()
	return l.Addr().String()
}

// Dial connects to addr over TCP; the connection is closed when the test
// ends.
func Dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ClosedAddr returns a loopback address at which nothing listens: a port
// the kernel gave and that was closed again at once.
func ClosedAddr(t testing.TB) *net.TCPAddr {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr)
}
