// Package linkem is a link emulator in user space, so that the tests can
// be measured across the round-trip times, rates and losses of real paths
// on a kernel that has no netem qdisc.
//
// Start creates two network namespaces, A and B, each with a TUN device
// (A at 198.18.0.1, B at 198.18.0.2, both in 198.18.0.0/15, the range
// reserved for benchmarks), and moves every IP packet from one TUN to the
// other through a model of a bottleneck link, one per direction:
//
//	arrival -> drop-tail queue of Queue packets -> serialization at Rate
//	        -> random loss -> one-way Delay -> delivery
//
// "Up" is A to B and "down" is B to A: run clients in A and servers in B,
// and a download crosses the down direction. A packet's size is its IP
// size (the TUN carries no link-layer header), so TCP's goodput at MTU 1500
// is at most 1448/1500 = 96.5 % of Rate. The queue counts the packet being
// serialized. A lost packet has used the link (it was sent and never
// arrived). The rate may follow a trace instead, one rate per interval
// (the idea of mahimahi's trace files, in Mbit/s rather than delivery
// opportunities), looping at its end.
//
// Each direction has two threads of its own, locked to the goroutines that
// run them: a reader, that stamps and schedules every packet on arrival,
// and a writer, that sleeps (ppoll with the timer slack lowered to 1 ns:
// Go's timers wake about 1 ms late) until the next delivery and writes the
// packets that are due; a write into a TUN runs the receiver's TCP/IP
// stack in the writer's thread, so separate writers let the directions
// proceed in parallel. Delivery times are absolute, so a late wake-up
// delays packets without slowing the link down.
//
// The command `neubot-server linkem` runs a link until it is stopped;
// Start does the same inside a test or a benchmark, where Link.Command runs
// a program in a namespace and Link.Do, Listen, ListenPacket and
// DialContext open sockets there from the calling process. It needs root
// (CAP_NET_ADMIN and CAP_SYS_ADMIN) and /dev/net/tun.
package linkem

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Dir configures one direction of the link.
type Dir struct {
	// Rate is the bottleneck's rate in Mbit/s of IP packets; 0 means no
	// bottleneck (packets are only delayed and lost).
	Rate float64
	// Trace, when not empty, replaces Rate: Trace[i] Mbit/s during the
	// i-th TraceInterval, looping at the end. Zero rates are allowed (an
	// outage), but not only zeros.
	Trace []float64
	// TraceInterval is how long each Trace rate lasts (default 100 ms).
	TraceInterval time.Duration
	// Delay is the one-way propagation delay.
	Delay time.Duration
	// Loss is the probability that a packet is lost, from 0 to 1.
	Loss float64
	// Queue is the drop-tail queue's size in packets, including the one
	// being serialized; 0 means about one bandwidth-delay product of the
	// whole path (rate × (delay up + delay down) / MTU), at least
	// MinQueue packets and MinQueueTime at the rate.
	Queue int
}

// Config configures a link.
type Config struct {
	// Name prefixes the namespaces' and devices' names: NAME-a and NAME-b.
	// At most 13 characters of [A-Za-z0-9_-]; default "lk" followed by the
	// process ID and a counter.
	Name string
	// Up is A to B, Down is B to A.
	Up, Down Dir
	// MTU of the TUN devices (default 1500).
	MTU int
	// Seed seeds the loss's random numbers (0: from the clock).
	Seed uint64
	// Sysctls are written in both namespaces before the devices are made,
	// e.g. "net.ipv4.tcp_rmem": "4096 131072 33554432".
	Sysctls map[string]string
	// Realtime, from 1 to 99, runs the link's threads under SCHED_FIFO at
	// that priority, so that a loaded machine delays packets less (they
	// sleep in ppoll between packets; the receiver's TCP/IP stack also runs
	// in them). 0: ordinary scheduling. At high rates it does the
	// opposite: the kernel's deferred network work (ksoftirqd, ordinary
	// scheduling) waits behind these threads, and at 200 Mbit/s the link
	// wrote packets 148 to 491 ms late in 5 of 6 15-s iperf3 runs (3.1 to
	// 8.2 ms without; README.md). Link.TakeLateMax tells.
	Realtime int
}

// MinQueue is the smallest default queue, in packets.
const MinQueue = 16

// MinQueueTime is the smallest default queue in time at the rate: at RTT
// near 0 a queue of one BDP cannot absorb the bursts of a sender's
// segmentation offload (64 KB at once): at 200 Mbit/s iperf3 got 64 % of
// the rate through 16 packets, 90 % through 32 to 128.
const MinQueueTime = 5 * time.Millisecond

// maxQueue bounds a queue (about 150 MB of packets at MTU 1500).
const maxQueue = 100000

