package simulate

import (
	"math"
	"math/rand/v2"

	"github.com/neubot/neubot/internal/goodput"
	"github.com/neubot/neubot/schemas"
)

// Link is what a simulated volunteer's line gives one transfer: the rate of
// its bottleneck, its round-trip time and the packet loss TCP sees.
type Link struct {
	RateMbps float64 // bottleneck rate, Mbit/s
	RTTms    float64 // round-trip time, ms
	Loss     float64 // probability a segment is lost
}

// Link model constants.
const (
	mss           = 1448 // TCP payload per segment, bytes
	initialWindow = 10   // segments (RFC 6928)
	stepS         = 0.002
	// sampleNoise is the lognormal sigma of the rate within a phase (cross
	// traffic, scheduling), per sampling interval.
	sampleNoise = 0.03
)

// Steady is the goodput a transfer over conns TCP connections settles at,
// Mbit/s: the bottleneck rate, or less when loss limits TCP (Mathis et al.:
// MSS/RTT × sqrt(3/2)/sqrt(loss) per connection).
func (l Link) Steady(conns int) float64 {
	if l.Loss <= 0 || l.RTTms <= 0 {
		return l.RateMbps
	}
	mathis := float64(mss*8) / 1e6 / (l.RTTms / 1000) * math.Sqrt(1.5) / math.Sqrt(l.Loss)
	return math.Min(l.RateMbps, float64(conns)*mathis)
}

// Phase is what the speedtest's client sees of one transfer phase of
// methodology 2 over the link: every sampleS seconds, the cumulative bytes
// received by conns connections that start in slow start (an initial
// window of 10 segments doubling every RTT) up to the link's steady
// goodput, with noise. After each sample the phase asks the client's own
// estimator, goodput.Estimate with the parameters the agent uses, whether
// it may stop (a stable window, or the time cap); its goodput, stop reason
// and window are the estimator's, never the link's figure.
func (l Link) Phase(rng *rand.Rand, conns int) schemas.SpeedtestPhase {
	steady := l.Steady(conns) * 1e6 / 8 // bytes/s
	rtt := math.Max(l.RTTms, 0.1) / 1000
	params := goodput.Params{RTT: rtt}.WithDefaults()
	var total, t float64
	p := schemas.SpeedtestPhase{Connections: uint8(conns), Params: &schemas.SpeedtestParams{
		SampleMS: sampleS * 1000, MaxPhaseS: params.MaxPhase, MinWindowS: params.MinWindow, StableRTTs: params.StableRTTs,
		Tolerance: params.Tolerance, RTTMS: l.RTTms,
	}}
	var est []goodput.Sample
	var res goodput.Result
	noise := math.Exp(sampleNoise * rng.NormFloat64())
	round, window := -1.0, 0.0 // slow start: the round and its rate, bytes/s
	capped := false            // slow start is over: the window exceeds the rate
	var prevT float64
	var prevB uint64
	for i := 1; ; i++ {
		end := float64(i) * sampleS
		if capped {
			total += steady * noise * (end - t)
			t = end
		}
		for ; t < end-1e-9; t += stepS {
			// The connections' window after t/RTT rounds of slow start.
			if r := math.Floor(t / rtt); r != round {
				round, window = r, float64(conns)*initialWindow*mss*math.Pow(2, r)/rtt
				capped = window > 2*steady
			}
			total += math.Min(steady*noise, window) * stepS
		}
		s := schemas.ThroughputSample{TS: r3(end + 0.004*rng.Float64()), Bytes: uint64(total)}
		s.Mbps = r3(float64(s.Bytes-prevB) * 8 / 1e6 / (s.TS - prevT))
		prevT, prevB = s.TS, s.Bytes
		p.Samples = append(p.Samples, s)
		est = append(est, goodput.Sample{T: s.TS, Bytes: s.Bytes})
		noise = math.Exp(sampleNoise * rng.NormFloat64())
		if res = goodput.Estimate(est, params); res.Stop || s.TS > params.MaxPhase+0.5 {
			break
		}
	}
	p.Bytes = uint64(total)
	p.DurationS = r3(prevT)
	p.GoodputMbps = r3(res.Mbps)
	p.StopReason = res.StopReason
	p.WindowStartS, p.WindowEndS = r3(res.Start), r3(res.End)
	p.Params.BDPBytes = uint64(p.GoodputMbps * 1e6 / 8 * rtt)
	return p
}
