package linkem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Link is a running link between the namespaces A and B.
type Link struct {
	cfg   Config
	names [2]string // namespaces, also the devices' names
	made  [2]bool   // whether this link made the namespace (and removes it)
	lock  *os.File  // the name's lock file (claim), held while the link is up
	stale bool      // a dead link's namespaces are still there: keep the lock file
	nsfd  [2]int
	tun   [2]int
	stop  int // eventfd: written once by Close
	up    *pump
	down  *pump
	wg    sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
	closed    chan struct{}
}

var linkSeq atomic.Int64

// Start creates the namespaces and devices and starts moving packets; the
// link is usable when it returns. It stops when ctx is done or Close is
// called, and removes the namespaces then. It needs root.
func Start(ctx context.Context, cfg Config) (*Link, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("lk%d-%d", os.Getpid(), linkSeq.Add(1)%1000)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("linkem: the ip command (iproute2) is needed: %w", err)
	}
	l := &Link{cfg: cfg, nsfd: [2]int{-1, -1}, tun: [2]int{-1, -1}, stop: -1, closed: make(chan struct{})}
	l.names = [2]string{cfg.Name + "-a", cfg.Name + "-b"}
	if err := l.setUp(ctx); err != nil {
		l.tearDown()
		return nil, err
	}
	origin := clock()
	seed := cfg.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	l.up = newPump("up", l.tun[A], l.tun[B], newShaper(cfg.Up, origin, seed), l.stop, cfg.MTU, cfg.Realtime, inFlight(cfg.Up, cfg.MTU))
	l.down = newPump("down", l.tun[B], l.tun[A], newShaper(cfg.Down, origin, seed+1), l.stop, cfg.MTU, cfg.Realtime, inFlight(cfg.Down, cfg.MTU))
	if l.up.wake < 0 || l.down.wake < 0 {
		l.up.closeWake()
		l.down.closeWake()
		l.tearDown()
		return nil, errors.New("linkem: eventfd failed")
	}
	addProcs(4)
	for _, p := range []*pump{l.up, l.down} {
		l.wg.Add(2)
		go func() { defer l.wg.Done(); p.read() }()
		go func() { defer l.wg.Done(); p.write() }()
	}
	go func() {
		select {
		case <-ctx.Done():
			l.Close()
		case <-l.closed:
		}
	}()
	return l, nil
}

func (l *Link) setUp(ctx context.Context) error {
	var err error
	if l.stop, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("linkem: eventfd: %w", err)
	}
	lock, stale, err := claim(l.cfg.Name)
	if err != nil {
		return err
	}
	l.lock, l.stale = lock, stale
	if stale {
		// A link of this name died without removing its namespaces
		// (SIGKILL, a crash): they are removed, their devices with them.
		// Until they are, the lock file stays: it is what marks them
		// as that link's.
		for _, name := range l.names {
			if _, err := os.Stat("/run/netns/" + name); err == nil {
				if err := l.ip(ctx, "", "netns", "del", name); err != nil {
					return fmt.Errorf("linkem: removing the stale namespace %s: %w", name, err)
				}
			}
		}
		l.stale = false
	}
	for _, side := range []Side{A, B} {
		name := l.names[side]
		if err := l.ip(ctx, "", "netns", "add", name); err != nil {
			return err
		}
		l.made[side] = true
		if l.nsfd[side], err = unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return fmt.Errorf("linkem: namespace %s: %w", name, err)
		}
		err = l.Do(side, func() error {
			sysctls := map[string]string{
				"net.ipv6.conf.all.disable_ipv6":     "1", // no router solicitations on the link
				"net.ipv6.conf.default.disable_ipv6": "1",
			}
			for k, v := range l.cfg.Sysctls {
				sysctls[k] = v
			}
			keys := make([]string, 0, len(sysctls))
			for k := range sysctls {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				path := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
				if err := os.WriteFile(path, []byte(sysctls[k]), 0); err != nil {
					return fmt.Errorf("linkem: sysctl %s in %s: %w", k, name, err)
				}
			}
			fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
			if err != nil {
				return fmt.Errorf("linkem: /dev/net/tun: %w", err)
			}
			ifr, err := unix.NewIfreq(name)
			if err == nil {
				ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
				err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
			}
			if err != nil {
				unix.Close(fd)
				return fmt.Errorf("linkem: TUN device %s: %w", name, err)
			}
			l.tun[side] = fd
			return nil
		})
		if err != nil {
			return err
		}
		// The device's own queue (packets the kernel sent that the link
		// has not read yet) holds what the link's direction can hold,
		// at least 1000: with 1000 at 200 Mbit/s (60 ms of packets), a
		// reader that fell behind on a loaded machine let the kernel
		// drop thousands of packets the link never saw (up to 10 000 in
		// one speedtest at 300 ms), losses no configuration asked for.
		out := l.cfg.Up
		if side == B {
			out = l.cfg.Down
		}
		batch := fmt.Sprintf("link set lo up\nlink set %s mtu %d txqueuelen %d up\naddr add %s/15 dev %s\n",
			name, l.cfg.MTU, max(1000, inFlight(out, l.cfg.MTU)), Addr(side), name)
		if err := l.ip(ctx, batch, "-n", name, "-batch", "-"); err != nil {
			return err
		}
	}
	return nil
}

