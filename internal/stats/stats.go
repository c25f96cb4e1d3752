// Package stats holds Neubot's statistics: the one percentile method used by
// the records and the analytics alike (Quantile), the distribution-free
// confidence interval of a median (MedianCI), the two-sample
// Kolmogorov–Smirnov test of the differential tests (exact and asymptotic
// p-values), the decision rule that combines it with a difference threshold
// (as Glasnost and Wehe do), and the Wilson score interval of a proportion.
package stats

import (
	"math"
	"sort"
)

// Median returns the median of xs (0 for none) without changing xs:
// Quantile(xs, 0.5), the mean of the two middle values when len(xs) is even.
func Median(xs []float64) float64 { return Quantile(xs, 0.5) }

// Quantile returns the p-quantile of xs (0 for none) without changing xs,
// by Neubot's one percentile method: linear interpolation between order
// statistics, Hyndman and Fan's type 7 (R's and NumPy's default). With the
// values sorted, x[0] ≤ … ≤ x[n-1], and h = (n-1)·p, it is
// x[⌊h⌋] + (h-⌊h⌋)·(x[⌊h⌋+1] - x[⌊h⌋]). The record's rtt_median_ms and
// every percentile of the analytics (analytics.QuantileSQL, the same
// formula in ClickHouse) use it.
func Quantile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return SortedQuantile(s, p)
}

// SortedQuantile is Quantile of values already sorted in increasing order.
func SortedQuantile(s []float64, p float64) float64 {
	n := len(s)
	if n == 0 {
		return 0
	}
	p = math.Max(0, math.Min(1, p))
	h := float64(n-1) * p
	lo := int(math.Floor(h))
	if lo >= n-1 {
		return s[n-1]
	}
	return s[lo] + (h-float64(lo))*(s[lo+1]-s[lo])
}

// MedianCIExact is the largest n for which MedianCIRanks sums the binomial
// distribution exactly; above it uses the normal approximation, which is
// then within one rank of the exact answer.
const MedianCIExact = 1000

// MedianCIRanks returns the 1-based ranks lo ≤ hi of the order statistics
// that bound a distribution-free 95% confidence interval of the median of
// n independent values: [x(lo), x(hi)] covers the population median with
// probability 1 - 2·P(B ≤ lo-1), B ~ Binomial(n, 1/2), the largest lo with
// P(B ≤ lo-1) ≤ 0.025 and hi = n+1-lo. Below 6 values no interval reaches
// 95%: it returns (1, n), the range, whose coverage is 1 - 2^(1-n)
// (e.g. 87.5% for 5). 0, 0 for none.
func MedianCIRanks(n int) (lo, hi int) {
	if n <= 0 {
		return 0, 0
	}
	if n > MedianCIExact {
		lo = int(math.Floor(float64(n)/2 - 0.98*math.Sqrt(float64(n)) + 0.5))
		return lo, n + 1 - lo
	}
	// P(B ≤ k) summed in logs: C(n,k)/2^n.
	cdf, lo := 0.0, 1
	logC := -float64(n) * math.Ln2 // log(C(n,0)/2^n)
	for k := 0; k < n/2; k++ {
		cdf += math.Exp(logC)
		if cdf > 0.025 {
			break
		}
		lo = k + 1 // P(B ≤ lo-1) = cdf ≤ 0.025
		logC += math.Log(float64(n-k)) - math.Log(float64(k+1))
	}
	return lo, n + 1 - lo
}

// MedianCI returns the 95% confidence interval of the median of xs by
// MedianCIRanks (NaN, NaN for none).
func MedianCI(xs []float64) (lo, hi float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	l, h := MedianCIRanks(len(s))
	return s[l-1], s[h-1]
}

// KS is the result of a two-sample Kolmogorov–Smirnov test.
type KS struct {
	D     float64 // sup |F1 - F2| of the empirical distribution functions
	P     float64 // two-sided p-value under H0: same distribution
	Exact bool    // P is exact (small samples); otherwise asymptotic
}

// ExactLimit is the largest n*m for which KSTest computes the exact p-value.
const ExactLimit = 10000

