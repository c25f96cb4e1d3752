package trace

import (
	"math"

	"github.com/neubot/neubot/internal/stats"
	"github.com/neubot/neubot/proto/bittorrent/wire"
	"github.com/neubot/neubot/schemas"
)

// Unseen is the server_error of a flow the server never admitted.
const Unseen = "unseen"

func failure(k *schemas.Replay, f *schemas.ReplayFlow) string {
	w := f.Error
	if k.ServerView != nil && f.ServerError != Unseen {
		w = f.ServerError
	}
	if w == schemas.FailureCanceled {
		return ""
	}
	return w
}

// Analyze decides a replay test as the BitTorrent test decides one pair
// (spec/replay.md): blocked when the original flows failed in most
// repetitions while the inverted ones did not, with their most common
// failure; otherwise the two-sample KS test, the 25% threshold and the
// consistency rule on the samples after the warm-up (the server's once it
// merged the record, the client's before).
func Analyze(k *schemas.Replay) {
	k.BlockedFailure = ""
	var orig, inv [][]float64
	failed := map[string]int{}
	n := map[string]int{}
	words := map[string]int{}
	for i := range k.Flows {
		f := &k.Flows[i]
		n[f.Kind]++
		if w := failure(k, f); w != "" {
			failed[f.Kind]++
			if f.Kind == schemas.ReplayOriginal {
				words[w]++
			}
		}
		var xs []float64
		prev := 0.0
		for _, s := range f.Samples {
			if prev >= k.WarmupS {
				xs = append(xs, s.Mbps)
			}
			prev = s.TS
		}
		if f.Kind == schemas.ReplayOriginal {
			orig = append(orig, xs)
		} else {
			inv = append(inv, xs)
		}
	}
	if 2*failed[schemas.ReplayOriginal] > n[schemas.ReplayOriginal] && 2*failed[schemas.ReplayInverted] <= n[schemas.ReplayInverted] {
		k.Outcome, k.Comparison = schemas.OutcomeBlocked, nil
		for w, c := range words {
			if k.BlockedFailure == "" || c > words[k.BlockedFailure] || c == words[k.BlockedFailure] && w < k.BlockedFailure {
				k.BlockedFailure = w
			}
		}
		return
	}
	var po, pi []float64
	reps, slower := 0, 0
	for i := range orig {
		po = append(po, orig[i]...)
		if i < len(inv) {
			pi = append(pi, inv[i]...)
			if len(orig[i]) > 0 && len(inv[i]) > 0 {
				reps++
				o, c := stats.Median(orig[i]), stats.Median(inv[i])
				if c > 0 && (c-o)/c >= wire.Criteria.MinDiff {
					slower++
				}
			}
		}
	}
	c := stats.Compare(po, pi, wire.Criteria)
	if c.Outcome == stats.Differentiation && slower < reps {
		c.Outcome = stats.Inconclusive
	}
	r3 := func(x float64) float64 { return math.Round(x*1000) / 1000 }
	k.Comparison = &schemas.BitTorrentComparison{
		Direction: schemas.DirDownload, Tested: schemas.ReplayOriginal, Control: schemas.ReplayInverted, Factor: schemas.AttributionPayload,
		Samples: uint32(c.N), ControlSamples: uint32(c.ControlN), MedianMbps: r3(c.Median), ControlMedian: r3(c.ControlMedian),
		DiffPct: r3(max(min(c.DiffPct, 100), -1e6)), KSD: c.KS.D, KSP: c.KS.P, Alpha: wire.Criteria.Alpha, ThresholdPct: wire.Criteria.MinDiff * 100,
		Reps: uint8(reps), RepsSlower: uint8(slower), Outcome: c.Outcome,
	}
	k.Outcome = c.Outcome
}
