// Package httpx holds small HTTP helpers shared by Neubot's servers.
package httpx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// Server is a started HTTP server.
type Server struct {
	srv    *http.Server
	addr   string
	scheme string
	done   chan error
}

// Listen binds addr and serves h in the background. The address is bound
// when it returns, so callers can print it.
func Listen(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	return ListenTLS(addr, h, log, nil)
}

// ListenTLS is Listen over TLS with cfg; a nil cfg means cleartext. It
// offers HTTP/1.1 only (no HTTP/2): WebSocket upgrades need it.
func ListenTLS(addr string, h http.Handler, log *slog.Logger, cfg *tls.Config) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	scheme := "http"
	if cfg != nil {
		cfg = cfg.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		l = tls.NewListener(l, cfg)
		scheme = "https"
	}
	return serve(l, h, log, scheme), nil
}

// Serve serves h on l in the background (cleartext), with the same
// timeouts and limits as Listen: for listeners that wrap their
// connections.
func Serve(l net.Listener, h http.Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return serve(l, h, log, "http")
}

func serve(l net.Listener, h http.Handler, log *slog.Logger, scheme string) *Server {
	s := &Server{
		scheme: scheme,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       5 * time.Minute,
			WriteTimeout:      5 * time.Minute,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			ConnContext:       WithConn,
		},
		addr: l.Addr().String(),
		done: make(chan error, 1),
	}
	go func() {
		err := s.srv.Serve(l)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s
}

// Addr is the bound address, host:port.
func (s *Server) Addr() string { return s.addr }

// URL is http://Addr, or https://Addr over TLS.
func (s *Server) URL() string { return s.scheme + "://" + s.addr }

// Done yields the server's exit error (nil after Shutdown).
func (s *Server) Done() <-chan error { return s.done }

// Shutdown stops accepting and waits for in-flight requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

type connKey struct{}

// WithConn stores the connection in the request context; it is the
// ConnContext of every server made by Listen. Handlers that need the socket
// (e.g. to read TCP_INFO) get it back with ConnFrom.
func WithConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// ConnFrom returns the connection a request arrived on, or nil.
func ConnFrom(ctx context.Context) net.Conn {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	return c
}

// ClientAddr is the address a request came from: the connection's, or,
// behind the operator's own proxy (trustProxy), the last address of the
// last X-Forwarded-For line, the one that proxy appended (what comes before
// may be the client's own invention).
func ClientAddr(r *http.Request, trustProxy bool) string {
	if trustProxy {
		if v := r.Header.Values("X-Forwarded-For"); len(v) > 0 {
			parts := strings.Split(v[len(v)-1], ",")
			return strings.TrimSpace(parts[len(parts)-1])
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// AcceptBackoff is the wait before the next Accept after one failed (a full
// file table, EMFILE, is the usual cause): prev doubled, from 5 ms up to 1 s,
// as net/http does. An accept loop that gave up instead would stop serving
// for good at the first burst of connections.
func AcceptBackoff(prev time.Duration) time.Duration {
	if prev == 0 {
		return 5 * time.Millisecond
	}
	return min(2*prev, time.Second)
}
