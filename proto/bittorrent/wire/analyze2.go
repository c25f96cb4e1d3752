package wire

import (
	"fmt"
	"slices"
	"sort"

	"github.com/neubot/neubot/schemas"
)

// The analysis of methodology version 2 (spec/bittorrent.md, "How it
// decides"). Per direction, the flows form a grid: payload {bittorrent,
// random} × port {application, neutral, web}, repeated, each flow to one of
// the server's addresses in a Latin square (kind i of repetition r goes to
// address (i + r) mod hosts), so that every kind meets every address and
// every address, in every repetition, carries a balanced mix of kinds.

// Names of the factor comparisons of version 2.1 (the tested and control
// sets of flows; see comparisons).
const (
	SetBitTorrentPayload = "bittorrent_payload"
	SetRandomPayload     = "random_payload"
	SetApplicationPort   = "application_port"
	SetNeutralPort       = "neutral_port"
	SetWebPort           = "web_port"
	SetRandomAndNeutral  = "random_and_neutral"
)

// comparisons are the factor comparisons of the grid: the pairs of kinds
// whose flows of one repetition are paired, tested against control.
// Payload pairs flows of the same port; port, flows of the same payload;
// both (BitTorrent bytes on BitTorrent's port only) pairs the BitTorrent
// flow with each of its two single-factor controls.
var comparisons = []struct {
	tested, control, factor string
	kinds                   [][2]string
}{
	{SetBitTorrentPayload, SetRandomPayload, schemas.AttributionPayload, [][2]string{
		{schemas.FlowBitTorrent, schemas.FlowRandom}, {schemas.FlowNeutral, schemas.FlowRandomNeutral}, {schemas.FlowWeb, schemas.FlowRandomWeb}}},
	{SetApplicationPort, SetNeutralPort, schemas.AttributionPort, [][2]string{
		{schemas.FlowBitTorrent, schemas.FlowNeutral}, {schemas.FlowRandom, schemas.FlowRandomNeutral}}},
	{SetNeutralPort, SetWebPort, schemas.AttributionPort, [][2]string{
		{schemas.FlowNeutral, schemas.FlowWeb}, {schemas.FlowRandomNeutral, schemas.FlowRandomWeb}}},
	{schemas.FlowBitTorrent, SetRandomAndNeutral, schemas.AttributionBoth, [][2]string{
		{schemas.FlowBitTorrent, schemas.FlowRandom}, {schemas.FlowBitTorrent, schemas.FlowNeutral}}}, // one pair per repetition
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
	stat    FlowStat
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
		failure := FlowFailure(k, f)
		r := &flowRef{f: f, rep: len(byKind[f.Kind]), stat: NewFlowStat(flowSamples(k, f), k.WarmupS, failure != ""), failure: failure}
		byKind[f.Kind] = append(byKind[f.Kind], r)
		all = append(all, r)
	}
	if len(all) == 0 {
		return "", "" // a direction the test did not run
	}
	if blocked, attr, ok := blocking(k, dir, byKind, all); ok {
		return blocked, attr
	}
	sig := map[string]bool{}
	inconclusive, compared := false, 0
	for _, c := range candidates(k, byKind, all) {
		if !Designable(c.pairs, c.alpha) {
			continue // not in this test's design (e.g. no web port)
		}
		compared++
		cmp := ComparePairs(c.pairs, c.alpha)
		cmp.Direction, cmp.Tested, cmp.Control, cmp.Factor = dir, c.tested, c.control, c.factor
		k.Comparisons = append(k.Comparisons, cmp)
		switch cmp.Outcome {
		case schemas.OutcomeDifferentiation:
			sig[c.factor] = true
		case schemas.OutcomeInconclusive:
			inconclusive = true
		}
	}
	switch {
	case sig[schemas.AttributionPayload]:
		return schemas.OutcomeDifferentiation, schemas.AttributionPayload
	case sig[schemas.AttributionPort]:
		return schemas.OutcomeDifferentiation, schemas.AttributionPort
	case sig[schemas.AttributionBoth]:
		return schemas.OutcomeDifferentiation, schemas.AttributionBoth
	case sig[schemas.AttributionHost]:
		return schemas.OutcomeDifferentiation, schemas.AttributionHost
	case inconclusive || compared == 0: // missing data, or too few flows to decide anything
		return schemas.OutcomeInconclusive, ""
	}
	return schemas.OutcomeNone, ""
}

// candidate is a comparison the design may hold: its pairs, the level it
// is decided at, and its names.
type candidate struct {
	pairs                   []Pair
	alpha                   float64
	tested, control, factor string
}

