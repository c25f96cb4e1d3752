package session

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// BadAnswer is the *ProtocolError of an answer of status 200 to op that the
// test's protocol does not allow.
func BadAnswer(test, op, msg string) error {
	return &ProtocolError{Test: test, Op: op, Status: http.StatusOK, Msg: msg}
}

// FlowHosts returns the addresses a test's raw flows go to: the hosts the
// server's start answer lists, at most max, which must be IP literals (a
// server cannot make its clients resolve or reach names), or, when it
// lists none, httpHost, the host of the server's URL.
func FlowHosts(test string, hosts []string, httpHost string, max int) ([]string, error) {
	if len(hosts) == 0 {
		return []string{httpHost}, nil
	}
	if len(hosts) > max {
		return nil, BadAnswer(test, "start", fmt.Sprintf("%d hosts, at most %d", len(hosts), max))
	}
	for _, h := range hosts {
		if ip, err := netip.ParseAddr(h); err != nil || ip.IsUnspecified() || ip.IsMulticast() {
			return nil, BadAnswer(test, "start", fmt.Sprintf("host %q is not an IP address", h))
		}
	}
	return hosts, nil
}

// DialFlow connects one raw TCP flow of a test to addr (host:port), giving
// up after stall. The connection is closed when ctx ends or limit has
// passed, whichever comes first, so that no flow outlives its test; done
// closes it and stops both watches.
func DialFlow(ctx context.Context, addr string, stall, limit time.Duration) (c net.Conn, done func(), err error) {
	d := net.Dialer{Timeout: stall}
	if c, err = d.DialContext(ctx, "tcp", addr); err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	timer := time.AfterFunc(limit, func() { c.Close() })
	return c, func() { stop(); timer.Stop(); c.Close() }, nil
}
