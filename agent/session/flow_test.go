package session

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/neubot/neubot/internal/looptest"
	"github.com/neubot/neubot/schemas"
)

func TestFlowHosts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hosts []string
		want  []string
		bad   bool
	}{
		{"none: the URL's host", nil, []string{"example.org"}, false},
		{"IP literals", []string{"192.0.2.1", "2001:db8::1"}, []string{"192.0.2.1", "2001:db8::1"}, false},
		{"a name", []string{"example.net"}, nil, true},
		{"unspecified", []string{"0.0.0.0"}, nil, true},
		{"multicast", []string{"224.0.0.1"}, nil, true},
		{"too many", []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}, nil, true},
	} {
		got, err := FlowHosts("test", tc.hosts, "example.org", 2)
		if tc.bad {
			if !errors.Is(err, schemas.ErrProtocol) {
				t.Errorf("%s: err %v, want a protocol error", tc.name, err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) || got[0] != tc.want[0] {
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

// sink is a loopback server that reads a flow to its end; the bytes and
// the error (nil at EOF, a timeout if the flow stays open 5 s) arrive on
// the channel.
func sink(t *testing.T) (string, <-chan error, *[]byte) {
	errc := make(chan error, 1)
	var got []byte
	addr := looptest.ServeOne(t, func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var err error
		got, err = io.ReadAll(c)
		errc <- err
	})
	return addr, errc, &got
}

// TestDialFlowCloses: a flow is closed under its user when its context
// ends, when its limit passes, and by done.
func TestDialFlowCloses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit time.Duration
		end   func(cancel, done func())
	}{
		{"the context ends", time.Minute, func(cancel, _ func()) { cancel() }},
		{"the limit passes", 50 * time.Millisecond, func(func(), func()) {}},
		{"done", time.Minute, func(_, done func()) { done() }},
	} {
		addr, errc, got := sink(t)
		ctx, cancel := context.WithCancel(context.Background())
		c, done, err := DialFlow(ctx, addr, time.Second, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		tc.end(cancel, done)
		if err := <-errc; err != nil || string(*got) != "x" {
			t.Errorf("%s: the server read %q then %v; want the byte written, then the flow's end", tc.name, *got, err)
		}
		done()
		cancel()
	}
}

func TestDialFlowRefused(t *testing.T) {
	if _, _, err := DialFlow(context.Background(), looptest.ClosedAddr(t).String(), time.Second, time.Minute); err == nil {
		t.Fatal("dialled a closed port")
	}
}
