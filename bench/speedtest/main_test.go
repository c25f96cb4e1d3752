package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/speedtest"
	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver"
	"github.com/neubot/neubot/testserver/service"
)

// The test binary is also the test server and the client that the
// accuracy test runs inside its network namespace.
const (
	roleEnv    = "NEUBOT_STBENCH_ROLE"
	methodEnv  = "NEUBOT_STBENCH_METHOD"
	serverAddr = "127.0.0.1:19775" // inside the test's own namespace
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
		rec, err := speedtest.NewMeasurer(speedtest.Config{Method: method}).Run(context.Background(), plugin.Env{
			ServerURL: "http://" + serverAddr, AgentID: "00000000-0000-4000-8000-000000000001",
			Consent: schemas.Consent{Informed: true, CanCollect: true},
		})
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
	srv, err := httpx.Listen(serverAddr, svc.Handler(), nil)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	return srv.Shutdown(context.Background())
}

// TestAccuracy is a small part of the benchmark's matrix, so that a
// regression in the method fails CI: in a network namespace with lo shaped
// by tbf at 20 Mbit/s, iperf3 (-P 2, 5 s) and the speedtest (methodology
// 2) on the same link; each direction must be within 6 % of iperf3's
// goodput and the whole test within 8 s. It needs root and iperf3, and
// fails without them.
func TestAccuracy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create a network namespace and shape it (ip netns, tc); run the tests as root")
	}
	ns, err := newNetns("st-acc")
	if err != nil {
		t.Fatalf("cannot create the network namespace: %v", err)
	}
	defer ns.close()
	const rate = 20.0
	if err := ns.shape(rate); err != nil {
		t.Fatal(err)
	}
	iperfPort := 5201
	iperfSrv := ns.command("iperf3", "-s", "-J", "-p", strconv.Itoa(iperfPort))
	if err := iperfSrv.Start(); err != nil {
		t.Fatalf("iperf3 (scripts/setup installs it): %v", err)
	}
	defer func() { iperfSrv.Process.Kill(); iperfSrv.Wait() }()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	srv := ns.command(exe)
	srv.Env = append(os.Environ(), roleEnv+"=server")
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()
	time.Sleep(time.Second)
	down, err := ns.iperf3(iperfPort, 5, true)
	if err != nil {
		t.Fatal(err)
	}
	up, err := ns.iperf3(iperfPort, 5, false)
	if err != nil {
		t.Fatal(err)
	}
	cl := ns.command(exe)
	cl.Env = append(os.Environ(), roleEnv+"=client", methodEnv+"=2")
	b, err := cl.Output()
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	var res struct {
		Seconds float64
		Error   string
		Record  json.RawMessage
	}
	if err := json.Unmarshal(b, &res); err != nil || res.Error != "" {
		t.Fatalf("client: %v %s", err, res.Error)
	}
	rec, err := schemas.DecodeRecord(res.Record, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k := rec.TestKeys.(*schemas.Speedtest)
	t.Logf("tbf %g Mbit/s: iperf3 down %.2f up %.2f; speedtest v2 down %.2f (%s, %d conns) up %.2f (%s) in %.2f s",
		rate, down, up, k.Download.GoodputMbps, k.Download.StopReason, k.Download.Connections, k.Upload.GoodputMbps, k.Upload.StopReason, res.Seconds)
	for _, d := range []struct {
		name        string
		ours, truth float64
	}{{"download", k.Download.GoodputMbps, down}, {"upload", k.Upload.GoodputMbps, up}} {
		if e := errPct(d.ours, d.truth); e < -6 || e > 6 {
			t.Errorf("%s: %.2f Mbit/s vs iperf3 %.2f: %+.1f %%, beyond 6 %%", d.name, d.ours, d.truth, e)
		}
	}
	if res.Seconds > 8 {
		t.Errorf("the test took %.2f s, more than 8", res.Seconds)
	}
}
