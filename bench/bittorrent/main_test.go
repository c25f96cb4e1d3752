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
// client processes, real sockets, the two-stage topology (a policy box
// upstream of an access link shaped by htb at 20 Mbit/s), the test server
// on three addresses; one run on a neutral link,
// one with port 6881 throttled to 20% by a u32 filter, one with resets
// injected on BitTorrent connections by the DPI helper, with a shorter
// methodology (download only, the four kinds of ports 6881 and 9776, 3
// repetitions of 1 s flows, samples every 100 ms: 6 pairs per factor
// comparison). It needs root, and fails without it.
func TestDetection(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create a network namespace and shape it (ip netns, tc); run the tests as root")
	}
	ns, err := newNetns("test", modeTwoStage)
	if err != nil {
		t.Fatalf("cannot create the network namespace: %v", err)
	}
	defer ns.close()
	sh := shaping{LinkMbps: 20, Share: 0.2, QueueMs: 100}
	if err := ns.shape(sh); err != nil {
		t.Fatal(err)
	}
	srv, err := ns.startServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	cfg := bittorrent.Config{Repetitions: 3, FlowDuration: time.Second, SampleEvery: 100 * time.Millisecond, Warmup: 200 * time.Millisecond,
		Directions: []string{schemas.DirDownload}, Kinds: []string{schemas.FlowBitTorrent, schemas.FlowRandom, schemas.FlowNeutral, schemas.FlowRandomNeutral}}
	for _, tc := range []struct{ policy, outcome, attribution string }{
		{policyPort, schemas.OutcomeDifferentiation, schemas.AttributionPort},
		{policyReset, schemas.OutcomeBlocked, schemas.AttributionPayload},
		{policyNone, schemas.OutcomeNone, ""},
	} {
		r, err := ns.runPolicy(tc.policy, sh, cfg)
		if err != nil {
			t.Fatal(err)
		}
		k := r.keys
		t.Logf("%s: %s %q in %.1f s", tc.policy, k.Outcome, k.Attribution, r.Seconds)
		for _, c := range k.Comparisons {
			if c.Outcome != schemas.OutcomeNone {
				t.Logf("  %s %s vs %s: %.2f vs %.2f Mbit/s (%d/%d samples), D %.3f, p %.2g: %s", c.Direction, c.Tested, c.Control,
					c.MedianMbps, c.ControlMedian, c.Samples, c.ControlSamples, c.KSD, c.KSP, c.Outcome)
			}
		}
		for _, b := range k.Blocked {
			t.Logf("  blocked %s %s: %s in %d of %d", b.Direction, b.Kind, b.Failure, b.Failed, b.Flows)
		}
		// On the neutral link an inconclusive run is not a false alarm.
		if k.Attribution != tc.attribution || k.Outcome != tc.outcome && !(tc.policy == policyNone && k.Outcome == schemas.OutcomeInconclusive) {
			t.Errorf("%s: %s %q, want %s %q", tc.policy, k.Outcome, k.Attribution, tc.outcome, tc.attribution)
		}
	}
}
