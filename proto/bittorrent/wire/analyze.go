package wire

import (
	"github.com/neubot/neubot/internal/stats"
	spec "github.com/neubot/neubot/proto/bittorrent"
	"github.com/neubot/neubot/schemas"
)

// Criteria are the decision thresholds of methodology version 1.
var Criteria = stats.Criteria{Alpha: spec.Alpha, MinDiff: spec.MinDiff, MinSamples: spec.MinSamples}

// FlowMbps is the mean throughput of samples after warmup seconds: bytes
// over time between the last sample at or before the warm-up and the last.
func FlowMbps(samples []schemas.ThroughputSample, warmup float64) float64 {
	var t0 float64
	var b0 uint64
	for _, s := range samples {
		if s.TS <= warmup {
			t0, b0 = s.TS, s.Bytes
		}
	}
	if len(samples) == 0 {
		return 0
	}
	last := samples[len(samples)-1]
	if last.TS <= t0 {
		return 0
	}
	return round3(float64(last.Bytes-b0) * 8 / 1e6 / (last.TS - t0))
}

// samplesOf returns, for each flow of one kind and direction in the order
// run (one per repetition), the interval throughputs whose interval starts
// after the warm-up.
func samplesOf(k *schemas.BitTorrent, kind, dir string) [][]float64 {
	var out [][]float64
	for _, f := range k.Flows {
		if f.Kind != kind || f.Direction != dir {
			continue
		}
		var xs []float64
		prev := 0.0
		for _, s := range f.Samples {
			if prev >= k.WarmupS {
				xs = append(xs, s.Mbps)
			}
			prev = s.TS
		}
		out = append(out, xs)
	}
	return out
}

func pool(flows [][]float64) []float64 {
	var out []float64
	for _, xs := range flows {
		out = append(out, xs...)
	}
	return out
}

// consistency counts the repetitions where both kinds have samples, and
// those where the tested flow's median is at least the threshold below
// the control flow's of the same repetition.
func consistency(tested, control [][]float64) (reps, slower int) {
	for i := 0; i < min(len(tested), len(control)); i++ {
		if len(tested[i]) == 0 || len(control[i]) == 0 {
			continue
		}
		reps++
		t, c := stats.Median(tested[i]), stats.Median(control[i])
		if c > 0 && (c-t)/c >= Criteria.MinDiff {
			slower++
		}
	}
	return reps, slower
}

// Analyze fills the comparisons, outcomes and attributions of k from its
// flows: AnalyzeV2 for a record of the factorial design (Hosts > 0),
// AnalyzeV1 otherwise.
func Analyze(k *schemas.BitTorrent) {
	if k.Hosts > 0 {
		AnalyzeV2(k)
		return
	}
	AnalyzeV1(k)
}

// AnalyzeV1 fills the comparisons and outcomes of k from its flows: in each
// direction, the BitTorrent flows' samples against the random flows' (same
// port: does the payload matter?) and against the neutral-port flows'
// (same payload: does the port matter?). Beyond stats.Compare on the
// pooled samples, differentiation must hold in every repetition: a
// BitTorrent flow at least the threshold slower than the control flow of
// its repetition. Cross traffic that comes and goes can make the flows of
// one kind slower by chance; it rarely does so in every repetition. When
// the pooled samples say differentiation and a repetition disagrees, the
// comparison is inconclusive.
func AnalyzeV1(k *schemas.BitTorrent) {
	k.Comparisons = k.Comparisons[:0]
	outcome := map[string][]string{}
	for _, dir := range []string{schemas.DirDownload, schemas.DirUpload} {
		bt := samplesOf(k, schemas.FlowBitTorrent, dir)
		for _, ctl := range []string{schemas.FlowRandom, schemas.FlowNeutral} {
			cs := samplesOf(k, ctl, dir)
			c := stats.Compare(pool(bt), pool(cs), Criteria)
			reps, slower := consistency(bt, cs)
			if c.Outcome == stats.Differentiation && slower < reps {
				c.Outcome = stats.Inconclusive
			}
			k.Comparisons = append(k.Comparisons, schemas.BitTorrentComparison{
				Direction: dir, Control: ctl, Samples: uint32(c.N), ControlSamples: uint32(c.ControlN),
				MedianMbps: round3(c.Median), ControlMedian: round3(c.ControlMedian), DiffPct: round3(max(min(c.DiffPct, 100), -1e6)),
				KSD: c.KS.D, KSP: c.KS.P, Alpha: Criteria.Alpha, ThresholdPct: Criteria.MinDiff * 100,
				Reps: uint8(reps), RepsSlower: uint8(slower), Outcome: c.Outcome,
			})
			outcome[dir] = append(outcome[dir], c.Outcome)
		}
	}
	k.DownloadOutcome = stats.Combine(outcome[schemas.DirDownload]...)
	k.UploadOutcome = stats.Combine(outcome[schemas.DirUpload]...)
	k.Outcome = stats.Combine(k.DownloadOutcome, k.UploadOutcome)
}

