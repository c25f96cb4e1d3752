package wire

import (
	"testing"

	"github.com/neubot/neubot/schemas"
)

// duelRecord builds the flows of a methodology 3 test as the client runs
// them (Plan, both directions per slot, one start_s per slot), with server
// samples at rate(kind, dir, host) Mbit/s times a factor that changes from
// slot to slot (cross traffic that comes and goes, the same for both flows
// of a slot).
func duelRecord(rate func(kind, dir string, host int) float64) *schemas.BitTorrent {
	const hosts = 3
	k := &schemas.BitTorrent{WarmupS: 0.5, Hosts: hosts, ServerView: &schemas.BitTorrentServer{}}
	for i, slot := range Plan(schemas.FlowKinds, 6, hosts) {
		cross := []float64{1, 0.3, 0.7, 0.15, 0.5}[i%5]
		for _, dir := range []string{schemas.DirDownload, schemas.DirUpload} {
			for _, side := range slot {
				payload, port := schemas.KindCell(side.Kind)
				f := schemas.BitTorrentFlow{Index: uint16(len(k.Flows)), Kind: side.Kind, Direction: dir, Payload: payload, PortRole: port,
					Host: uint8(side.Host), StartS: float64(i) * 2}
				f.ServerSamples = samplesAt(rate(side.Kind, dir, side.Host)*cross, 14, len(k.Flows))
				k.Flows = append(k.Flows, f)
			}
		}
	}
	return k
}

// TestPlan checks the duels of the default design: 30 per direction, each
// of two kinds that differ in one factor, to two different addresses, and
// every kind of the duels run in every repetition as often to each address
// (the 443 duels take turns, three of each in six repetitions).
func TestPlan(t *testing.T) {
	slots := Plan(schemas.FlowKinds, 6, 3)
	if len(slots) != 30 {
		t.Fatalf("%d duels, want 30", len(slots))
	}
	at := map[[2]string][3]int{} // a kind of a duel (and its partner): flows to each host
	for _, s := range slots {
		if s[0].Host == s[1].Host {
			t.Errorf("duel %v: both flows to one address", s)
		}
		p0, q0 := schemas.KindCell(s[0].Kind)
		p1, q1 := schemas.KindCell(s[1].Kind)
		if (p0 != p1) == (q0 != q1) {
			t.Errorf("duel %v: not one factor apart", s)
		}
		for i, side := range s {
			key := [2]string{side.Kind, s[1-i].Kind}
			c := at[key]
			c[side.Host]++
			at[key] = c
		}
	}
	for key, c := range at {
		if c[0]+c[1]+c[2] == 6 && (c[0] != c[1] || c[1] != c[2]) {
			t.Errorf("%s against %s: flows to each address %v, want equal", key[0], key[1], c)
		}
	}
	if got := Plan([]string{schemas.FlowBitTorrent, schemas.FlowNeutral}, 8, 3); len(got) != 8 {
		t.Errorf("BitTorrent on two ports: %d duels, want 8", len(got))
	}
}

// TestAnalyzeDuels decides methodology 3 records of each policy, with the
// same cross traffic slowing both flows of a duel by up to 85%.
func TestAnalyzeDuels(t *testing.T) {
	const full, slow = 16.0, 4.0
	for _, tc := range []struct {
		name    string
		rate    func(kind, dir string, host int) float64
		outcome string
		attr    string
	}{
		{"neutral", func(string, string, int) float64 { return full }, schemas.OutcomeNone, ""},
		{"port", func(kind, _ string, _ int) float64 {
			if _, p := schemas.KindCell(kind); p == schemas.PortApplication {
				return slow
			}
			return full
		}, schemas.OutcomeDifferentiation, schemas.AttributionPort},
		{"payload", func(kind, _ string, _ int) float64 {
			if p, _ := schemas.KindCell(kind); p == schemas.PayloadBitTorrent {
				return slow
			}
			return full
		}, schemas.OutcomeDifferentiation, schemas.AttributionPayload},
		{"payload on the application port", func(kind, _ string, _ int) float64 {
			if kind == schemas.FlowBitTorrent {
				return slow
			}
			return full
		}, schemas.OutcomeDifferentiation, schemas.AttributionBoth},
		{"host", func(_, _ string, host int) float64 {
			if host == 1 {
				return slow
			}
			return full
		}, schemas.OutcomeDifferentiation, schemas.AttributionHost},
	} {
		k := duelRecord(tc.rate)
		Analyze(k)
		if k.Outcome != tc.outcome || k.Attribution != tc.attr {
			t.Errorf("%s: %s %q, want %s %q", tc.name, k.Outcome, k.Attribution, tc.outcome, tc.attr)
			for _, c := range k.Comparisons {
				t.Logf("  %s %s vs %s: %d/%d slower: %s", c.Direction, c.Tested, c.Control, c.RepsSlower, c.Reps, c.Outcome)
			}
		}
	}
}
