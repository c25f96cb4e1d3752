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

// Analyze fills the comparisons and outcomes of k from its flows: in each
// direction, the BitTorrent flows' samples against the random flows' (same
// port: does the payload matter?) and against the neutral-port flows'
// (same payload: does the port matter?). Beyond stats.Compare on the
// pooled samples, differentiation must hold in every repetition: a
// BitTorrent flow at least the threshold slower than the control flow of
// its repetition. Cross traffic that comes and goes can make the flows of
// one kind slower by chance; it rarely does so in every repetition. When
// the pooled samples say differentiation and a repetition disagrees, the
// comparison is inconclusive.
func Analyze(k *schemas.BitTorrent) {
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