// KSTest runs the two-sided two-sample Kolmogorov–Smirnov test on x and y.
// The exact p-value counts the monotone lattice paths from (0,0) to (n,m)
// that stay strictly inside the observed statistic (Hodges 1957), assuming
// no ties; above ExactLimit it uses Kolmogorov's limit distribution with
// Stephens' small-sample correction. With an empty sample it returns D 0,
// P 1.
func KSTest(x, y []float64) KS {
	n, m := len(x), len(y)
	if n == 0 || m == 0 {
		return KS{P: 1}
	}
	xs := append([]float64(nil), x...)
	ys := append([]float64(nil), y...)
	sort.Float64s(xs)
	sort.Float64s(ys)
	// D in integer units of 1/(n*m): |i*m - j*n| after i of x and j of y;
	// equal values advance both samples together, so ties are not steps.
	var i, j, k int
	for i < n && j < m {
		v := math.Min(xs[i], ys[j])
		for i < n && xs[i] == v {
			i++
		}
		for j < m && ys[j] == v {
			j++
		}
		k = max(k, abs(i*m-j*n))
	}
	d := float64(k) / float64(n*m)
	if n*m <= ExactLimit {
		return KS{D: d, P: exactP(n, m, k), Exact: true}
	}
	en := float64(n*m) / float64(n+m)
	return KS{D: d, P: Kolmogorov((math.Sqrt(en) + 0.12 + 0.11/math.Sqrt(en)) * d)}
}

func abs(a int) int {
	if a < 0 {
		return -a
	}
	return a
}

// exactP is P(max |i*m - j*n| >= k) over the C(n+m, n) equally likely
// orderings of the two samples. It walks the lattice with probabilities
// rather than counts, so nothing overflows: from (i, j) the next value is
// from x with probability (n-i)/(n-i+m-j).
func exactP(n, m, k int) float64 {
	if k == 0 {
		return 1
	}
	u := make([]float64, m+1) // u[j]: probability of being at (i, j) without having left
	for i := 0; i <= n; i++ {
		for j := 0; j <= m; j++ {
			if i == 0 && j == 0 {
				u[0] = 1
				continue
			}
			var p float64
			if i > 0 {
				p += u[j] * float64(n-i+1) / float64(n-i+1+m-j) // from (i-1, j)
			}
			if j > 0 {
				p += u[j-1] * float64(m-j+1) / float64(n-i+m-j+1) // from (i, j-1)
			}
			if abs(i*m-j*n) >= k {
				p = 0 // left the band: these orderings reach D >= observed
			}
			u[j] = p
		}
	}
	return clamp01(1 - u[m])
}

// Kolmogorov is Q(λ) = P(K > λ) of Kolmogorov's limit distribution:
// 2 Σ (-1)^(k-1) exp(-2 k² λ²), or, for small λ where that series
// converges slowly, 1 - √(2π)/λ Σ exp(-(2k-1)² π² / (8 λ²)).
func Kolmogorov(lambda float64) float64 {
	if lambda <= 0 {
		return 1
	}
	if lambda < 1.18 {
		var s float64
		for k := 1; k <= 20; k++ {
			s += math.Exp(-float64((2*k-1)*(2*k-1)) * math.Pi * math.Pi / (8 * lambda * lambda))
		}
		return clamp01(1 - math.Sqrt(2*math.Pi)/lambda*s)
	}
	var s float64
	sign := 1.0
	for k := 1; k <= 100; k++ {
		t := math.Exp(-2 * float64(k*k) * lambda * lambda)
		s += sign * t
		if t < 1e-16 {
			break
		}
		sign = -sign
	}
	return clamp01(2 * s)
}

func clamp01(p float64) float64 { return math.Max(0, math.Min(1, p)) }

// Outcomes of a differential comparison.
const (
	Differentiation = "differentiation"
	None            = "none"
	Inconclusive    = "inconclusive"
)

// Criteria are the thresholds of the decision.
type Criteria struct {
	// Alpha is the significance level of the KS test.
	Alpha float64
	// MinDiff is the smallest relative shortfall of the tested class's
	// median against the control's that counts as differentiation
	// (0.25: at least 25% slower).
	MinDiff float64
	// MinSamples is the fewest samples of each side to decide at all.
	MinSamples int
}

