package wire

import (
	"fmt"
	"slices"
	"sort"

	"github.com/neubot/neubot/internal/stats"
	"github.com/neubot/neubot/schemas"
)

// The analysis of methodology version 2 (spec/bittorrent.md, "How it
// decides"). Per direction, the flows form a grid: payload {bittorrent,
// random} × port {application, neutral, web}, repeated, each flow to one of
// the server's addresses in a Latin square (kind i of repetition r goes to
// address (i + r) mod hosts), so that every kind meets every address and
// every address, in every repetition, carries a balanced mix of kinds.

// pairs are the comparisons of the grid, tested against control, and the
// factor each isolates.
var pairs = []struct{ tested, control, factor string }{
	{schemas.FlowBitTorrent, schemas.FlowRandom, schemas.AttributionPayload},
	{schemas.FlowNeutral, schemas.FlowRandomNeutral, schemas.AttributionPayload},
	{schemas.FlowWeb, schemas.FlowRandomWeb, schemas.AttributionPayload},
	{schemas.FlowBitTorrent, schemas.FlowNeutral, schemas.AttributionPort},
	{schemas.FlowRandom, schemas.FlowRandomNeutral, schemas.AttributionPort},
	{schemas.FlowNeutral, schemas.FlowWeb, schemas.AttributionPort},
	{schemas.FlowRandomNeutral, schemas.FlowRandomWeb, schemas.AttributionPort},
}

// ControlHosts is the control of a host comparison.
const ControlHosts = "other_hosts"

// flowSamples is what the decision uses of a flow: the server's samples
// once the server has merged the record (it measured both directions),
// the client's own before (downloads only).
func flowSamples(k *schemas.BitTorrent, f *schemas.BitTorrentFlow) []schemas.ThroughputSample {
	if k.ServerView != nil {
		return f.ServerSamples
	}
	return f.Samples
}

// afterWarmup returns the interval throughputs of samples whose interval
// starts after the warm-up.
func afterWarmup(samples []schemas.ThroughputSample, warmup float64) []float64 {
	var xs []float64
	prev := 0.0
	for _, s := range samples {
		if prev >= warmup {
			xs = append(xs, s.Mbps)
		}
		prev = s.TS
	}
	return xs
}

// FlowFailure is the failure of a flow that counts as evidence of
// blocking: the server's word once it merged the record (the client's when
// the server never admitted the flow), the client's before; "" for a flow
// that ran its course, or was canceled.
func FlowFailure(k *schemas.BitTorrent, f *schemas.BitTorrentFlow) string {
	w := f.Error
	if k.ServerView != nil && f.ServerError != ServerUnseen {
		w = f.ServerError
	}
	if k.ServerView != nil && f.ServerError == ServerUnseen && w == "" {
		w = schemas.FailureOther
	}
	if w == schemas.FailureCanceled {
		return ""
	}
	return w
}

// ServerUnseen is the server_error of a flow the server never admitted.
const ServerUnseen = "unseen"

type flowRef struct {
	f       *schemas.BitTorrentFlow
	rep     int
	samples []float64
	failure string
}

// AnalyzeV2 fills comparisons, blocked, outcomes and attributions.
func AnalyzeV2(k *schemas.BitTorrent) {
	k.Comparisons = k.Comparisons[:0]
	k.Blocked = nil
	outcomes, attrs := [2]string{}, [2]string{}
	for i, dir := range []string{schemas.DirDownload, schemas.DirUpload} {
		outcomes[i], attrs[i] = analyzeDirection(k, dir)
	}
	k.DownloadOutcome, k.UploadOutcome = outcomes[0], outcomes[1]
	k.DownloadAttribution, k.UploadAttribution = attrs[0], attrs[1]
	k.Outcome = schemas.CombineV2(outcomes[0], outcomes[1])
	k.Attribution = schemas.AttributionOf(k.Outcome, outcomes, attrs)
}

