package trace

import (
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

// Analyze decides a replay test as the BitTorrent test decides one
// comparison (spec/replay.md): blocked when the original flows failed in
// most repetitions while the inverted ones did not, with their most common
// failure; otherwise wire.ComparePairs over the repetitions' pairs of
// flows (original, inverted), on the samples (the server's once it merged
// the record, the client's before).
func Analyze(k *schemas.Replay) {
	k.BlockedFailure = ""
	var orig, inv []wire.FlowStat
	failed := map[string]int{}
	n := map[string]int{}
	words := map[string]int{}
	for i := range k.Flows {
		f := &k.Flows[i]
		n[f.Kind]++
		w := failure(k, f)
		if w != "" {
			failed[f.Kind]++
			if f.Kind == schemas.ReplayOriginal {
				words[w]++
			}
		}
		st := wire.NewFlowStat(f.Samples, k.WarmupS, w != "")
		if f.Kind == schemas.ReplayOriginal {
			orig = append(orig, st)
		} else {
			inv = append(inv, st)
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
	var pairs []wire.Pair
	for i := 0; i < min(len(orig), len(inv)); i++ {
		pairs = append(pairs, wire.Pair{Tested: orig[i], Controls: []wire.FlowStat{inv[i]}})
	}
	c := wire.ComparePairs(pairs, wire.Criteria.Alpha)
	c.Direction, c.Tested, c.Control, c.Factor = schemas.DirDownload, schemas.ReplayOriginal, schemas.ReplayInverted, schemas.AttributionPayload
	k.Comparison = &c
	k.Outcome = c.Outcome
}