// Comparison is the decision on one tested sample against one control.
type Comparison struct {
	N, ControlN   int
	Median        float64
	ControlMedian float64
	// DiffPct is how much lower the tested median is than the control's,
	// in percent of the control's (negative: the tested class was faster).
	DiffPct float64
	KS      KS
	Outcome string
}

// Compare decides whether tested is slower than control: differentiation
// when the KS test rejects "same distribution" at Alpha and the tested
// median is at least MinDiff below the control's; none when the KS test
// does not reject, or rejects on a difference below the threshold (or in
// the tested class's favour); inconclusive when the medians differ by the
// threshold but the samples are too noisy for the KS test to agree, or there
// are too few samples.
func Compare(tested, control []float64, c Criteria) Comparison {
	r := Comparison{N: len(tested), ControlN: len(control), Median: Median(tested), ControlMedian: Median(control)}
	if r.ControlMedian > 0 {
		r.DiffPct = (r.ControlMedian - r.Median) / r.ControlMedian * 100
	}
	r.KS = KSTest(tested, control)
	big := r.DiffPct >= c.MinDiff*100
	switch {
	case r.N < c.MinSamples || r.ControlN < c.MinSamples || r.ControlMedian <= 0:
		r.Outcome = Inconclusive
	case r.KS.P < c.Alpha && big:
		r.Outcome = Differentiation
	case big:
		r.Outcome = Inconclusive
	default:
		r.Outcome = None
	}
	return r
}

// Combine is the outcome of several comparisons: differentiation if any
// says so, none if all say none, inconclusive otherwise (and for none).
func Combine(outcomes ...string) string {
	all := len(outcomes) > 0
	for _, o := range outcomes {
		if o == Differentiation {
			return Differentiation
		}
		all = all && o == None
	}
	if all {
		return None
	}
	return Inconclusive
}

// Wilson returns the Wilson score interval of the proportion k/n at the
// normal quantile z (1.96 for 95%); (0, 1) when n is 0.
func Wilson(k, n uint64, z float64) (lo, hi float64) {
	if n == 0 {
		return 0, 1
	}
	nf := float64(n)
	p := float64(k) / nf
	z2 := z * z
	centre := (p + z2/(2*nf)) / (1 + z2/nf)
	half := z / (1 + z2/nf) * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	return clamp01(centre - half), clamp01(centre + half)
}

// BenjaminiHochberg returns the Benjamini–Hochberg adjusted p-values
// (q-values) of p, in the same order: q_(i) = min over j >= i of
// p_(j) * m / j for the sorted p-values, capped at 1. Rejecting every
// hypothesis whose q is at most Q controls the false discovery rate (the
// expected share of false rejections among the rejections) at Q, for
// independent or positively dependent tests (Benjamini and Hochberg 1995).
func BenjaminiHochberg(p []float64) []float64 {
	m := len(p)
	idx := make([]int, m)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return p[idx[a]] < p[idx[b]] })
	q := make([]float64, m)
	prev := 1.0
	for r := m - 1; r >= 0; r-- {
		i := idx[r]
		v := math.Min(prev, p[i]*float64(m)/float64(r+1))
		q[i] = clamp01(v)
		prev = v
	}
	return q
}

// BinomialTail is P(X >= k) for X ~ Binomial(n, p): the one-sided p-value
// of k successes in n trials when each has probability p under the null.
func BinomialTail(k, n uint64, p float64) float64 {
	if k == 0 {
		return 1
	}
	if k > n {
		return 0
	}
	// Sum the pmf from k to n in log space (lgamma), stable for n in the
	// thousands.
	lp, lq := math.Log(p), math.Log1p(-p)
	lgn, _ := math.Lgamma(float64(n) + 1)
	var s float64
	for i := k; i <= n; i++ {
		lgi, _ := math.Lgamma(float64(i) + 1)
		lgni, _ := math.Lgamma(float64(n-i) + 1)
		s += math.Exp(lgn - lgi - lgni + float64(i)*lp + float64(n-i)*lq)
	}
	return clamp01(s)
}
