// Package goodput is the speedtest's goodput estimator (methodology 2,
// spec/speedtest.md): from the receiver's cumulative byte counter sampled
// over a transfer phase, it finds where TCP's ramp-up ended, decides whether
// the rate has been stable for long enough to stop, and gives the goodput
// over the estimation window. It is a pure function of its inputs, so that
// the agent (online, at every sample) and a simulator (offline, on
// synthetic series) run exactly the same code.
package goodput

import (
	"math"
	"sort"
)

// Sample is one reading of the receiver's counter.
type Sample struct {
	// T is the time since the phase started, seconds.
	T float64
	// Bytes is the cumulative payload received since the phase started.
	Bytes uint64
}

// Params tune the estimator; zero fields take the defaults of methodology 2.
type Params struct {
	// RTT is the path's unloaded round trip, seconds (0: a LAN).
	RTT float64
	// Tolerance is the largest relative difference between the rates of
	// the two halves of the stable window (default 0.03).
	Tolerance float64
	// StableRTTs is the stable window's length in round trips (default 6).
	StableRTTs float64
	// MinWindow is the stable window's shortest length, seconds (1.0).
	MinWindow float64
	// MaxPhase is the phase's time cap, seconds (default 4).
	MaxPhase float64
	// NotBefore is the earliest start of the estimation window, seconds:
	// e.g. when connections were added, so that their ramp-up is left out.
	NotBefore float64
	// Quantum is the counter's granularity, bytes (default 1500: a packet);
	// the tolerance widens where a window holds few of them.
	Quantum float64
}

// Defaults of methodology 2.
const (
	DefaultTolerance  = 0.03
	DefaultStableRTTs = 6
	DefaultMinWindow  = 1.0
	DefaultMaxPhase   = 4.0
	DefaultQuantum    = 1500
)

// WithDefaults returns p with its zero fields set to the defaults.
func (p Params) WithDefaults() Params {
	if p.Tolerance <= 0 {
		p.Tolerance = DefaultTolerance
	}
	if p.StableRTTs <= 0 {
		p.StableRTTs = DefaultStableRTTs
	}
	if p.MinWindow <= 0 {
		p.MinWindow = DefaultMinWindow
	}
	if p.MaxPhase <= 0 {
		p.MaxPhase = DefaultMaxPhase
	}
	if p.Quantum <= 0 {
		p.Quantum = DefaultQuantum
	}
	if p.RTT < 0 {
		p.RTT = 0
	}
	return p
}

// Window is the length of the stable window the phase needs: several round
// trips, and at least MinWindow.
func (p Params) Window() float64 {
	p = p.WithDefaults()
	return math.Max(p.MinWindow, p.StableRTTs*p.RTT)
}

// Stop reasons.
const (
	StopStable  = "stable"
	StopTimeCap = "time_cap"
)

// Result is the estimate for the samples so far.
type Result struct {
	// Mbps is the goodput over [Start, End], Mbit/s (10^6 bit/s).
	Mbps float64
	// Start and End bound the estimation window, seconds since the phase
	// started; Start is where the ramp-up was found to end.
	Start, End float64
	// Stop says that the phase may end now, for StopReason (stable or
	// time_cap); while false, StopReason is empty and the estimate is
	// provisional.
	Stop       bool
	StopReason string
}