// DefaultTraceInterval is how long a trace's rate lasts when unsaid.
const DefaultTraceInterval = 100 * time.Millisecond

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,13}$`)

var sysctlRE = regexp.MustCompile(`^[a-z0-9_]+(\.[A-Za-z0-9_-]+)+$`)

// withDefaults checks c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Name != "" && !nameRE.MatchString(c.Name) {
		return c, fmt.Errorf("linkem: name %q: want 1 to 13 characters of letters, digits, _ and -", c.Name)
	}
	if c.Realtime < 0 || c.Realtime > 99 {
		return c, fmt.Errorf("linkem: realtime priority %d: want 0 (off) or 1 to 99", c.Realtime)
	}
	if c.MTU == 0 {
		c.MTU = 1500
	}
	if c.MTU < 576 || c.MTU > 9000 {
		return c, fmt.Errorf("linkem: MTU %d: want 576 to 9000", c.MTU)
	}
	for k, v := range c.Sysctls {
		if !sysctlRE.MatchString(k) || strings.Contains(k, "..") {
			return c, fmt.Errorf("linkem: sysctl %q is not a name like net.ipv4.tcp_rmem", k)
		}
		if strings.ContainsAny(v, "\n\x00") || len(v) > 256 {
			return c, fmt.Errorf("linkem: sysctl %s: bad value %q", k, v)
		}
	}
	rtt := c.Up.Delay + c.Down.Delay
	var err error
	if c.Up, err = c.Up.withDefaults("up", rtt, c.MTU); err != nil {
		return c, err
	}
	if c.Down, err = c.Down.withDefaults("down", rtt, c.MTU); err != nil {
		return c, err
	}
	return c, nil
}

func (d Dir) withDefaults(name string, rtt time.Duration, mtu int) (Dir, error) {
	bad := func(format string, a ...any) (Dir, error) {
		return d, fmt.Errorf("linkem: %s: "+format, append([]any{name}, a...)...)
	}
	if !(d.Rate >= 0 && d.Rate <= 100000) { // also refuses NaN
		return bad("rate %g Mbit/s: want 0 (no bottleneck) to 100000", d.Rate)
	}
	if d.Delay < 0 || d.Delay > 10*time.Second {
		return bad("delay %v: want 0 to 10s", d.Delay)
	}
	if !(d.Loss >= 0 && d.Loss <= 1) {
		return bad("loss %g: want a fraction from 0 to 1", d.Loss)
	}
	if d.Queue < 0 || d.Queue > maxQueue {
		return bad("queue %d packets: want 0 (one BDP) to %d", d.Queue, maxQueue)
	}
	peak := d.Rate
	if len(d.Trace) > 0 {
		if d.TraceInterval == 0 {
			d.TraceInterval = DefaultTraceInterval
		}
		if d.TraceInterval < time.Millisecond || d.TraceInterval > time.Hour {
			return bad("trace interval %v: want 1ms to 1h", d.TraceInterval)
		}
		peak = 0
		for i, r := range d.Trace {
			if !(r >= 0 && r <= 100000) {
				return bad("trace rate %d is %g Mbit/s: want 0 to 100000", i+1, r)
			}
			peak = math.Max(peak, r)
		}
		if peak == 0 {
			return bad("the trace has no rate above 0")
		}
		d.Trace = append([]float64(nil), d.Trace...)
	}
	if d.Queue == 0 && peak > 0 {
		perSec := peak * 1e6 / 8 / float64(mtu) // packets per second
		bdp := math.Max(perSec*rtt.Seconds(), perSec*MinQueueTime.Seconds())
		d.Queue = int(math.Min(maxQueue, math.Max(MinQueue, math.Ceil(bdp))))
	}
	return d, nil
}

// maxTraceLines bounds a trace file.
const maxTraceLines = 1000000

// ParseTrace reads a rate trace: one rate in Mbit/s per line; blank lines
// and lines starting with # are skipped.
func ParseTrace(r io.Reader) ([]float64, error) {
	var out []float64
	sc := bufio.NewScanner(io.LimitReader(r, 64<<20))
	sc.Buffer(make([]byte, 4096), 4096)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || !(v >= 0 && v <= 100000) {
			return nil, fmt.Errorf("linkem: trace line %d: %q is not a rate from 0 to 100000 Mbit/s", line, s)
		}
		if len(out) == maxTraceLines {
			return nil, fmt.Errorf("linkem: trace: more than %d rates", maxTraceLines)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("linkem: trace line %d: %w", line+1, err)
	}
	if len(out) == 0 {
		return nil, errors.New("linkem: trace: no rates")
	}
	return out, nil
}
