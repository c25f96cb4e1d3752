package wire

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

// grid builds the flows of a version 2 test as the client runs them (kinds
// rotated, kind j of repetition r to host (j + r) mod hosts), with server
// samples at rate(kind, dir, host) Mbit/s and failure(kind, dir, host) as
// the server's failure word.
func grid(hosts int, rate func(kind, dir string, host int) float64, failure func(kind, dir string, host int) string) *schemas.BitTorrent {
	k := &schemas.BitTorrent{WarmupS: 0.5, Hosts: uint8(hosts), ServerView: &schemas.BitTorrentServer{}}
	kinds := schemas.FlowKinds
	for rep := 0; rep < 4; rep++ {
		for _, dir := range []string{schemas.DirDownload, schemas.DirUpload} {
			for i := range kinds {
				j := (rep + i) % len(kinds)
				kind, host := kinds[j], (j+rep)%hosts
				payload, port := schemas.KindCell(kind)
				f := schemas.BitTorrentFlow{Index: uint16(len(k.Flows)), Kind: kind, Direction: dir, Payload: payload, PortRole: port, Host: uint8(host)}
				f.ServerError = failure(kind, dir, host)
				f.ServerSamples = samplesAt(rate(kind, dir, host), 12, len(k.Flows))
				k.Flows = append(k.Flows, f)
			}
		}
	}
	return k
}

// samplesAt returns n samples of 125 ms at about mbps Mbit/s (within 8%,
// varying with the flow's index i).
func samplesAt(mbps float64, n, i int) []schemas.ThroughputSample {
	var out []schemas.ThroughputSample
	var b uint64
	for s := 1; s <= n; s++ {
		m := mbps * (1 + 0.02*float64((s+i)%5))
		b += uint64(m * 1e6 / 8 / 8)
		out = append(out, schemas.ThroughputSample{TS: float64(s) / 8, Bytes: b, Mbps: m})
	}
	return out
}

func noFailure(string, string, int) string { return "" }

// The rates of the grids' flows, Mbit/s: throttled and not.
const slowMbps, fullMbps = 4.0, 20.0

func fullRate(string, string, int) float64 { return fullMbps }

// pick selects flows of a grid by kind and host: those a policy targets.
type pick func(kind string, host int) bool

func every(string, int) bool { return true }

func onPort(role string) pick {
	return func(kind string, _ int) bool { _, p := schemas.KindCell(kind); return p == role }
}

func withPayload(payload string) pick {
	return func(kind string, _ int) bool { p, _ := schemas.KindCell(kind); return p == payload }
}

func ofKind(k string) pick { return func(kind string, _ int) bool { return kind == k } }

func onHost(h int) pick { return func(_ string, host int) bool { return host == h } }

func not(p pick) pick { return func(kind string, host int) bool { return !p(kind, host) } }

// slowDownloads is the rate of a grid whose download flows that p picks
// run at slowMbps, every other flow at fullMbps.
func slowDownloads(p pick) func(kind, dir string, host int) float64 {
	return func(kind, dir string, host int) float64 {
		if dir == schemas.DirDownload && p(kind, host) {
			return slowMbps
		}
		return fullMbps
	}
}

// failDownloads is the server's failure word of a grid whose download
// flows that p picks fail with word.
func failDownloads(word string, p pick) func(kind, dir string, host int) string {
	return func(kind, dir string, host int) string {
		if dir == schemas.DirDownload && p(kind, host) {
			return word
		}
		return ""
	}
}

// TestAnalyzeV2 plays each policy on the grid and checks the outcome and
// its attribution, per direction, and that the record validates.
func TestAnalyzeV2(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rate    func(kind, dir string, host int) float64
		failure func(kind, dir string, host int) string
		down    string
		attr    string
	}{
		{"neutral", fullRate, noFailure, schemas.OutcomeNone, ""},
		{"port", slowDownloads(onPort(schemas.PortApplication)), noFailure, schemas.OutcomeDifferentiation, schemas.AttributionPort},
		{"everything but the web", slowDownloads(not(onPort(schemas.PortWeb))), noFailure, schemas.OutcomeDifferentiation, schemas.AttributionPort},
		{"payload", slowDownloads(withPayload(schemas.PayloadBitTorrent)), noFailure, schemas.OutcomeDifferentiation, schemas.AttributionPayload},
		{"payload on the application port", slowDownloads(ofKind(schemas.FlowBitTorrent)), noFailure, schemas.OutcomeDifferentiation, schemas.AttributionBoth},
		{"entropy (every flow alike)", func(string, string, int) float64 { return slowMbps }, noFailure, schemas.OutcomeNone, ""},
		{"host", slowDownloads(onHost(1)), noFailure, schemas.OutcomeDifferentiation, schemas.AttributionHost},
		{"reset on BitTorrent bytes", fullRate, failDownloads(schemas.FailureConnectionReset, withPayload(schemas.PayloadBitTorrent)), schemas.OutcomeBlocked, schemas.AttributionPayload},
		{"stall on the application port", fullRate, failDownloads(schemas.FailureTimeout, onPort(schemas.PortApplication)), schemas.OutcomeBlocked, schemas.AttributionPort},
		{"host refused", fullRate, failDownloads(schemas.FailureConnectionRefused, onHost(2)), schemas.OutcomeBlocked, schemas.AttributionHost},
		{"server down", fullRate, failDownloads(schemas.FailureTimeout, every), schemas.OutcomeInconclusive, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := grid(3, tc.rate, tc.failure)
			Analyze(k)
			if k.DownloadOutcome != tc.down || k.DownloadAttribution != tc.attr || k.UploadOutcome != schemas.OutcomeNone {
				t.Fatalf("download %s (%q), upload %s; comparisons %+v; blocked %+v", k.DownloadOutcome, k.DownloadAttribution, k.UploadOutcome, k.Comparisons, k.Blocked)
			}
			if k.Outcome != tc.down || k.Attribution != tc.attr {
				t.Fatalf("test %s (%q)", k.Outcome, k.Attribution)
			}
			if tc.down == schemas.OutcomeBlocked && (len(k.Blocked) == 0 || k.Blocked[0].Failure == "") {
				t.Fatalf("blocked without evidence: %+v", k.Blocked)
			}
			rec := schemastest.Speedtest(rand.New(rand.NewPCG(1, 2)), time.Now().Add(-time.Hour), "192.0.2.1", 20)
			rec.TestName, rec.TestVersion, rec.TestKeys = schemas.BitTorrentName, schemas.BitTorrentVersion, k
			if err := rec.Validate(time.Now()); err != nil {
				t.Fatalf("the record does not validate: %v", err)
			}
		})
	}
}

