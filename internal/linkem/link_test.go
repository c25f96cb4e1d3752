//go:build linux

package linkem

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// startLink starts a link for a test and closes it at the end, checking
// that its namespaces are gone.
// udpPair is a UDP socket on side to's address and one connected to it
// from side from, closed when the test ends.
func udpPair(t *testing.T, l *Link, to, from Side) (net.PacketConn, net.Conn) {
	t.Helper()
	pc, err := l.ListenPacket(to, "udp4", Addr(to).String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	c, err := l.DialContext(context.Background(), from, "udp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return pc, c
}

func startLink(t *testing.T, cfg Config) *Link {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test makes network namespaces and TUN devices: it needs root (CI runs as root)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	l, err := Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer cancel()
		if err := l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if _, err := os.Stat(LockDir + "/" + l.Config().Name + ".lock"); !os.IsNotExist(err) {
			t.Errorf("lock file of %s left after Close: %v", l.Config().Name, err)
		}
		out, _ := exec.Command("ip", "netns", "list").Output()
		for _, side := range []Side{A, B} {
			for _, line := range strings.Split(string(out), "\n") {
				if f := strings.Fields(line); len(f) > 0 && f[0] == l.Namespace(side) {
					t.Errorf("namespace %s left after Close", l.Namespace(side))
				}
			}
		}
	})
	return l
}

// udpEcho serves UDP echo in side s until the test ends.
func udpEcho(t *testing.T, l *Link, s Side) *net.UDPAddr {
	t.Helper()
	pc, err := l.ListenPacket(s, "udp4", Addr(s).String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr)
}

// TestLinkRTT: the round-trip time of small packets is the configured one
// (plus well under 1 ms of processing) across real sockets.
func TestLinkRTT(t *testing.T) {
	l := startLink(t, Config{Up: Dir{Rate: 10, Delay: 15 * time.Millisecond}, Down: Dir{Rate: 10, Delay: 25 * time.Millisecond}})
	echo := udpEcho(t, l, B)
	c, err := l.DialContext(context.Background(), A, "udp4", echo.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var rtts []time.Duration
	buf := make([]byte, 64)
	for i := 0; i < 25; i++ {
		binary.BigEndian.PutUint32(buf, uint32(i))
		t0 := time.Now()
		if _, err := c.Write(buf[:32]); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("probe %d: %v", i, err)
			}
			if n == 32 && binary.BigEndian.Uint32(buf) == uint32(i) {
				break
			}
		}
		rtts = append(rtts, time.Since(t0))
		time.Sleep(10 * time.Millisecond)
	}
	slices.Sort(rtts)
	min, med := rtts[0], rtts[len(rtts)/2]
	t.Logf("RTT min %v median %v max %v (configured 40ms)", min, med, rtts[len(rtts)-1])
	// The minimum says whether the delays are right; the median has the
	// machine's load in it (Go's own timers, other processes).
	if min < 40*time.Millisecond || min > 41*time.Millisecond {
		t.Errorf("minimum RTT %v, want 40 ms to 41 ms", min)
	}
	if med > 45*time.Millisecond {
		t.Errorf("median RTT %v, want at most 45 ms", med)
	}
}

// TestLinkLoss: random loss drops the configured fraction of packets.
func TestLinkLoss(t *testing.T) {
	l := startLink(t, Config{Up: Dir{Loss: 0.05}, Seed: 7})
	pc, c := udpPair(t, l, B, A)
	const n = 4000
	got := make(chan int)
	go func() {
		buf, k := make([]byte, 2048), 0
		for {
			pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, _, err := pc.ReadFrom(buf); err != nil {
				got <- k
				return
			}
			k++
		}
	}()
	msg := make([]byte, 100)
	for i := 0; i < n; i++ {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			time.Sleep(time.Millisecond) // leave room in the socket buffers
		}
	}
	k := <-got
	up, _ := l.Stats()
	loss := 1 - float64(k)/n
	t.Logf("received %d of %d: loss %.4f (configured 0.05); link: %+v", k, n, loss, up)
	// ±0.015 is more than 4 standard deviations at n = 4000.
	if loss < 0.035 || loss > 0.065 {
		t.Errorf("loss %.4f, want 0.05 ± 0.015", loss)
	}
	if up.Lost+up.Delivered != up.Packets || up.Lost == 0 {
		t.Errorf("counters do not add up: %+v", up)
	}
}