// Estimate is the goodput estimator of methodology 2. samples must be in
// time order (times not decreasing, bytes not decreasing); the phase's
// time so far is the last sample's.
//
// The stable window W = max(MinWindow, StableRTTs × RTT) ends at the last
// sample. The phase is stable when the rates of the two halves of W differ
// by at most Tolerance (widened by two quanta over the bytes of a half, so
// that a slow link is not held to less than its packet granularity), and
// the rates of each quarter of W stay within twice that of W's rate, and
// W's first stretch of max(2 RTT, 200 ms) is not below the rate of the rest
// of W by more than the tolerance (W must not start in the ramp-up's
// tail), and W does not start right after a stall with its catch-up
// (afterStall). Then
// the estimation window starts where the ramp-up ended: the earliest sample
// (not before NotBefore, nor later than the start of W) from which on every
// stretch of max(2 RTT, 200 ms) has a rate no more than half the tolerance
// below W's (see rampEnd). A receiver's rate cannot exceed the bottleneck's, so a
// window that starts earlier would only add the ramp-up's deficit; a
// shaper's initial burst (a rate above the rest) is left out too.
//
// When the phase reaches MaxPhase unstable, it stops with time_cap and the
// window starts where the rate over the stretch before first came within
// 10 % of the rate from there to the end (or, when it never did while the
// shortest window, min(a third of the phase, max(0.5 s, 2 RTT)), was left,
// the shortest window before the end, or the part of it after NotBefore
// when that leaves max(RTT, 0.3 s)), past a dip (dipBelow) that follows
// the ramp-up (afterDip), and ends before a
// trailing hole (intervals read at less than a quarter of the window's
// rate: a retransmission awaited while the data behind it wait in the
// receiver's kernel), when that leaves at least half of the window; a
// late dip with too little after it to be passed ends the window where it
// begins, when the window of the same length before it holds the link's
// rate (beforeDip).
func Estimate(samples []Sample, p Params) Result {
	p = p.WithDefaults()
	n := len(samples)
	if n < 2 {
		return Result{}
	}
	// No window starts before the first sample that counted bytes: the
	// time before it holds the request's round trip and the first
	// packet's way, with nothing to count. On a slow link, full from its
	// first packet, a stable window from the phase's start took them in
	// (in the link emulator at 1 Mbit/s and 20 ms the window [0, 1 s] read 0.926 of 0.965).
	firstByte := 0.0
	for _, s := range samples {
		if s.Bytes > 0 {
			firstByte = s.T
			break
		}
	}
	added := p.NotBefore // connections added: their ramp-up's end
	p.NotBefore = math.Max(p.NotBefore, firstByte)
	end := samples[n-1].T
	w := p.Window()
	res := Result{End: end}
	if end-w >= p.NotBefore && end-w >= 0 && stable(samples, end-w, end, p) {
		start := rampEnd(samples, end-w, end, p)
		res.Start = start
		res.Mbps = rate(samples, start, end)
		res.Stop, res.StopReason = true, StopStable
		return res
	}
	// Provisional (or time-capped) estimate: from the end of the ramp-up,
	// the first time the rate over the stretch before it came within 10 %
	// of the rate from it to the end. Loss recovery makes a receiver's
	// reads come in bunches (nothing while a hole waits for its
	// retransmission, then everything at once), so only a long window
	// averages them out: it starts as early as the ramp-up allows.
	start := end / 2
	smooth := math.Max(2*p.RTT, 0.2)
	// The shortest time-capped window: a third of the phase, or less at
	// long round trips, whose ramp-up takes most of a phase (at 300 ms,
	// 2.3 s of 3.6): max(0.5 s, 2 RTT).
	shortest := math.Min(end/3, math.Max(0.5, 2*p.RTT))
	found := false
	for _, s := range samples {
		if s.T < p.NotBefore || s.T < smooth {
			continue
		}
		if end-s.T < shortest {
			break
		}
		if rate(samples, s.T-smooth, s.T) >= 0.9*rate(samples, s.T, end) {
			start, found = s.T, true
			break
		}
	}
	if end-start < shortest || !found {
		// Still ramping up at the cap: the latest window of the
		// shortest length, or a shorter one after the ramp-up of
		// connections added late, when that leaves max(RTT, 0.3 s).
		// Since v2.9.0 a window is not pushed back to half the phase
		// when they leave less: their ramp-up is a part of the rate,
		// half the phase held most of the first connections' (at
		// 50 Mbit/s and 300 ms, an upload whose connections were added
		// at 2.2 s of 2.7 read 41.8 of 48.3 over [1.8, 2.7]).
		start = math.Max(firstByte, end-shortest)
		if added > start && end-added >= shortestAfter(shortest, p.RTT) {
			start = added
		}
	}
	if start >= end {
		start = end / 2
	}
	start = afterDip(samples, start, end, shortest, p.RTT)
	// A trailing hole: the last intervals, read at less than a quarter of
	// the window's rate, are the receiver waiting for a retransmission
	// that fills a hole while the rest waits in its kernel; the window
	// ends before them (if that leaves at least half of it).
	r := rate(samples, start, end)
	cut := end
	for i := n - 1; i > 0 && samples[i-1].T > start; i-- {
		if rate(samples, samples[i-1].T, samples[i].T) >= r/4 {
			break
		}
		cut = samples[i-1].T
	}
	if cut < end && cut-start >= (end-start)/2 {
		res.End = cut
	}
	res.Start = start
	// Not before connections added (their ramp-up), unless the window
	// already starts before them.
	floor := math.Max(firstByte, math.Min(added, start))
	if a, b, ok := beforeDip(samples, start, res.End, floor, shortestAfter(shortest, p.RTT)); ok {
		res.Start, res.End = a, b
	}
	res.Mbps = rate(samples, res.Start, res.End)
	if end >= p.MaxPhase {
		res.Stop, res.StopReason = true, StopTimeCap
	}
	return res
}

