// Package rawtcp serves the raw TCP listeners of the differential tests
// (BitTorrent, replay), written once: an accept loop that survives a full
// file table or an aborted connection (it waits, with backoff, and goes
// on), each connection handled in its own goroutine and closed after, and
// a Close that stops the listeners and ends the flows in progress.
package rawtcp

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/schemas"
)

// Server is the listeners and connections of one test's provider; the
// zero value is ready, with Name and Logger set before the first Serve.
type Server struct {
	Name   string // the test, for the log
	Logger *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]bool
	conns     map[net.Conn]bool
	closed    bool
	wg        sync.WaitGroup
}

// Serve serves l in the background until Close: every connection goes to
// handle in its own goroutine and is closed when handle returns; handle's
// error (a flow refused or failed) is logged at debug level as a word of
// the failure vocabulary.
func (s *Server) Serve(l net.Listener, handle func(net.Conn) error) {
	if !s.track(func() { s.listeners[l] = true }) {
		l.Close()
		return
	}
	go s.accept(l, handle)
}

// track registers a listener or a connection (add) and its goroutine, so
// that Close ends and waits for it; false, registering nothing, once the
// server is closed.
func (s *Server) track(add func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.listeners == nil {
		s.listeners, s.conns = map[net.Listener]bool{}, map[net.Conn]bool{}
	}
	add()
	s.wg.Add(1)
	return true
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) accept(l net.Listener, handle func(net.Conn) error) {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Anything else (EMFILE when the file table is full, an
			// aborted connection) passes: wait a little and go on.
			backoff = httpx.AcceptBackoff(backoff)
			s.logger().Warn(s.Name+": accept failed; retrying", "err", err, "retry_in", backoff)
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if !s.track(func() { s.conns[c] = true }) {
			c.Close()
			return
		}
		go func() {
			defer s.wg.Done()
			if err := handle(c); err != nil {
				s.logger().Debug(s.Name+": flow refused or failed", "err", schemas.FailureOf(err))
			}
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops the listeners, ends the flows in progress and waits for
// their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}
