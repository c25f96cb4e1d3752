//go:build !linux

package linkem

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"time"
)

// errLinux is what every call answers where the emulator cannot run.
var errLinux = errors.New("linkem: needs Linux (network namespaces and TUN devices)")

// Link is a running link between the namespaces A and B (Linux only).
type Link struct{ cfg Config }

// Start fails: the emulator needs Linux.
func Start(ctx context.Context, cfg Config) (*Link, error) {
	if _, err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	return nil, errLinux
}

func (l *Link) Close() error                          { return errLinux }
func (l *Link) Done() <-chan struct{}                 { return nil }
func (l *Link) Err() error                            { return errLinux }
func (l *Link) Config() Config                        { return l.cfg }
func (l *Link) Namespace(s Side) string               { return "" }
func (l *Link) Stats() (up, down DirStats)            { return }
func (l *Link) TakeLateMax() (up, down time.Duration) { return }
func (l *Link) Do(s Side, f func() error) error       { return errLinux }

func (l *Link) Command(s Side, name string, args ...string) *exec.Cmd {
	return exec.Command(name, args...)
}

func (l *Link) CommandContext(ctx context.Context, s Side, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, name, args...)
}

func (l *Link) Listen(s Side, network, address string) (net.Listener, error) { return nil, errLinux }

func (l *Link) ListenPacket(s Side, network, address string) (net.PacketConn, error) {
	return nil, errLinux
}

func (l *Link) DialContext(ctx context.Context, s Side, network, address string) (net.Conn, error) {
	return nil, errLinux
}
