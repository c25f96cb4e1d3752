package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/neubot/neubot/agent/plugin/plugintest"
	"github.com/neubot/neubot/agent/speedtest"
	"github.com/neubot/neubot/bench/internal/linkbench"
	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/linkem"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver"
	"github.com/neubot/neubot/testserver/service"
)

// The test binary is also the test server and the client that the
// accuracy test runs inside its network namespace.
const (
	roleEnv   = "NEUBOT_STBENCH_ROLE"
	methodEnv = "NEUBOT_STBENCH_METHOD"
	addrEnv   = "NEUBOT_STBENCH_ADDR" // the server's, inside the test's own namespace
)

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "server":
		if err := serve(); err != nil {
			fmt.Fprintln(os.Stderr, "speedtest accuracy server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "client":
		method, _ := strconv.Atoi(os.Getenv(methodEnv))
		t0 := time.Now()
		rec, err := speedtest.NewMeasurer(speedtest.Config{Method: method}).Run(context.Background(), plugintest.Env("http://"+os.Getenv(addrEnv)))
		out := struct {
			Seconds float64
			Error   string
			Record  *schemas.Record
		}{Seconds: time.Since(t0).Seconds(), Record: rec}
		if err != nil {
			out.Error = err.Error()
		}
		json.NewEncoder(os.Stdout).Encode(out)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serve runs the real test server until SIGTERM.
func serve() error {
	dir, err := os.MkdirTemp("", "neubot-stbench-spool-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	svc, err := service.New(service.Config{ID: "bench", Version: "bench", SpoolDir: dir,
		Negotiator:       testserver.NegotiatorConfig{Rate: 100, Burst: 100},
		BitTorrentListen: "127.0.0.1:0", NeutralListen: "127.0.0.1:0"})
	if err != nil {
		return err
	}
	defer svc.Close()
	srv, err := httpx.Listen(os.Getenv(addrEnv), svc.Handler(), nil)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	return srv.Shutdown(context.Background())
}

// TestAccuracy is a small part of the benchmark's matrix, so that a
// regression in the method fails CI: in the link emulator (internal/linkem:
// two network namespaces, 20 Mbit/s each way, a drop-tail queue of one BDP,
// the machine's default congestion control) at 0 and 200 ms of RTT, iperf3
// (one connection, 6 s after its ramp-up, omitSecs) and the speedtest (methodology
// 2, a separate process) on the same link. Each direction must be within
// 6 % (the benchmark's goal for its worst cell) of iperf3's goodput or of
// the link's payload capacity (96.5 % of its rate: iperf3's single flow
// stays below it now and then on a loaded machine), and the whole test
// within 8 s (10 s at 200 ms), in one of two runs (a machine loaded by the
// rest of the suite starves the emulator, which runs in user space, now
// and then; a regression of the method fails both: methodology 1 read
// 81 % less at 200 ms, methodology 2 before it counted what arrived
// rather than what was read 15 to 45 % less at 300 ms). It needs root and
// iperf3, and fails without them. NEUBOT_STBENCH_NS names its namespaces
// (default st-acc).
func TestAccuracy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create network namespaces and TUN devices; run the tests as root")
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Fatalf("iperf3 not found (scripts/setup installs it): %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		rtt    time.Duration
		maxSec float64
	}{{0, 8}, {200 * time.Millisecond, 10}} {
		const rate = 20.0
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		dir := linkem.Dir{Rate: rate, Delay: c.rtt / 2}
		name := os.Getenv("NEUBOT_STBENCH_NS")
		if name == "" {
			name = "st-acc"
		}
		link, err := linkem.Start(ctx, linkem.Config{Name: name, Up: dir, Down: dir})
		if err != nil {
			cancel()
			t.Fatalf("link emulator: %v", err)
		}
		func() {
			defer cancel()
			defer link.Close()
			stopIperf, err := linkbench.Iperf3Server(link, 5201)
			if err != nil {
				t.Fatal(err)
			}
			defer stopIperf()
			defer startServer(t, link, exe)()
			// iperf3 as in the matrix: one stream (the speedtest's below
			// 200 ms), its ramp-up omitted, 6 s.
			omit := omitSecs(float64(c.rtt.Milliseconds()))
			down, err := linkbench.Iperf3TCP(link, 5201, 6, omit, true)
			if err != nil {
				t.Fatal(err)
			}
			up, err := linkbench.Iperf3TCP(link, 5201, 6, omit, false)
			if err != nil {
				t.Fatal(err)
			}
			// The better of two runs: a machine loaded by the rest of the
			// suite starves the emulator (it runs in user space) now and
			// then; a regression of the method fails both.
			var problems []string
			for attempt := 1; attempt <= 2; attempt++ {
				problems = nil
				k, res, plausibility := runClientV2(t, link, exe)
				t.Logf("linkem %g Mbit/s, RTT %v: iperf3 down %.2f up %.2f; speedtest v2 run %d: down %.2f (%s, %d conns) up %.2f (%s, %d conns) in %.2f s; loaded RTT %.0f / %.0f ms",
					rate, c.rtt, down.Mbps, up.Mbps, attempt, k.Download.GoodputMbps, k.Download.StopReason, k.Download.Connections,
					k.Upload.GoodputMbps, k.Upload.StopReason, k.Upload.Connections, res.Seconds, k.Download.LoadedRTTMedianMS, k.Upload.LoadedRTTMedianMS)
				for _, d := range []struct {
					name        string
					ours, truth float64
				}{{"download", k.Download.GoodputMbps, down.Mbps}, {"upload", k.Upload.GoodputMbps, up.Mbps}} {
					// iperf3's single flow sometimes stays below the link on a
					// loaded machine: the link's payload capacity (1448 of
					// every 1500 bytes) is the other reference.
					capacity := payload(rate)
					if e, ec := errPct(d.ours, d.truth), errPct(d.ours, capacity); (e < -6 || e > 6) && (ec < -6 || ec > 6) {
						problems = append(problems, fmt.Sprintf("RTT %v, %s: %.2f Mbit/s vs iperf3 %.2f: %+.1f %%, vs the link's capacity %.2f: %+.1f %%: beyond 6 %% of both",
							c.rtt, d.name, d.ours, d.truth, e, capacity, ec))
					}
				}
				if plausibility != "ok" {
					// An honest record the server flags is left out of the
					// published figures.
					problems = append(problems, fmt.Sprintf("RTT %v: the server's cross-check says %q, want ok", c.rtt, plausibility))
				}
				if res.Seconds > c.maxSec {
					problems = append(problems, fmt.Sprintf("RTT %v: the test took %.2f s, more than %g", c.rtt, res.Seconds, c.maxSec))
				}
				if len(problems) == 0 {
					break
				}
			}
			for _, p := range problems {
				t.Error(p)
			}
		}()
	}
}