// TestAnalyzeV2OneRepetitionOff: a policy missed in one repetition of
// four (a burst of cross traffic on the controls, a flow the policy let
// through) is still seen: 7 of 8 pairs slower.
func TestAnalyzeV2OneRepetitionOff(t *testing.T) {
	k := grid(3, slowDownloads(onPort(schemas.PortApplication)), noFailure)
	// The first repetition's BitTorrent download flow at full speed.
	for j := range k.Flows[0].ServerSamples {
		k.Flows[0].ServerSamples[j].Mbps = fullMbps
	}
	Analyze(k)
	if k.DownloadOutcome != schemas.OutcomeDifferentiation || k.DownloadAttribution != schemas.AttributionPort {
		t.Fatalf("download %s %q: %+v", k.DownloadOutcome, k.DownloadAttribution, k.Comparisons)
	}
}

// TestAnalyzeV2CrossTraffic plays on-off cross traffic (on and off for
// 0.5 to 3 s each, at random; while on, a flow that is not throttled gets
// half the link) over 2,000 tests per policy: the neutral link must give
// at most 2% false alarms and no inconclusive majority, and the port,
// payload and host policies must be detected with the right attribution
// in at least 98% of the tests.
func TestAnalyzeV2CrossTraffic(t *testing.T) {
	const tests = 2000
	policies := map[string]pick{
		"none":    not(every),
		"port":    onPort(schemas.PortApplication),
		"payload": withPayload(schemas.PayloadBitTorrent),
		"host":    onHost(1),
	}
	want := map[string]string{"none": "", "port": schemas.AttributionPort, "payload": schemas.AttributionPayload, "host": schemas.AttributionHost}
	rng := rand.New(rand.NewPCG(7, 8))
	for name, throttled := range policies {
		right, alarms, inconclusive := 0, 0, 0
		for range tests {
			k := grid(3, func(kind, _ string, host int) float64 {
				if throttled(kind, host) {
					return slowMbps
				}
				return fullMbps
			}, noFailure)
			// The cross traffic's on and off periods over the test's
			// time line: the flows run back to back, 1.5 s each.
			var edges []float64
			on := rng.IntN(2) == 0
			for t := 0.0; t < float64(len(k.Flows))*1.5; {
				t += 0.5 + 2.5*rng.Float64()
				edges = append(edges, t)
			}
			state := func(at float64) bool {
				n := 0
				for n < len(edges) && edges[n] <= at {
					n++
				}
				return on != (n%2 == 1)
			}
			for i := range k.Flows {
				for j := range k.Flows[i].ServerSamples {
					s := &k.Flows[i].ServerSamples[j]
					if s.Mbps > slowMbps*1.5 && state(float64(i)*1.5+s.TS) {
						s.Mbps /= 2
					}
				}
			}
			Analyze(k)
			switch {
			case k.Outcome == schemas.OutcomeInconclusive:
				inconclusive++
			case name == "none" && k.Outcome != schemas.OutcomeNone:
				alarms++
				for _, c := range k.Comparisons {
					if c.Outcome == schemas.OutcomeDifferentiation {
						t.Logf("alarm: %s %s %d/%d", c.Direction, c.Tested, c.RepsSlower, c.Reps)
					}
				}
			case name != "none" && k.Outcome == schemas.OutcomeDifferentiation && k.Attribution == want[name]:
				right++
			}
		}
		t.Logf("%s: %d right, %d false alarms, %d inconclusive of %d", name, right, alarms, inconclusive, tests)
		if name == "none" && (alarms*50 > tests || inconclusive*2 > tests) || name != "none" && right*50 < tests*49 {
			t.Errorf("%s: %d right, %d false alarms, %d inconclusive of %d", name, right, alarms, inconclusive, tests)
		}
	}
}