// TestLinkRate: UDP offered at 15 Mbit/s arrives at the configured 10
// Mbit/s (IP bytes), the excess dropped by the queue.
func TestLinkRate(t *testing.T) {
	l := startLink(t, Config{Down: Dir{Rate: 10, Queue: 30}})
	pc, c := udpPair(t, l, A, B)
	const size = 1472 // 1500 bytes of IP
	type arrival struct {
		t time.Time
		n int
	}
	got := make(chan []arrival)
	go func() {
		var as []arrival
		buf := make([]byte, 2048)
		for {
			pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				got <- as
				return
			}
			as = append(as, arrival{time.Now(), n + 28})
		}
	}()
	msg := make([]byte, size)
	start, sent := time.Now(), 0
	for time.Since(start) < 1500*time.Millisecond {
		// 15 Mbit/s of IP bytes, in bursts of whatever is due.
		due := int(time.Since(start).Seconds() * 15e6 / 8 / 1500)
		for ; sent < due; sent++ {
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Millisecond)
	}
	as := <-got
	_, down := l.Stats()
	if len(as) < 100 {
		t.Fatalf("only %d packets arrived; link: %+v", len(as), down)
	}
	// The rate between the arrivals after the first 200 ms (the queue
	// fills) and the last.
	var first int
	for first = 0; first < len(as) && as[first].t.Sub(as[0].t) < 200*time.Millisecond; first++ {
	}
	bytes := 0
	for _, a := range as[first+1:] {
		bytes += a.n
	}
	secs := as[len(as)-1].t.Sub(as[first].t).Seconds()
	mbps := float64(bytes) * 8 / secs / 1e6
	t.Logf("sent %d, received %d; rate %.3f Mbit/s over %.2f s (configured 10); link: %+v", sent, len(as), mbps, secs, down)
	if mbps < 9.8 || mbps > 10.2 {
		t.Errorf("rate %.3f Mbit/s, want 10 ± 2%%", mbps)
	}
	if down.Dropped == 0 {
		t.Errorf("no packet dropped at 1.5 times the rate: %+v", down)
	}
}

// TestLinkCommand: a program run in a namespace reaches the other side,
// and a second link runs beside the first.
func TestLinkCommand(t *testing.T) {
	l := startLink(t, Config{Up: Dir{Delay: 5 * time.Millisecond}, Down: Dir{Delay: 5 * time.Millisecond}})
	l2 := startLink(t, Config{})
	if l.Namespace(A) == l2.Namespace(A) {
		t.Fatalf("two links share namespace %s", l.Namespace(A))
	}
	ln, err := l.Listen(B, "tcp4", Addr(B).String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			fmt.Fprintf(c, "hello from %s\n", Addr(B))
			c.Close()
		}
	}()
	// ip netns exec runs a program in A; bash's /dev/tcp opens the
	// connection.
	out, err := l.Command(A, "bash", "-c", "exec 3<>/dev/tcp/"+Addr(B).String()+"/"+fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)+"; cat <&3").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "hello from 198.18.0.2" {
		t.Fatalf("command in %s: %q, %v", l.Namespace(A), out, err)
	}
}

// TestLinkNameTaken: a link whose name a running link has fails, and leaves
// the other link alone; so does one whose namespace someone else made (no
// lock file), which it leaves alone too.
func TestLinkNameTaken(t *testing.T) {
	l := startLink(t, Config{})
	l2, err := Start(context.Background(), Config{Name: l.Config().Name})
	if err == nil || !strings.Contains(err.Error(), "a running link has the name") {
		if err == nil {
			l2.Close()
		}
		t.Fatalf("second link with the same name: %v", err)
	}
	if out, err := l.Command(A, "ping", "-c", "1", "-W", "2", Addr(B).String()).CombinedOutput(); err != nil {
		t.Fatalf("the first link broke: %v: %s", err, out)
	}

	name := fmt.Sprintf("lkt%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "netns", "add", name+"-a").CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", name+"-a").Run()
	if l2, err := Start(context.Background(), Config{Name: name}); err == nil || !strings.Contains(err.Error(), "netns add") {
		if err == nil {
			l2.Close()
		}
		t.Fatalf("a link over another's namespace: %v", err)
	}
	if _, err := os.Stat("/run/netns/" + name + "-a"); err != nil {
		t.Fatalf("the other's namespace was removed: %v", err)
	}
	if _, err := os.Stat(LockDir + "/" + name + ".lock"); !os.IsNotExist(err) {
		t.Fatalf("the failed link left its lock file: %v", err)
	}
}

// holdEnv makes the test binary a process that starts a link of the name
// it holds, says "ready" and waits to be killed (TestMain).
const holdEnv = "NEUBOT_LINKEM_TEST_HOLD"

func TestMain(m *testing.M) {
	if name := os.Getenv(holdEnv); name != "" {
		if _, err := Start(context.Background(), Config{Name: name}); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		select {}
	}
	os.Exit(m.Run())
}

// TestStaleLinkRemoved: a link's process killed with SIGKILL leaves its
// namespaces and its lock file; the next link of the name removes them and
// starts.
func TestStaleLinkRemoved(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test makes network namespaces and TUN devices: it needs root (CI runs as root)")
	}
	name := fmt.Sprintf("lks%d", os.Getpid()%100000)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+name)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		lines <- line
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(time.Minute):
	}
	cmd.Process.Kill()
	cmd.Wait()
	if line != "ready\n" {
		t.Fatalf("the holding process: %q", line)
	}
	for _, p := range []string{"/run/netns/" + name + "-a", "/run/netns/" + name + "-b", LockDir + "/" + name + ".lock"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("the killed link did not leave %s: %v", p, err)
		}
	}
	l := startLink(t, Config{Name: name})
	if out, err := l.Command(A, "ping", "-c", "1", "-W", "2", Addr(B).String()).CombinedOutput(); err != nil {
		t.Fatalf("the link over the stale one: %v: %s", err, out)
	}
}
