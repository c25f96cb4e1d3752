package main

import (
	"os"
	"testing"
	"time"

	"github.com/neubot/neubot/agent/bittorrent"
	"github.com/neubot/neubot/schemas"
)

// TestMain lets the test binary be the server and the client that the
// test runs inside its network namespace.
func TestMain(m *testing.M) {
	if role() {
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestDetection is the benchmark in brief, as a test: real server and
// client processes, real sockets, lo in a network namespace shaped by htb at
// 20 Mbit/s; 3 runs with a u32 filter throttling the BitTorrent port to 20%
// and 3 without, alternating, with a shorter methodology (2 repetitions of
// 0.8 s flows, samples every 100 ms). It needs root, and fails without it.
func TestDetection(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create a network namespace and shape it (ip netns, tc); run the tests as root")
	}
	ns, err := newNetns("test")
	if err != nil {
		t.Fatalf("cannot create the network namespace: %v", err)
	}
	defer ns.close()
	sh := shaping{LinkMbps: 20, Share: 0.2}
	if err := ns.shape(sh); err != nil {
		t.Fatal(err)
	}
	srv, err := ns.startServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	cfg := bittorrent.Config{Repetitions: 2, FlowDuration: 800 * time.Millisecond, SampleEvery: 100 * time.Millisecond, Warmup: 200 * time.Millisecond}
	got := map[bool]map[string]int{true: {}, false: {}}
	for i := 0; i < 3; i++ {
		for _, throttled := range []bool{true, false} {
			sh.Throttled = throttled
			if err := ns.shape(sh); err != nil {
				t.Fatal(err)
			}
			r, err := ns.runClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			got[throttled][r.keys.Outcome]++
			t.Logf("throttled=%v: %s in %.1f s", throttled, r.keys.Outcome, r.Seconds)
			for _, f := range r.keys.Flows {
				if f.Error != "" {
					t.Logf("  flow %d (%s %s): %d samples, error %s", f.Index, f.Kind, f.Direction, len(f.Samples), f.Error)
				}
			}
			for _, c := range r.keys.Comparisons {
				t.Logf("  %s vs %s: %.2f vs %.2f Mbit/s (%d/%d samples), D %.3f, p %.2g: %s", c.Direction, c.Control,
					c.MedianMbps, c.ControlMedian, c.Samples, c.ControlSamples, c.KSD, c.KSP, c.Outcome)
			}
		}
	}
	if n := got[true][schemas.OutcomeDifferentiation]; n != 3 {
		t.Errorf("throttled: differentiation in %d of 3 runs (%v)", n, got[true])
	}
	if fp, n := got[false][schemas.OutcomeDifferentiation], got[false][schemas.OutcomeNone]; fp > 0 || n < 2 {
		t.Errorf("not throttled: %d false alarms, none in %d of 3 runs (%v)", fp, n, got[false])
	}
}