func analyzeDirection(k *schemas.BitTorrent, dir string) (outcome, attribution string) {
	byKind := map[string][]*flowRef{}
	var all []*flowRef
	for i := range k.Flows {
		f := &k.Flows[i]
		if f.Direction != dir {
			continue
		}
		r := &flowRef{f: f, rep: len(byKind[f.Kind]), samples: afterWarmup(flowSamples(k, f), k.WarmupS), failure: FlowFailure(k, f)}
		byKind[f.Kind] = append(byKind[f.Kind], r)
		all = append(all, r)
	}
	if len(all) == 0 {
		return "", "" // a direction the test did not run
	}
	if blocked, attr, ok := blocking(k, dir, byKind, all); ok {
		return blocked, attr
	}
	diff := map[string]bool{}
	allNone := true
	add := func(c stats.Comparison, reps, slower int, tested, control, factor string) {
		if c.Outcome == stats.Differentiation && slower < reps {
			c.Outcome = stats.Inconclusive
		}
		allNone = allNone && c.Outcome == stats.None
		if c.Outcome == stats.Differentiation {
			diff[tested+"/"+control] = true
		}
		k.Comparisons = append(k.Comparisons, schemas.BitTorrentComparison{
			Direction: dir, Tested: tested, Control: control, Factor: factor,
			Samples: uint32(c.N), ControlSamples: uint32(c.ControlN),
			MedianMbps: round3(c.Median), ControlMedian: round3(c.ControlMedian), DiffPct: round3(max(min(c.DiffPct, 100), -1e6)),
			KSD: c.KS.D, KSP: c.KS.P, Alpha: Criteria.Alpha, ThresholdPct: Criteria.MinDiff * 100,
			Reps: uint8(reps), RepsSlower: uint8(slower), Outcome: c.Outcome,
		})
	}
	for _, p := range pairs {
		t, c := byKind[p.tested], byKind[p.control]
		if len(t) == 0 || len(c) == 0 {
			continue
		}
		ts, cs := perRep(t), perRep(c)
		reps, slower := consistency(ts, cs)
		add(stats.Compare(pool(ts), pool(cs), Criteria), reps, slower, p.tested, p.control, p.factor)
	}
	hostDiff := false
	if k.Hosts >= 2 {
		for h := 0; h < int(k.Hosts); h++ {
			var ts, cs [][]float64
			for _, r := range all {
				for r.rep >= len(ts) {
					ts, cs = append(ts, nil), append(cs, nil)
				}
				if int(r.f.Host) == h {
					ts[r.rep] = append(ts[r.rep], r.samples...)
				} else {
					cs[r.rep] = append(cs[r.rep], r.samples...)
				}
			}
			reps, slower := consistency(ts, cs)
			tested := fmt.Sprintf("host_%d", h)
			add(stats.Compare(pool(ts), pool(cs), Criteria), reps, slower, tested, ControlHosts, schemas.AttributionHost)
			hostDiff = hostDiff || diff[tested+"/"+ControlHosts]
		}
	}
	d := func(t, c string) bool { return diff[t+"/"+c] }
	payload := d(schemas.FlowBitTorrent, schemas.FlowRandom) && (d(schemas.FlowNeutral, schemas.FlowRandomNeutral) || d(schemas.FlowWeb, schemas.FlowRandomWeb))
	port := (d(schemas.FlowBitTorrent, schemas.FlowNeutral) && d(schemas.FlowRandom, schemas.FlowRandomNeutral)) ||
		(d(schemas.FlowNeutral, schemas.FlowWeb) && d(schemas.FlowRandomNeutral, schemas.FlowRandomWeb))
	both := d(schemas.FlowBitTorrent, schemas.FlowRandom) && d(schemas.FlowBitTorrent, schemas.FlowNeutral)
	switch {
	case payload:
		return schemas.OutcomeDifferentiation, schemas.AttributionPayload
	case port:
		return schemas.OutcomeDifferentiation, schemas.AttributionPort
	case both:
		return schemas.OutcomeDifferentiation, schemas.AttributionBoth
	case hostDiff:
		return schemas.OutcomeDifferentiation, schemas.AttributionHost
	case allNone:
		return schemas.OutcomeNone, ""
	}
	return schemas.OutcomeInconclusive, ""
}

// perRep returns each flow's samples, in the order run.
func perRep(flows []*flowRef) [][]float64 {
	out := make([][]float64, len(flows))
	for i, r := range flows {
		out[i] = r.samples
	}
	return out
}

