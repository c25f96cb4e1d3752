package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/neubot/neubot/internal/cli"
	"github.com/neubot/neubot/internal/linkem"
)

// cmdLinkem runs a link emulator until SIGINT or SIGTERM.
func cmdLinkem(args []string) error {
	fs := newFlagSet("linkem", `Emulates a link between two network namespaces it creates, NAME-a (198.18.0.1)
and NAME-b (198.18.0.2): a drop-tail queue, a bottleneck rate, random loss and a
one-way delay per direction ("up" is a to b, "down" is b to a), on TUN devices in
user space. Prints "ready a NAME-a 198.18.0.1 b NAME-b 198.18.0.2" when the
namespaces can be used (e.g. ip netns exec NAME-b iperf3 -s), and removes them on
SIGINT or SIGTERM. Needs root. See internal/linkem/README.md.`)
	rate := fs.Float64("rate", 0, "bottleneck rate in Mbit/s of IP packets, both directions; 0: none")
	rateUp := fs.Float64("rate-up", -1, "rate of the up direction (a to b), Mbit/s; default --rate")
	rateDown := fs.Float64("rate-down", -1, "rate of the down direction (b to a), Mbit/s; default --rate")
	delay := fs.Float64("delay", -1, "one-way delay in ms, each direction")
	delayUp := fs.Float64("delay-up", -1, "one-way delay of the up direction, ms; default --delay")
	delayDown := fs.Float64("delay-down", -1, "one-way delay of the down direction, ms; default --delay")
	rtt := fs.Float64("rtt", -1, "round-trip time in ms, half each way (instead of --delay)")
	loss := fs.Float64("loss", 0, "fraction of packets lost at random, each direction (0.001 = 0.1 %)")
	lossUp := fs.Float64("loss-up", -1, "loss of the up direction; default --loss")
	lossDown := fs.Float64("loss-down", -1, "loss of the down direction; default --loss")
	queue := fs.Int("queue", 0, fmt.Sprintf("drop-tail queue in packets, each direction; 0: one bandwidth-delay product, at least %d packets and %v at the rate", linkem.MinQueue, linkem.MinQueueTime))
	trace := fs.String("trace", "", "rate trace file for both directions: one rate in Mbit/s per line, each for --trace-interval, looping")
	traceUp := fs.String("trace-up", "", "rate trace of the up direction; default --trace")
	traceDown := fs.String("trace-down", "", "rate trace of the down direction; default --trace")
	traceInterval := fs.Duration("trace-interval", linkem.DefaultTraceInterval, "how long each rate of a trace lasts")
	mtu := fs.Int("mtu", 1500, "MTU of the TUN devices")
	name := fs.String("name", "", "prefix of the namespaces' and devices' names (at most 13 characters); default lk<pid>-<n>")
	seed := fs.Uint64("seed", 0, "seed of the random loss; 0: from the clock")
	realtime := fs.Int("realtime", 0, "run the link's threads under SCHED_FIFO at this priority (1-99), for accuracy on a loaded machine; 0: off")
	var sysctls sysctlFlag
	fs.Var(&sysctls, "sysctl", "key=value written in both namespaces, e.g. net.ipv4.tcp_rmem='4096 131072 33554432'; repeatable")
	lf := addLogFlags(fs, "text")
	log, err := parseLogged(fs, args, lf)
	if err != nil {
		return err
	}
	or := func(v, def float64) float64 {
		if v < 0 {
			return def
		}
		return v
	}
	if *delay >= 0 && *rtt >= 0 {
		return usageErr(fs, "--delay and --rtt are two ways to say the same: give one")
	}
	oneWay := 0.0
	switch {
	case *delay >= 0:
		oneWay = *delay
	case *rtt >= 0:
		oneWay = *rtt / 2
	}
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	cfg := linkem.Config{
		Name: *name, MTU: *mtu, Seed: *seed, Sysctls: sysctls.m, Realtime: *realtime,
		Up: linkem.Dir{Rate: or(*rateUp, *rate), Delay: ms(or(*delayUp, oneWay)), Loss: or(*lossUp, *loss),
			Queue: *queue, TraceInterval: *traceInterval},
		Down: linkem.Dir{Rate: or(*rateDown, *rate), Delay: ms(or(*delayDown, oneWay)), Loss: or(*lossDown, *loss),
			Queue: *queue, TraceInterval: *traceInterval},
	}
	for _, t := range []struct {
		file string
		dir  *linkem.Dir
	}{{or2(*traceUp, *trace), &cfg.Up}, {or2(*traceDown, *trace), &cfg.Down}} {
		if t.file == "" {
			continue
		}
		f, err := os.Open(t.file)
		if err != nil {
			return fmt.Errorf("--trace: %w", err)
		}
		t.dir.Trace, err = linkem.ParseTrace(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", t.file, err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	link, err := linkem.Start(ctx, cfg)
	if err != nil {
		return err
	}
	c := link.Config()
	fmt.Printf("ready a %s %s b %s %s\n", link.Namespace(linkem.A), linkem.Addr(linkem.A), link.Namespace(linkem.B), linkem.Addr(linkem.B))
	log.Info("linkem: up", "up", describeDir(c.Up), "down", describeDir(c.Down), "mtu", c.MTU)
	<-link.Done()
	err = link.Close()
	up, down := link.Stats()
	log.Info("linkem: stopped", "up", fmt.Sprintf("%+v", up), "down", fmt.Sprintf("%+v", down))
	return err
}

func or2(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func describeDir(d linkem.Dir) string {
	rate := fmt.Sprintf("%g Mbit/s", d.Rate)
	if len(d.Trace) > 0 {
		rate = fmt.Sprintf("trace of %d rates every %v", len(d.Trace), d.TraceInterval)
	} else if d.Rate == 0 {
		rate = "no bottleneck"
	}
	return fmt.Sprintf("%s, delay %v, loss %g, queue %d packets", rate, d.Delay, d.Loss, d.Queue)
}

func usageErr(fs *flag.FlagSet, msg string) error {
	fmt.Fprintf(fs.Output(), "%s: %s\n", fs.Name(), msg)
	return cli.ErrUsage
}

// sysctlFlag collects repeated --sysctl key=value.
type sysctlFlag struct{ m map[string]string }

func (s *sysctlFlag) String() string {
	if s == nil {
		return ""
	}
	var parts []string
	for k, v := range s.m {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (s *sysctlFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not key=value", v)
	}
	if s.m == nil {
		s.m = map[string]string{}
	}
	s.m[k] = val
	return nil
}
