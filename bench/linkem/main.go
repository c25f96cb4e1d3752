// Command linkem validates the link emulator (internal/linkem) against its
// configuration with the tools a researcher would use, and prints the
// table of internal/linkem/README.md:
//
//   - ping's RTT against the configured one at 0, 20, 80, 200, 300 ms;
//   - iperf3's TCP goodput against the configured rate (10, 50, 200
//     Mbit/s) at RTT 0, 50, 200 ms with a queue of one BDP;
//   - iperf3's UDP rate against the configured one (the serializer alone);
//   - the highest rate it sustains, and its CPU at 100 Mbit/s.
//
// It needs root, iperf3 and ping (scripts/setup installs them). It exits 1
// when ping's median RTT is more than 1 ms off, UDP's rate more than 2 %
// off, or TCP's goodput under 90 % of the rate.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/neubot/neubot/bench/internal/linkbench"
	"github.com/neubot/neubot/internal/linkem"
)

// bigBuffers lets one TCP connection fill 200 Mbit/s × 300 ms.
var bigBuffers = map[string]string{
	"net.ipv4.tcp_rmem": "4096 131072 33554432",
	"net.ipv4.tcp_wmem": "4096 16384 33554432",
}

func main() {
	secs := flag.Int("secs", 10, "seconds of each iperf3 run (after 2 s omitted)")
	realtime := flag.Int("realtime", 10, "SCHED_FIFO priority of the link's threads (0: ordinary scheduling)")
	flag.IntVar(&linkbench.Priority, "chrt", 5, "SCHED_FIFO priority of iperf3 and ping (0: ordinary scheduling)")
	parts := flag.String("parts", "ping,tcp,udp,max,cpu", "parts to run")
	name := flag.String("name", "lkb", "prefix of the links' namespaces and devices (a number is appended; at most 9 characters)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench/linkem: needs root (network namespaces, TUN devices)")
		os.Exit(1)
	}
	b := &bench{secs: *secs, rt: *realtime, ok: true, name: *name}
	for _, p := range strings.Split(*parts, ",") {
		var err error
		switch strings.TrimSpace(p) {
		case "ping":
			err = b.ping()
		case "tcp":
			err = b.tcp()
		case "udp":
			err = b.udp()
		case "max":
			err = b.max()
		case "cpu":
			err = b.cpu()
		default:
			err = fmt.Errorf("unknown part %q", p)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/linkem:", err)
			os.Exit(1)
		}
	}
	if !b.ok {
		fmt.Println("\ntargets MISSED")
		os.Exit(1)
	}
	fmt.Println("\ntargets met")
}

type bench struct {
	secs, rt int
	ok       bool
	name     string // prefix of the links' names
	links    int    // links made so far
}

func (b *bench) link(rate float64, rtt time.Duration, queue int) (*linkem.Link, error) {
	d := linkem.Dir{Rate: rate, Delay: rtt / 2, Queue: queue}
	b.links++
	return linkem.Start(context.Background(), linkem.Config{Name: fmt.Sprintf("%s%d", b.name, b.links%10000), Up: d, Down: d, Realtime: b.rt, Sysctls: bigBuffers})
}

func (b *bench) header() string {
	load, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(load))
	if len(f) > 0 {
		f = f[:1]
	}
	return fmt.Sprintf("link threads' SCHED_FIFO priority %d, iperf3's and ping's %d, load average %s on %d CPUs at the start (other engineers' work)", b.rt, linkbench.Priority, strings.Join(f, ""), numCPU())
}

func (b *bench) ping() error {
	fmt.Printf("\nRTT: ping from a to b, 40 pings 50 ms apart, link at 100 Mbit/s; %s.\n\n", b.header())
	fmt.Println("| configured RTT ms | min | median | p90 | max | median − configured |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, rtt := range []int{0, 20, 80, 200, 300} {
		l, err := b.link(100, time.Duration(rtt)*time.Millisecond, 0)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		rtts, err := linkbench.Ping(ctx, l, 40, 50*time.Millisecond)
		cancel()
		l.Close()
		if err != nil {
			return err
		}
		med := linkbench.Quantile(rtts, 0.5)
		flag := ""
		if math.Abs(med-float64(rtt)) > 1 {
			flag, b.ok = " MISSED", false
		}
		fmt.Printf("| %d | %.2f | %.2f | %.2f | %.2f | %+.2f ms%s |\n", rtt, rtts[0], med,
			linkbench.Quantile(rtts, 0.9), rtts[len(rtts)-1], med-float64(rtt), flag)
	}
	return nil
}

func (b *bench) tcp() error {
	fmt.Printf("\nTCP: iperf3 -R (b sends to a), one connection, the machine's default congestion control (%s), %d s after 2 s omitted, queue of one BDP (at least %d packets and %v at the rate), tcp_rmem/wmem max 32 MB; %s. At MTU 1500 TCP's goodput is at most 96.5 %% of the IP rate.\n\n",
		linkbench.CongestionControl(), b.secs, linkem.MinQueue, linkem.MinQueueTime, b.header())
	fmt.Println("| rate Mbit/s | RTT ms | queue packets | iperf3 Mbit/s | of the rate | retransmits |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, rate := range []float64{10, 50, 200} {
		for _, rtt := range []int{0, 50, 200} {
			l, err := b.link(rate, time.Duration(rtt)*time.Millisecond, 0)
			if err != nil {
				return err
			}
			r, err := b.iperf(l, func(port int) (linkbench.TCP, error) {
				return linkbench.Iperf3TCP(l, port, b.secs, 2, true)
			})
			q := l.Config().Down.Queue
			l.Close()
			if err != nil {
				return err
			}
			frac := r.Mbps / rate * 100
			flag := ""
			if frac < 90 {
				flag, b.ok = " MISSED", false
			}
			fmt.Printf("| %g | %d | %d | %.2f | %.1f %%%s | %d |\n", rate, rtt, q, r.Mbps, frac, flag, r.Retransmits)
		}
	}
	return nil
}