// shortestAfter is the shortest a time-capped window may be made by
// leaving out what precedes it (a dip, connections' ramp-up):
// max(RTT, 0.3 s), within the shortest window.
func shortestAfter(shortest, rtt float64) float64 {
	return math.Min(shortest, math.Max(rtt, 0.3))
}

// afterDip moves a time-capped window's start past a dip that follows the
// ramp-up: the end of the last interval between samples, in [start,
// end-shortest], read at less than half the rate of [start, end]. BBR
// drains the queue its start-up filled by sending at a third of the rate
// for about a round trip, and a loss repaired after the start-up stalls
// the sender as long: at 300 ms either is a tenth of a window of 3 s that
// reads the link. start when there is none.
//
// Since v2.6.0 a dip is a run of such intervals, and the last one, when
// it ends less than shortest but at least max(RTT, 0.3 s) before the end,
// is passed too if the rate after it is at least the window's (not a
// trailing hole: see Estimate): the sender paused (at 300 ms and
// 200 Mbit/s BBR's drain, 0.2 s at a third of the rate, came in the last
// 0.6 s in three of six runs, which read 137 to 175 of 193). When the
// interval right after it reads more than the median interval after it
// by over 10 %, that catch-up (what waited, in a link emulator's stalled
// writer, behind a hole, came at once) is passed as well, if that leaves
// max(RTT, 0.3 s): a window that starts with it reads too much (213 of
// 193 at 20 ms), one that holds the dip reads the stall. Since v2.7.0 so
// is an interval right after the dip that reads less than that median by
// over 10 %: the dip ended inside it (at 300 ms, 200 Mbit/s: 150 of 193
// after a stall, and the window read 185.8). Since v2.12.0 every dip
// passed takes its catch-up along (catchUp), a dip still going on at
// end-minAfter is not passed, nor one after which the rest reads below
// the window's rate (a trailing hole: a window moved past a stall and its
// catch-up onto a stall at the phase's end read 0.00 of 16).
func afterDip(samples []Sample, start, end, shortest, rtt float64) float64 {
	minAfter := shortestAfter(shortest, rtt)
	r := rate(samples, start, end)
	ds := dips(samples, start, end, end-minAfter, dipBelow(samples, start, end))
	out := start
	caught := false // the interval after the last dip is a catch-up
	for _, d := range ds {
		b := samples[d.last].T
		if caught = catchUp(samples, d, r); caught {
			b = samples[d.last+1].T
		}
		if end-b >= shortest && rate(samples, b, end) >= r { // not a trailing hole
			out = b
		}
	}
	if n := len(ds); n > 0 {
		i := ds[n-1].last
		b := samples[i].T
		if i+1 < len(samples) && samples[i+1].T < end {
			next := samples[i+1].T
			switch r1, m := rate(samples, b, next), medianRate(samples[i+1:]); {
			case caught:
				// A catch-up: what waited came at once. The window
				// starts after it, if that leaves enough.
				if end-next < minAfter-1e-6 {
					return out
				}
				b = next
			case r1 < 0.9*m && end-next >= minAfter-1e-6:
				// Since v2.7.0: the dip ended inside this interval,
				// which reads part of it; when too little would be
				// left, the window starts at the dip's end all the same.
				b = next
			}
		}
		if b > out && rate(samples, b, end) >= r { // not a trailing hole
			return b
		}
	}
	return out
}