// FlowStat is what a paired comparison uses of one flow.
type FlowStat struct {
	// Samples are the interval throughputs after the warm-up, pooled for
	// the comparison's evidence (medians, the KS test).
	Samples []float64
	// Rate is the flow's mean throughput over its tail (TailRate), Mbit/s.
	Rate float64
	// OK: the flow ran its course (no failure) and has samples in its tail.
	OK bool
}

// NewFlowStat returns the FlowStat of a flow's samples; failed flows are
// not OK (their failures are the evidence of blocking, not throughput).
func NewFlowStat(samples []schemas.ThroughputSample, warmup float64, failed bool) FlowStat {
	var xs []float64
	prev := 0.0
	for _, s := range samples {
		if prev >= warmup {
			xs = append(xs, s.Mbps)
		}
		prev = s.TS
	}
	rate, ok := TailRate(samples, warmup)
	return FlowStat{Samples: xs, Rate: rate, OK: ok && !failed}
}

// TailRate is the mean throughput of the samples whose interval starts at
// or after the flow's tail: the later of the warm-up and half of the
// flow's sampled time. The tail is what a throttle that starts after a
// byte count or a delay leaves, and what a boost (a fast start) does not
// reach; ok is false when the tail holds no sample.
func TailRate(samples []schemas.ThroughputSample, warmup float64) (rate float64, ok bool) {
	if len(samples) == 0 {
		return 0, false
	}
	from := max(warmup, samples[len(samples)-1].TS/2)
	var sum float64
	n, prev := 0, 0.0
	for _, s := range samples {
		if prev >= from-1e-9 {
			sum += s.Mbps
			n++
		}
		prev = s.TS
	}
	if n == 0 {
		return 0, false
	}
	return sum / float64(n), true
}

// Pair is a tested flow and its controls: the control flow of the same
// repetition, or for the interaction (both) the two single-factor controls,
// or for a host the flows just before and after it (to other addresses);
// since methodology 3 the control flow that ran at the same time (a duel).
type Pair struct {
	Tested   FlowStat
	Controls []FlowStat
	// And are further pairs that must all be slower with this one for the
	// pair to count as slower (methodology 3's interaction: the BitTorrent
	// flow slower than the random flow of its duel and than the neutral
	// flow of another duel); under the null the chances multiply.
	And []Pair
}

// null is the chance, under the null hypothesis, that the pair's tested
// flow is the slowest of its flows (of each of its pairs, with And).
func (p Pair) null() float64 {
	q := 1 / float64(len(p.Controls)+1)
	for _, a := range p.And {
		q *= a.null()
	}
	return q
}

// slower reports whether the pair counts (the tested flow and a control
// have a throughput), whether its tested flow is at least Criteria.MinDiff
// slower than every control, and the chance of that
// under the null hypothesis: when the tested flow and its m controls are
// exchangeable (no policy tells them apart), each is the slowest with
// probability 1/(m+1), whatever the cross traffic of the moment.
func (p Pair) slower() (counts, slower bool, p0 float64) {
	counts, slower, p0 = p.slowerOne()
	for _, a := range p.And {
		c, s, q := a.slower()
		counts, slower, p0 = counts && c, slower && s, p0*q
	}
	if !counts {
		return false, false, 0
	}
	return counts, slower, p0
}

