package speedtest_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/neubot/neubot/agent/plugin/plugintest"
	"github.com/neubot/neubot/agent/speedtest"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver/service"
	"github.com/neubot/neubot/testserver/service/servicetest"
)

var env = plugintest.Env

// quick shortens both methodologies for loopback (methodology 1 gets a
// second per phase: its upload needs a few answers of the server). Its
// window may be only 200 ms: pings every 20 ms put several in it even
// when a loaded machine delays some (at 100 ms one failed at load 16).
var quick = speedtest.Config{MinPhase: 500 * time.Millisecond, MaxPhase: time.Second, LatencySamples: 3,
	V2: speedtest.V2Config{MaxPhase: 600 * time.Millisecond, MaxPhaseLongRTT: 600 * time.Millisecond, MinWindow: 200 * time.Millisecond,
		PingEvery: 20 * time.Millisecond}}

// TestMethods: both methodologies against a real test server on loopback
// give valid merged records of their own test_version, with what each
// records per phase.
func TestMethods(t *testing.T) {
	_, url := servicetest.Start(t, service.Config{})
	for _, method := range []int{1, 2} {
		cfg := quick
		cfg.Method = method
		rec, err := speedtest.NewMeasurer(cfg).Run(context.Background(), env(url))
		if err != nil {
			t.Fatalf("method %d: %v", method, err)
		}
		if err := rec.Validate(time.Now()); err != nil {
			t.Fatalf("method %d: invalid record: %v", method, err)
		}
		k := rec.TestKeys.(*schemas.Speedtest)
		want := map[int]string{1: schemas.SpeedtestVersion1, 2: schemas.SpeedtestVersion}[method]
		if rec.TestVersion != want || k.ServerView == nil || k.Failure != "" {
			t.Fatalf("method %d: version %q (want %q), server view %v, failure %q", method, rec.TestVersion, want, k.ServerView != nil, k.Failure)
		}
		for _, p := range []*schemas.SpeedtestPhase{&k.Download, &k.Upload} {
			if p.GoodputMbps <= 0 || p.StopReason == "" || p.WindowEndS <= p.WindowStartS {
				t.Errorf("method %d: phase %+v", method, p)
			}
			if method == 2 && (p.Params == nil || len(p.LoadedRTTMS) == 0 || p.Connections < 1) {
				t.Errorf("method %d: no parameters, loaded latency or connections: %+v", method, p)
			}
		}
		if method == 2 {
			sv := k.ServerView
			if sv.Download == nil || sv.Upload == nil || len(sv.Download.Samples) == 0 || sv.Download.BytesAcked == 0 || sv.Upload.BytesReceived == 0 {
				t.Errorf("method 2: the server's TCP_INFO series are missing: %+v", sv)
			}
			if k.RTTMinMS <= 0 || len(k.RTTMS) != 3 {
				t.Errorf("method 2: rtt_min_ms %g, rtt_ms %v", k.RTTMinMS, k.RTTMS)
			}
		}
		// Negotiation, then ping, download and upload connections, each
		// timed without name resolution.
		if len(k.ConnectMS) < 2 {
			t.Errorf("method %d: connect_ms %v", method, k.ConnectMS)
		}
	}
}

// TestRefusedIsARecord: a server that refuses the connection gives a
// failure record (connection_refused, negotiate) with the error.
func TestRefusedIsARecord(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	rec, err := speedtest.NewMeasurer(quick).Run(context.Background(), env("http://"+addr))
	if err == nil || rec == nil {
		t.Fatalf("got %v, %v; want a failure record and an error", rec, err)
	}
	k := rec.TestKeys.(*schemas.Speedtest)
	if k.Failure != schemas.FailureConnectionRefused || k.FailurePhase != "negotiate" || rec.Validate(time.Now()) != nil {
		t.Fatalf("failure %q phase %q valid %v", k.Failure, k.FailurePhase, rec.Validate(time.Now()))
	}
	var ne *net.OpError
	if !errors.As(err, &ne) {
		t.Fatalf("the error lost its cause: %v", err)
	}
}