// beforeDip moves a time-capped window [start, end] back to end where a
// late dip begins (since v2.10.0): the window's last dip (dips), less than
// minAfter before the end, so that afterDip cannot pass it, after which
// the rate came back (its intervals to the end, together, read at least
// nine tenths of the window's median interval). The window keeps its
// length; it moves only when it then starts at floor or later (the first
// byte; connections added, unless the window already held their ramp-up),
// reads within 5 % of the rate after the dip (a rate that steps down, a
// shaper's burst ending, would read the burst), and holds no interval
// below dipBelow (another dip, the ramp-up) or above 1.1 times the median
// (a catch-up, what waited behind a hole, whose stall the dip may be);
// else it stays. At 300 ms and 200 Mbit/s, BBR's drain ends its
// start-up three round trips after the link is full, about 3 s into a
// phase of 3.3 to 3.7 s, and may come in its last 0.6 s with 0.2 s after
// it: one upload's window read 161.6 of 193 over [2.71, 3.31] with the
// drain at [2.91, 3.11], and [2.31, 2.91] before it reads the link.
func beforeDip(samples []Sample, start, end, floor, minAfter float64) (float64, float64, bool) {
	low := dipBelow(samples, start, end)
	ds := dips(samples, start, end, end, low)
	if len(ds) == 0 {
		return start, end, false
	}
	d := ds[len(ds)-1]
	dipStart, dipEnd := samples[d.first-1].T, samples[d.last].T
	m := medianIn(samples, start, end)
	after := rate(samples, dipEnd, end)
	if end-dipEnd >= minAfter || end-dipEnd <= 1e-6 || after < 0.9*m {
		return start, end, false
	}
	a := dipStart - (end - start)
	if a < floor-1e-6 || a < 0 {
		return start, end, false
	}
	// The rate before the dip must be the rate after it: a shaper's
	// burst that ends, cross traffic that arrives, a policer are a rate
	// that steps down, read too high before the step.
	if before := rate(samples, a, dipStart); math.Abs(before-after) > 0.05*after {
		return start, end, false
	}
	for i := 1; i < len(samples); i++ {
		x, y := samples[i-1].T, samples[i].T
		if y <= a+1e-6 || y <= x {
			continue
		}
		if x >= dipStart-1e-6 {
			break
		}
		if r := rate(samples, math.Max(x, a), y); r < low || r > 1.1*m {
			return start, end, false
		}
	}
	return a, dipStart, true
}

// dip is a run of intervals (samples[i-1], samples[i]], i from first to
// last.
type dip struct{ first, last int }

// dips lists the dips of the window [start, end] whose intervals end by
// until: runs of intervals below low (the window's dipBelow) that hold one below half the
// window's rate (a dip before v2.10.0) or, since v2.11.0, at least two
// (BBR's drain, a round trip at 300 ms, is two or three intervals below
// three quarters of the median; one such interval alone may be the
// ordinary variation of a link whose rate swings from one 100-ms interval
// to the next, and passing it would read such a link high).
func dips(samples []Sample, start, end, until, low float64) []dip {
	r := rate(samples, start, end)
	var out []dip
	cur, strong := dip{-1, -1}, false
	flush := func() {
		if cur.last >= 0 && (strong || cur.last-cur.first >= 1) {
			out = append(out, cur)
		}
		cur, strong = dip{-1, -1}, false
	}
	for i := 1; i < len(samples); i++ {
		a, b := samples[i-1].T, samples[i].T
		if a < start-1e-6 || b <= a { // start may be end - shortest, a hair after a sample
			continue
		}
		x := rate(samples, a, b)
		if b > until+1e-6 {
			if x < low { // the run goes on past until: it does not end by then
				cur, strong = dip{-1, -1}, false
			}
			break
		}
		if x >= low {
			flush()
			continue
		}
		if cur.last < 0 {
			cur.first = i
		}
		cur.last = i
		strong = strong || x < r/2
	}
	flush()
	return out
}