// TestSlowLinkConnections: at long round trips the download opens eight
// connections before it can know the rate; on a slow link (1 Mbit/s,
// 300 ms: a queue of 25 packets against eight first flights of ten) it
// must keep only those the measured bandwidth-delay product needs (one)
// and still read the link (within 6 % of its payload capacity, in one of
// two runs: methodology 2 with all eight read 7 to 9 % low at 200 and
// 300 ms in the link emulator).
func TestSlowLinkConnections(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create network namespaces and TUN devices; run the tests as root")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const rate = 1.0
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := linkem.Dir{Rate: rate, Delay: 150 * time.Millisecond}
	name := os.Getenv("NEUBOT_STBENCH_NS")
	if name == "" {
		name = "st-acc"
	}
	link, err := linkem.Start(ctx, linkem.Config{Name: name + "s", Up: dir, Down: dir})
	if err != nil {
		t.Fatalf("link emulator: %v", err)
	}
	defer link.Close()
	defer startServer(t, link, exe)()
	var problems []string
	for attempt := 1; attempt <= 2; attempt++ {
		problems = nil
		k, res, _ := runClientV2(t, link, exe)
		d := k.Download
		if d.Params == nil {
			t.Fatalf("no parameters: %+v", d)
		}
		t.Logf("linkem %g Mbit/s, RTT 300 ms: speedtest v2 run %d: download %.3f Mbit/s (%s), %d connections of %d opened, in %.2f s",
			rate, attempt, d.GoodputMbps, d.StopReason, d.Connections, d.Params.InitialConnections, res.Seconds)
		if d.Params.InitialConnections <= 1 || d.Connections != 1 {
			problems = append(problems, fmt.Sprintf("opened %d connections and kept %d; want more than one opened and one kept", d.Params.InitialConnections, d.Connections))
		}
		if e := errPct(d.GoodputMbps, payload(rate)); e < -6 || e > 6 {
			problems = append(problems, fmt.Sprintf("download %.3f Mbit/s, %+.1f %% of the link's payload capacity %.3f: beyond 6 %%", d.GoodputMbps, e, payload(rate)))
		}
		if res.Seconds > 10 {
			problems = append(problems, fmt.Sprintf("the test took %.2f s, more than 10", res.Seconds))
		}
		if len(problems) == 0 {
			break
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// clientResult is what the client role prints: the whole test's time and
// its record.
type clientResult struct {
	Seconds float64
	Error   string
	Record  json.RawMessage
}

// runClientV2 runs one speedtest v2 from namespace A of link against the
// server role in B, and returns its record's test keys, its result and the
// server's cross-check (server.plausibility).
func runClientV2(t *testing.T, link *linkem.Link, exe string) (*schemas.Speedtest, clientResult, string) {
	t.Helper()
	cl := link.Command(linkem.A, exe)
	cl.Env = append(os.Environ(), roleEnv+"=client", methodEnv+"=2", addrEnv+"="+linkem.Addr(linkem.B).String()+":19775")
	b, err := cl.Output()
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	var res clientResult
	if err := json.Unmarshal(b, &res); err != nil || res.Error != "" {
		t.Fatalf("client: %v %s", err, res.Error)
	}
	rec, err := schemas.DecodeRecord(res.Record, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return rec.TestKeys.(*schemas.Speedtest), res, rec.Server.Plausibility
}

// startServer starts the server role in namespace B of link, gives it a
// second to listen, and returns its stop.
func startServer(t *testing.T, link *linkem.Link, exe string) (stop func()) {
	t.Helper()
	srv := link.Command(linkem.B, exe)
	srv.Env = append(os.Environ(), roleEnv+"=server", addrEnv+"="+linkem.Addr(linkem.B).String()+":19775")
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	return func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }
}