func (b *bench) iperf(l *linkem.Link, run func(port int) (linkbench.TCP, error)) (linkbench.TCP, error) {
	port := 5201
	stop, err := linkbench.Iperf3Server(l, port)
	if err != nil {
		return linkbench.TCP{}, err
	}
	defer stop()
	return run(port)
}

func (b *bench) udp() error {
	fmt.Printf("\nUDP: iperf3 -u -R -l 1472 -w 4M (1500-byte IP packets) offered at 1.3 × the rate, RTT 20 ms, queue 1000 packets (so that the sender's stalls under load do not idle the link), %d s; the receiver's payload rate over its 1-s intervals (first and last left out) against rate × 1472/1500; %s.\n\n", b.secs, b.header())
	fmt.Println("| rate Mbit/s | expected payload Mbit/s | received | error | link's own count, IP Mbit/s | iperf3's loss (the excess dropped by the queue) |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, rate := range []float64{10, 50, 200} {
		l, err := b.link(rate, 20*time.Millisecond, 1000)
		if err != nil {
			return err
		}
		stop, err := linkbench.Iperf3Server(l, 5201)
		if err != nil {
			l.Close()
			return err
		}
		want := rate * 1472 / 1500
		counted := make(chan float64, 1)
		go func() { // the link's delivered bytes from 1.5 s to secs - 0.5 s
			time.Sleep(1500 * time.Millisecond)
			_, d0 := l.Stats()
			t0 := time.Now()
			time.Sleep(time.Duration(b.secs)*time.Second - 2*time.Second)
			_, d1 := l.Stats()
			counted <- float64(d1.DeliveredBytes-d0.DeliveredBytes) * 8 / time.Since(t0).Seconds() / 1e6
		}()
		r, err := linkbench.Iperf3UDP(l, 5201, b.secs, want*1.3, 1472)
		linkRate := <-counted
		stop()
		l.Close()
		if err != nil {
			return err
		}
		e := (r.Mbps - want) / want * 100
		flag := ""
		if math.Abs(e) > 2 {
			flag, b.ok = " MISSED", false
		}
		fmt.Printf("| %g | %.2f | %.2f | %+.2f %%%s | %.2f | %.1f %% |\n", rate, want, r.Mbps, e, flag, linkRate, r.LostPercent)
	}
	return nil
}

func (b *bench) max() error {
	fmt.Printf("\nHighest rate: iperf3 -R, one connection, %d s; %s.\n\n", b.secs, b.header())
	fmt.Println("| link | iperf3 Mbit/s |")
	fmt.Println("|---|---|")
	for _, c := range []struct {
		name  string
		rate  float64
		rtt   int
		queue int
	}{
		{"no bottleneck, RTT 0", 0, 0, 0},
		{"no bottleneck, RTT 20 ms", 0, 20, 0},
		{"1000 Mbit/s, RTT 0, queue 256", 1000, 0, 256},
		{"1000 Mbit/s, RTT 20 ms, queue of one BDP", 1000, 20, 0},
	} {
		l, err := b.link(c.rate, time.Duration(c.rtt)*time.Millisecond, c.queue)
		if err != nil {
			return err
		}
		r, err := b.iperf(l, func(port int) (linkbench.TCP, error) {
			return linkbench.Iperf3TCP(l, port, b.secs, 2, true)
		})
		l.Close()
		if err != nil {
			return err
		}
		fmt.Printf("| %s | %.1f |\n", c.name, r.Mbps)
	}
	return nil
}

func (b *bench) cpu() error {
	fmt.Printf("\nCPU: the emulator's threads (this process, including the receivers' TCP/IP stacks that run in its writers) during iperf3 -R at 100 Mbit/s, RTT 20 ms, %d s; %s.\n\n", b.secs, b.header())
	l, err := b.link(100, 20*time.Millisecond, 0)
	if err != nil {
		return err
	}
	defer l.Close()
	var r0, r1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	t0 := time.Now()
	r, err := b.iperf(l, func(port int) (linkbench.TCP, error) {
		return linkbench.Iperf3TCP(l, port, b.secs, 2, true)
	})
	wall := time.Since(t0).Seconds()
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	if err != nil {
		return err
	}
	user := time.Duration(r1.Utime.Nano() - r0.Utime.Nano()).Seconds()
	sys := time.Duration(r1.Stime.Nano() - r0.Stime.Nano()).Seconds()
	fmt.Println("| goodput Mbit/s | wall s | user CPU s | system CPU s | CPU per wall s |")
	fmt.Println("|---|---|---|---|---|")
	fmt.Printf("| %.1f | %.1f | %.2f | %.2f | %.1f %% |\n", r.Mbps, wall, user, sys, (user+sys)/wall*100)
	return nil
}

func numCPU() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return 0
	}
	n := 0
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, found := strings.Cut(r, "-")
		a, _ := strconv.Atoi(lo)
		if !found {
			n++
			continue
		}
		z, _ := strconv.Atoi(hi)
		n += z - a + 1
	}
	return n
}