// ip runs the ip command, with stdin when not empty.
func (l *Link) ip(ctx context.Context, stdin string, args ...string) error {
	cmd := exec.CommandContext(ctx, "ip", args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("linkem: ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// tearDown closes the devices and removes the namespaces.
func (l *Link) tearDown() error {
	var errs []error
	for _, side := range []Side{A, B} {
		if l.tun[side] >= 0 {
			unix.Close(l.tun[side])
			l.tun[side] = -1
		}
		if l.nsfd[side] >= 0 {
			unix.Close(l.nsfd[side])
			l.nsfd[side] = -1
		}
		if l.made[side] {
			l.made[side] = false
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			errs = append(errs, l.ip(ctx, "", "netns", "del", l.names[side]))
			cancel()
		}
	}
	if l.stop >= 0 {
		unix.Close(l.stop)
		l.stop = -1
	}
	if l.lock != nil {
		// Removed only once the namespaces are gone: a file left behind
		// marks them stale for the next link of the name.
		if errors.Join(errs...) == nil && !l.stale {
			os.Remove(l.lock.Name())
		}
		l.lock.Close()
		l.lock = nil
	}
	return errors.Join(errs...)
}

// LockDir holds a lock file per link name (NAME.lock), made by the link
// that takes the name and removed by it once its namespaces are gone. The
// link holds the file's flock while it is up, so a file whose lock can be
// taken was left by a link that died (SIGKILL, a crash) before removing
// its namespaces: these are stale, and the next link of the name removes
// them. A namespace of the name without a lock file is someone else's and
// is left alone (the link fails).
const LockDir = "/run/neubot-linkem"

// claim takes the lock of name: the file, held, and whether a dead link
// left it (stale). A running link of the name is an error.
func claim(name string) (lock *os.File, stale bool, err error) {
	if err := os.MkdirAll(LockDir, 0o755); err != nil {
		return nil, false, fmt.Errorf("linkem: %w", err)
	}
	path := LockDir + "/" + name + ".lock"
	for range 100 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		left := false
		if errors.Is(err, os.ErrExist) {
			f, err = os.OpenFile(path, os.O_RDWR, 0)
			left = true
			if errors.Is(err, os.ErrNotExist) {
				continue // its link removed it meanwhile
			}
		}
		if err != nil {
			return nil, false, fmt.Errorf("linkem: lock of %s: %w", name, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, false, fmt.Errorf("linkem: a running link has the name %s", name)
			}
			return nil, false, fmt.Errorf("linkem: lock of %s: %w", name, err)
		}
		// A link closing removes its file between our open and our
		// flock: the lock is then on a file no other link will see.
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(path, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
			return f, left, nil
		}
		f.Close()
	}
	return nil, false, fmt.Errorf("linkem: lock of %s: the file keeps changing", name)
}

// Close stops the link and removes its namespaces (processes still
// running in them keep their sockets, which no longer reach anything).
func (l *Link) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
		unix.Write(l.stop, one)
		l.wg.Wait()
		l.up.closeWake()
		l.down.closeWake()
		addProcs(-4)
		l.closeErr = errors.Join(l.up.err(), l.down.err(), l.tearDown())
	})
	return l.closeErr
}