// candidates are the comparisons of one direction: of duels (methodology
// 3, flows run two at a time) or of flows run one after the other
// (methodology 2).
func candidates(k *schemas.BitTorrent, byKind map[string][]*flowRef, all []*flowRef) []candidate {
	if ds := duelsOf(all); len(ds) > 0 {
		return duelCandidates(k, ds)
	}
	var out []candidate
	for _, cmp := range comparisons {
		var pairs []Pair
		if cmp.factor == schemas.AttributionBoth {
			// One pair per repetition: the BitTorrent flow against
			// both of its single-factor controls.
			t := byKind[cmp.kinds[0][0]]
			for rep := range t {
				var cs []FlowStat
				for _, kp := range cmp.kinds {
					if c := byKind[kp[1]]; rep < len(c) {
						cs = append(cs, c[rep].stat)
					}
				}
				pairs = append(pairs, Pair{Tested: t[rep].stat, Controls: cs})
			}
		} else {
			for _, kp := range cmp.kinds {
				t, c := byKind[kp[0]], byKind[kp[1]]
				for rep := 0; rep < min(len(t), len(c)); rep++ {
					pairs = append(pairs, Pair{Tested: t[rep].stat, Controls: []FlowStat{c[rep].stat}})
				}
			}
		}
		out = append(out, candidate{pairs, Criteria.Alpha, cmp.tested, cmp.control, cmp.factor})
	}
	if k.Hosts >= 2 {
		// Each flow to address h against the flows just before and after
		// it in this direction (the Latin square sends them to other
		// addresses): the nearest in time, so the nearest in cross
		// traffic, and no two of h's flows share a control. The
		// addresses are as many tests of one question: each at
		// Alpha / hosts (Bonferroni).
		for h := 0; h < int(k.Hosts); h++ {
			var pairs []Pair
			for i, r := range all {
				if int(r.f.Host) != h {
					continue
				}
				var cs []FlowStat
				for _, j := range []int{i - 1, i + 1} {
					if j >= 0 && j < len(all) && int(all[j].f.Host) != h {
						cs = append(cs, all[j].stat)
					}
				}
				pairs = append(pairs, Pair{Tested: r.stat, Controls: cs})
			}
			out = append(out, candidate{pairs, Criteria.Alpha / float64(k.Hosts), fmt.Sprintf("host_%d", h), ControlHosts, schemas.AttributionHost})
		}
	}
	return out
}

// duel is two flows of one direction run at the same time (methodology 3):
// the same cross traffic meets both.
type duel [2]*flowRef

// duelsOf returns the duels among the flows of one direction, in the order
// run: the flows that share their start_s, two by two (the client records
// the start of the duel for both). None in a record of methodology 2,
// whose flows ran one after the other.
func duelsOf(all []*flowRef) []duel {
	var out []duel
	for i := 0; i+1 < len(all); i++ {
		if all[i].f.StartS == all[i+1].f.StartS && (i+2 == len(all) || all[i+2].f.StartS != all[i].f.StartS) &&
			(i == 0 || all[i-1].f.StartS != all[i].f.StartS) {
			out = append(out, duel{all[i], all[i+1]})
			i++
		}
	}
	return out
}

// side returns the flow of kind tested and the flow of kind control of
// the duel, if it is made of those two kinds.
func (d duel) side(tested, control string) (t, c *flowRef, ok bool) {
	switch {
	case d[0].f.Kind == tested && d[1].f.Kind == control:
		return d[0], d[1], true
	case d[1].f.Kind == tested && d[0].f.Kind == control:
		return d[1], d[0], true
	}
	return nil, nil, false
}

// duelCandidates are the comparisons of methodology 3: each factor's
// pairs are the duels of its pairs of kinds, the tested flow against the
// control flow that ran at the same time; the interaction pairs, duel by
// duel in order, a BitTorrent flow slower than the random flow of its duel
// with one slower than the neutral flow of its own (chance 1/4 under the
// null); host h, every duel with one flow to h and one elsewhere.
func duelCandidates(k *schemas.BitTorrent, ds []duel) []candidate {
	var out []candidate
	for _, cmp := range comparisons {
		var pairs []Pair
		if cmp.factor == schemas.AttributionBoth {
			var legs [2][]Pair
			for i, kp := range cmp.kinds {
				for _, d := range ds {
					if t, c, ok := d.side(kp[0], kp[1]); ok {
						legs[i] = append(legs[i], Pair{Tested: t.stat, Controls: []FlowStat{c.stat}})
					}
				}
			}
			for i := 0; i < min(len(legs[0]), len(legs[1])); i++ {
				p := legs[0][i]
				p.And = []Pair{legs[1][i]}
				pairs = append(pairs, p)
			}
		} else {
			for _, d := range ds {
				for _, kp := range cmp.kinds {
					if t, c, ok := d.side(kp[0], kp[1]); ok {
						pairs = append(pairs, Pair{Tested: t.stat, Controls: []FlowStat{c.stat}})
					}
				}
			}
		}
		out = append(out, candidate{pairs, Criteria.Alpha, cmp.tested, cmp.control, cmp.factor})
	}
	if k.Hosts >= 2 {
		// The addresses are as many tests of one question: each at
		// Alpha / hosts (Bonferroni).
		for h := 0; h < int(k.Hosts); h++ {
			var pairs []Pair
			for _, d := range ds {
				a, b := int(d[0].f.Host) == h, int(d[1].f.Host) == h
				switch {
				case a && !b:
					pairs = append(pairs, Pair{Tested: d[0].stat, Controls: []FlowStat{d[1].stat}})
				case b && !a:
					pairs = append(pairs, Pair{Tested: d[1].stat, Controls: []FlowStat{d[0].stat}})
				}
			}
			out = append(out, candidate{pairs, Criteria.Alpha / float64(k.Hosts), fmt.Sprintf("host_%d", h), ControlHosts, schemas.AttributionHost})
		}
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