// blocking looks for kinds of flow (or a server address) whose flows
// failed in most repetitions while others ran: the outcome blocked, its
// evidence in k.Blocked and its attribution. When every kind failed, the
// direction is inconclusive (the server or the path is down, not a
// policy). ok is false when nothing failed that way.
func blocking(k *schemas.BitTorrent, dir string, byKind map[string][]*flowRef, all []*flowRef) (outcome, attribution string, ok bool) {
	failedMost := func(flows []*flowRef) (bool, string, int) {
		words := map[string]int{}
		n := 0
		for _, r := range flows {
			if r.failure != "" {
				n++
				words[r.failure]++
			}
		}
		common := ""
		for w, c := range words {
			if common == "" || c > words[common] || c == words[common] && w < common {
				common = w
			}
		}
		return len(flows) > 0 && 2*n > len(flows), common, n
	}
	var kinds []string
	for kind := range byKind {
		kinds = append(kinds, kind)
	}
	sort.Slice(kinds, func(i, j int) bool {
		return slices.Index(schemas.FlowKinds, kinds[i]) < slices.Index(schemas.FlowKinds, kinds[j])
	})
	var blocked []string
	var evidence []schemas.BitTorrentBlocked
	for _, kind := range kinds {
		if most, word, n := failedMost(byKind[kind]); most {
			blocked = append(blocked, kind)
			evidence = append(evidence, schemas.BitTorrentBlocked{Direction: dir, Kind: kind, Failure: word, Flows: uint8(len(byKind[kind])), Failed: uint8(n)})
		}
	}
	if len(blocked) == len(kinds) {
		if len(blocked) > 0 {
			return schemas.OutcomeInconclusive, "", true
		}
	} else if len(blocked) > 0 {
		k.Blocked = append(k.Blocked, evidence...)
		return schemas.OutcomeBlocked, attributeKinds(blocked, kinds), true
	}
	// A server address whose flows failed in most repetitions while the
	// others' ran.
	if k.Hosts >= 2 {
		for h := 0; h < int(k.Hosts); h++ {
			var to, others []*flowRef
			for _, r := range all {
				if int(r.f.Host) == h {
					to = append(to, r)
				} else {
					others = append(others, r)
				}
			}
			if most, _, _ := failedMost(to); most {
				if most, _, _ := failedMost(others); !most {
					for _, kind := range kinds {
						var of []*flowRef
						for _, r := range to {
							if r.f.Kind == kind {
								of = append(of, r)
							}
						}
						if _, word, n := failedMost(of); n > 0 {
							k.Blocked = append(k.Blocked, schemas.BitTorrentBlocked{Direction: dir, Kind: kind, Failure: word, Flows: uint8(len(byKind[kind])), Failed: uint8(n)})
						}
					}
					return schemas.OutcomeBlocked, schemas.AttributionHost, true
				}
			}
		}
	}
	return "", "", false
}

// attributeKinds says what the blocked kinds have in common: payload when
// they are exactly the BitTorrent-payload kinds run, port when exactly the
// application-port kinds, both when only the BitTorrent kind; empty
// otherwise.
func attributeKinds(blocked, ran []string) string {
	with := func(pred func(payload, port string) bool) []string {
		var out []string
		for _, kind := range ran {
			if pred(schemas.KindCell(kind)) {
				out = append(out, kind)
			}
		}
		return out
	}
	switch {
	case slices.Equal(blocked, with(func(p, _ string) bool { return p == schemas.PayloadBitTorrent })):
		return schemas.AttributionPayload
	case slices.Equal(blocked, with(func(_, q string) bool { return q == schemas.PortApplication })):
		return schemas.AttributionPort
	case slices.Equal(blocked, []string{schemas.FlowBitTorrent}):
		return schemas.AttributionBoth
	}
	return ""
}

// CrossCheck compares the client's download measurements with the
// server's: flows measured by both, and those whose means differ by more
// than Criteria.MinDiff of the server's.
func CrossCheck(k *schemas.BitTorrent) (flows, disagree int) {
	for _, f := range k.Flows {
		if f.Direction != schemas.DirDownload || f.Mbps <= 0 || f.ServerMbps <= 0 {
			continue
		}
		flows++
		if d := f.Mbps - f.ServerMbps; d > Criteria.MinDiff*f.ServerMbps || -d > Criteria.MinDiff*f.ServerMbps {
			disagree++
		}
	}
	return flows, disagree
}