func (p Pair) slowerOne() (counts, slower bool, p0 float64) {
	if !p.Tested.OK {
		return false, false, 0
	}
	m, least := 0, 0.0
	for _, c := range p.Controls {
		if c.OK {
			if m == 0 || c.Rate < least {
				least = c.Rate
			}
			m++
		}
	}
	if m == 0 {
		return false, false, 0
	}
	return true, least > 0 && p.Tested.Rate <= (1-Criteria.MinDiff)*least, 1 / float64(m+1)
}

// TailP is P(S >= k) where S is the number of successes of independent
// trials with probabilities p0 (a Poisson-binomial upper tail); with every
// p0 = 1/2 it is the paired sign test's p-value.
func TailP(p0 []float64, k int) float64 {
	dist := []float64{1} // dist[j]: P(j successes so far)
	for _, q := range p0 {
		next := make([]float64, len(dist)+1)
		for j, v := range dist {
			next[j] += v * (1 - q)
			next[j+1] += v * q
		}
		dist = next
	}
	var s float64
	for j := max(k, 0); j < len(dist); j++ {
		s += dist[j]
	}
	return min(s, 1)
}

// Designable reports whether pairs could show differentiation at alpha
// if every flow ran: whether the test's design holds this comparison.
func Designable(pairs []Pair, alpha float64) bool {
	var p0 []float64
	for _, p := range pairs {
		if len(p.Controls) > 0 {
			p0 = append(p0, p.null())
		}
	}
	return TailP(p0, len(p0)) < alpha
}

// ComparePairs decides a comparison from its pairs (spec/bittorrent.md,
// "How it decides", since v2.1.0): differentiation when the tested flow is
// at least Criteria.MinDiff slower than its controls in so many pairs that
// the p-value (TailP: under the null each pair's tested flow is the
// slowest by chance 1/(m+1) with m controls; with one control it is the
// paired sign test) is below alpha (Criteria.Alpha, or a share of it for
// a family of comparisons); inconclusive when the pairs that count could
// not reach alpha even if all were slower (failed or
// empty flows); none otherwise. The test's unit is the pair, not the
// sample: samples of one flow move together with the cross traffic of the
// moment, so pooling them as independent overstates the evidence. The
// pooled samples' medians and KS test are kept as evidence. It fills the
// numbers and the outcome; the caller names direction, tested, control
// and factor.
func ComparePairs(pairs []Pair, alpha float64) schemas.BitTorrentComparison {
	var ts, cs, p0 []float64
	slower := 0
	for _, p := range pairs {
		ok, slow, q := p.slower()
		if !ok {
			continue
		}
		p0 = append(p0, q)
		if slow {
			slower++
		}
		for _, q := range append([]Pair{p}, p.And...) {
			ts = append(ts, q.Tested.Samples...)
			for _, c := range q.Controls {
				if c.OK {
					cs = append(cs, c.Samples...)
				}
			}
		}
	}
	c := stats.Compare(ts, cs, Criteria)
	n := len(p0)
	out := schemas.BitTorrentComparison{
		Samples: uint32(c.N), ControlSamples: uint32(c.ControlN),
		MedianMbps: round3(c.Median), ControlMedian: round3(c.ControlMedian), DiffPct: round3(max(min(c.DiffPct, 100), -1e6)),
		KSD: c.KS.D, KSP: c.KS.P, Alpha: alpha, ThresholdPct: Criteria.MinDiff * 100,
		Reps: uint8(min(n, 255)), RepsSlower: uint8(min(slower, 255)), Outcome: stats.None,
	}
	switch {
	case TailP(p0, n) >= alpha:
		out.Outcome = stats.Inconclusive
	case TailP(p0, slower) < alpha:
		out.Outcome = stats.Differentiation
	}
	return out
}