// dipBelow is the rate under which an interval of the window [a, b] is
// low: half the window's rate, or since v2.10.0, when that is more, the
// median of its intervals less a quarter of it, or (since v2.11.0) less
// three robust standard deviations of them (1.4826 times their median
// absolute deviation) when that is more.
// BBR's drain after its start-up sends at a third of the rate for a round
// trip while the bottleneck's queue still feeds the receiver, which reads
// half to two thirds of the link then (at 200 Mbit/s and 300 ms: 111 and
// 87 in an upload's last 0.6 s, which read 161.6 of 193; 138 and 130 at
// the start of a download's, 173.6): below the median by a third or more,
// but not below half a window that holds them. On a link whose rate
// swings from one interval to the next, an interval a quarter below the
// median is its ordinary variation, not a stall: leaving it out would
// read the link high (at ±30 % around 100, v2.10.0's quarter alone read
// a mean of 102.09 over 500 simulated phases; 100.38 since v2.11.0,
// 100.30 before v2.10.0: TestDipsNoBias).
func dipBelow(samples []Sample, a, b float64) float64 {
	rs := ratesOf(within(samples, a, b))
	m := median(rs)
	dev := make([]float64, len(rs))
	for i, x := range rs {
		dev[i] = math.Abs(x - m)
	}
	return math.Max(rate(samples, a, b)/2, m-math.Max(0.25*m, 3*1.4826*median(dev)))
}

// within is the part of samples within [a, b].
func within(samples []Sample, a, b float64) []Sample {
	i, j := 0, len(samples)
	for i < j && samples[i].T < a-1e-6 {
		i++
	}
	for j > i && samples[j-1].T > b+1e-6 {
		j--
	}
	return samples[i:j]
}

// medianIn is the median rate of the intervals between samples within
// [a, b].
func medianIn(samples []Sample, a, b float64) float64 {
	return median(ratesOf(within(samples, a, b)))
}

// ratesOf is the rate of every interval between samples (of some time).
func ratesOf(samples []Sample) []float64 {
	var rs []float64
	for i := 1; i < len(samples); i++ {
		if samples[i].T > samples[i-1].T {
			rs = append(rs, rate(samples, samples[i-1].T, samples[i].T))
		}
	}
	return rs
}

// median is the upper median of xs (0 when empty); it sorts xs in place.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	return xs[len(xs)/2]
}

// medianRate is the median rate of the intervals between samples.
func medianRate(samples []Sample) float64 { return median(ratesOf(samples)) }

// tol is the tolerance for a stretch that holds bytes, widened by two quanta.
func tol(p Params, bytes float64) float64 {
	if bytes <= 0 {
		return math.Inf(1)
	}
	return p.Tolerance + 2*p.Quantum/bytes
}

// stable checks the window [a, b]: halves within the tolerance, quarters
// within twice it, of the window's rate, and its first stretch of
// max(2 RTT, 200 ms) not below the rate of the rest by more than the
// tolerance.
func stable(samples []Sample, a, b float64, p Params) bool {
	total := at(samples, b) - at(samples, a)
	if total <= 0 {
		return false
	}
	r := total / (b - a)
	mid := (a + b) / 2
	r1, r2 := rate(samples, a, mid), rate(samples, mid, b)
	half := total / 2
	if math.Abs(r2-r1)/math.Max(r1, r2) > tol(p, half) {
		return false
	}
	q := (b - a) / 4
	for i := 0; i < 4; i++ {
		rq := rate(samples, a+float64(i)*q, a+float64(i+1)*q)
		if math.Abs(rq*1e6/8-r)/r > 2*tol(p, total/4) {
			return false
		}
	}
	// The window must not start in the ramp-up's tail: its first stretch
	// is not below the rate of the rest by more than the tolerance.
	stretch := math.Min(math.Max(2*p.RTT, 0.2), (b-a)/2)
	first := (at(samples, a+stretch) - at(samples, a)) / stretch
	rest := (at(samples, b) - at(samples, a+stretch)) / (b - a - stretch)
	if first < rest*(1-tol(p, rest*stretch)) {
		return false
	}
	return !afterStall(samples, a, r*8/1e6)
}

