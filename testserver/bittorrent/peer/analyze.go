package peer

import (
	"github.com/neubot/neubot/internal/stats"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver/bittorrent/spec"
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

// samplesOf pools the interval throughputs of the flows of one kind and
// direction whose interval starts after the warm-up.
func samplesOf(k *schemas.BitTorrent, kind, dir string) []float64 {
	var out []float64
	for _, f := range k.Flows {
		if f.Kind != kind || f.Direction != dir {
			continue
		}
		prev := 0.0
		for _, s := range f.Samples {
			if prev >= k.WarmupS {
				out = append(out, s.Mbps)
			}
			prev = s.TS
		}
	}
	return out
}

// Analyze fills the comparisons and outcomes of k from its flows: in each
// direction, the BitTorrent flows' samples against the random flows' (same
// port: does the payload matter?) and against the neutral-port flows'
// (same payload: does the port matter?).
func Analyze(k *schemas.BitTorrent) {
	k.Comparisons = k.Comparisons[:0]
	outcome := map[string][]string{}
	for _, dir := range []string{schemas.DirDownload, schemas.DirUpload} {
		bt := samplesOf(k, schemas.FlowBitTorrent, dir)
		for _, ctl := range []string{schemas.FlowRandom, schemas.FlowNeutral} {
			c := stats.Compare(bt, samplesOf(k, ctl, dir), Criteria)
			k.Comparisons = append(k.Comparisons, schemas.BitTorrentComparison{
				Direction: dir, Control: ctl, Samples: uint32(c.N), ControlSamples: uint32(c.ControlN),
				MedianMbps: round3(c.Median), ControlMedian: round3(c.ControlMedian), DiffPct: round3(max(min(c.DiffPct, 100), -1e6)),
				KSD: c.KS.D, KSP: c.KS.P, Alpha: Criteria.Alpha, ThresholdPct: Criteria.MinDiff * 100, Outcome: c.Outcome,
			})
			outcome[dir] = append(outcome[dir], c.Outcome)
		}
	}
	k.DownloadOutcome = stats.Combine(outcome[schemas.DirDownload]...)
	k.UploadOutcome = stats.Combine(outcome[schemas.DirUpload]...)
	k.Outcome = stats.Combine(k.DownloadOutcome, k.UploadOutcome)
}