// Done is closed when the link stops.
func (l *Link) Done() <-chan struct{} { return l.closed }

// Err is the error that stopped a direction, if any.
func (l *Link) Err() error { return errors.Join(l.up.err(), l.down.err()) }

// Config is the link's configuration, defaults filled in.
func (l *Link) Config() Config { return l.cfg }

// Namespace is the name of a side's network namespace (also its TUN
// device's name).
func (l *Link) Namespace(s Side) string { return l.names[s] }

// Stats are the counters of both directions so far.
func (l *Link) Stats() (up, down DirStats) {
	up, down = l.up.stats(), l.down.stats()
	up.Overrun, down.Overrun = l.overrun(A), l.overrun(B)
	return up, down
}

// TakeLateMax returns, per direction, the most a packet was written after
// its time since the previous call (or the start), and starts anew: what
// a caller reads around one run to know whether the link kept its
// schedule through it. A write into a TUN device runs the receiving
// side's TCP in the writer's thread, so a receiver's or a sender's
// costly moment (a long SACK walk, pruning a large out-of-order queue)
// delays the link itself.
func (l *Link) TakeLateMax() (up, down time.Duration) {
	return time.Duration(l.up.lateMax.Swap(0)), time.Duration(l.down.lateMax.Swap(0))
}

// overrun is what a side's kernel dropped at its TUN device (tx_dropped in
// /proc/net/dev): packets the link's reader did not read in time.
func (l *Link) overrun(s Side) uint64 {
	var b []byte
	if l.Do(s, func() (err error) {
		b, err = os.ReadFile("/proc/thread-self/net/dev")
		return err
	}) != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		// rx: bytes packets errs drop fifo frame compressed multicast,
		// then tx: bytes packets errs drop ...
		if f := strings.Fields(rest); ok && strings.TrimSpace(name) == l.names[s] && len(f) >= 12 {
			n, _ := strconv.ParseUint(f[11], 10, 64)
			return n
		}
	}
	return 0
}

// Command is a command that runs name with args in a side's namespace
// (through `ip netns exec`).
func (l *Link) Command(s Side, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.names[s], name}, args...)...)
}

// CommandContext is Command, killed when ctx is done.
func (l *Link) CommandContext(ctx context.Context, s Side, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.names[s], name}, args...)...)
}

// Do runs f on an OS thread that is in a side's namespace: the sockets f
// opens belong to that namespace and keep working from any goroutine.
// Goroutines that f starts run in the process's own namespace.
func (l *Link) Do(s Side, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Left locked if anything fails: the thread then ends with
		// this goroutine instead of carrying the namespace elsewhere.
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("linkem: own namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(l.nsfd[s], unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("linkem: enter namespace %s: %w", l.names[s], err)
			return
		}
		err = f()
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Listen is net.Listen in a side's namespace.
func (l *Link) Listen(s Side, network, address string) (net.Listener, error) {
	return in(l, s, func() (net.Listener, error) { return net.Listen(network, address) })
}

// ListenPacket is net.ListenPacket in a side's namespace.
func (l *Link) ListenPacket(s Side, network, address string) (net.PacketConn, error) {
	return in(l, s, func() (net.PacketConn, error) { return net.ListenPacket(network, address) })
}

// DialContext dials from a side's namespace.
func (l *Link) DialContext(ctx context.Context, s Side, network, address string) (net.Conn, error) {
	return in(l, s, func() (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	})
}

// in is Do for an f that makes something (a socket): what f returns.
func in[T any](l *Link, s Side, f func() (T, error)) (T, error) {
	var v T
	err := l.Do(s, func() (err error) {
		v, err = f()
		return err
	})
	return v, err
}

var procs struct {
	sync.Mutex
	extra, base int
}

// addProcs raises GOMAXPROCS by n while links run: the pumps' threads
// block in system calls, and one coming back must not wait for a P.
func addProcs(n int) {
	procs.Lock()
	defer procs.Unlock()
	if procs.extra == 0 {
		procs.base = runtime.GOMAXPROCS(0)
	}
	procs.extra += n
	runtime.GOMAXPROCS(procs.base + procs.extra)
}