// afterStall says whether a window from a, whose rate is r, starts right
// after a stall with the catch-up that ends it (since v2.12.0): the last
// interval between samples that ends by a (or the one a is inside: real
// samples are not evenly spaced) reads less than a quarter of r,
// and the first after it that does not (the stall may go on into the
// window) more than r by over 10 %. What the reader did not
// read in the stall came with the catch-up, so that the window holds the
// bytes of time before it (simulated 16 Mbit/s whose 100-ms reads stall
// at random, one in three: a stable window [0.9, 1.9] after a stall read
// 19.2).
func afterStall(samples []Sample, a, r float64) bool {
	k := 0
	for k+1 < len(samples) && samples[k+1].T <= a+1e-6 {
		k++
	}
	before := k > 0 && rate(samples, samples[k-1].T, samples[k].T) < r/4
	// a inside an interval (the window's start is end minus its length,
	// and real samples are not evenly spaced): that one may be the stall.
	inside := a > samples[k].T+1e-6 && k+1 < len(samples) && rate(samples, samples[k].T, samples[k+1].T) < r/4
	if !before && !inside {
		return false
	}
	for ; k+1 < len(samples); k++ { // the stall may go on into the window
		if x := rate(samples, samples[k].T, samples[k+1].T); x >= r/4 {
			return x > 1.1*r
		}
	}
	return false
}

// rampEnd is the earliest sample time t in [NotBefore, a] such that every
// stretch of max(2 RTT, 200 ms) from t to a has a rate not below the rate
// of [a, b] by more than half the tolerance (nor above it by more than
// twice the tolerance; both widened by two quanta), and the rate of [t, b] is within the tolerance of that
// of [a, b]; a when none.
func rampEnd(samples []Sample, a, b float64, p Params) float64 {
	ref := (at(samples, b) - at(samples, a)) / (b - a)
	stretch := math.Max(2*p.RTT, 0.2)
	best := a
	// Scan backwards from a: the window grows while the stretches before
	// it still belong to the plateau.
	for i := len(samples) - 1; i >= 0; i-- {
		t := samples[i].T
		if t > a {
			continue
		}
		if t < p.NotBefore || t+stretch > b {
			break
		}
		seg := (at(samples, t+stretch) - at(samples, t)) / stretch
		q := 2 * p.Quantum / (ref * stretch)
		if seg < ref*(1-p.Tolerance/2-q) || seg > ref*(1+2*p.Tolerance+q) {
			break
		}
		whole := (at(samples, b) - at(samples, t)) / (b - t)
		if math.Abs(whole-ref)/ref > tol(p, ref*(b-t)) {
			break
		}
		best = t
	}
	return best
}

// at returns the cumulative bytes at time t, interpolating linearly between
// samples (0 at time 0 before the first sample).
func at(samples []Sample, t float64) float64 {
	prevT, prevB := 0.0, 0.0
	for _, x := range samples {
		if x.T >= t {
			if x.T == prevT {
				return float64(x.Bytes)
			}
			return prevB + (float64(x.Bytes)-prevB)*(t-prevT)/(x.T-prevT)
		}
		prevT, prevB = x.T, float64(x.Bytes)
	}
	return prevB
}

// rate is the goodput between times a and b, Mbit/s.
func rate(samples []Sample, a, b float64) float64 {
	if b <= a {
		return 0
	}
	return (at(samples, b) - at(samples, a)) * 8 / 1e6 / (b - a)
}

// Rate is the goodput between times a and b of samples, Mbit/s,
// interpolating linearly between samples.
func Rate(samples []Sample, a, b float64) float64 { return rate(samples, a, b) }

// catchUp says whether the interval right after dip d of a window whose
// rate is r is a catch-up: what waited came at once, so that a window
// that starts with it reads the bytes of the dip too. It is one that
// reads more than the median interval from there on by over 10 %, or
// (since v2.12.0), after a stall (an interval of the dip below a quarter
// of r: a reader that did not read, a hole awaiting its retransmission),
// more than r by over 10 %. After a series of stalls most intervals are
// catch-ups, and so is their median: the median alone passed them, and a
// window that started after a stall and ended before the next read 1.33
// times a reader's rate (simulated 16 Mbit/s whose 100-ms reads stall at
// random, one in three: TestStallsNoBias).
func catchUp(samples []Sample, d dip, r float64) bool {
	i := d.last
	if i+1 >= len(samples) {
		return false
	}
	m := medianRate(samples[i+1:])
	for j := d.first; j <= d.last; j++ {
		if rate(samples, samples[j-1].T, samples[j].T) < r/4 {
			m = math.Min(m, r)
			break
		}
	}
	return rate(samples, samples[i].T, samples[i+1].T) > 1.1*m
}
