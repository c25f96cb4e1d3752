package stats

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// TestKSSeparated: fully separated samples of 3 and 3 give D 1 and the
// exact p-value 2 / C(6,3) = 0.1 (two of the 20 orderings are as extreme).
func TestKSSeparated(t *testing.T) {
	r := KSTest([]float64{1, 2, 3}, []float64{4, 5, 6})
	if r.D != 1 || !r.Exact || !near(r.P, 0.1, 1e-12) {
		t.Fatalf("got %+v, want D 1, exact P 0.1", r)
	}
	if r := KSTest([]float64{1, 2}, nil); r.P != 1 {
		t.Fatalf("empty sample: %+v", r)
	}
	// Identical samples: D 0, P 1.
	if r := KSTest([]float64{1, 2, 3}, []float64{3, 2, 1}); r.D != 0 || r.P != 1 {
		t.Fatalf("same samples: %+v", r)
	}
}

// gnedenkoKorolyuk is the closed form of P(D >= k/n) for two samples of n:
// 2 Σ_{j>=1} (-1)^(j-1) C(2n, n-jk) / C(2n, n), in exact rationals.
func gnedenkoKorolyuk(n, k int) float64 {
	total := new(big.Int).Binomial(int64(2*n), int64(n))
	sum := new(big.Int)
	for j := 1; n-j*k >= 0; j++ {
		term := new(big.Int).Binomial(int64(2*n), int64(n-j*k))
		if j%2 == 1 {
			sum.Add(sum, term)
		} else {
			sum.Sub(sum, term)
		}
	}
	sum.Mul(sum, big.NewInt(2))
	f, _ := new(big.Rat).SetFrac(sum, total).Float64()
	return f
}

func TestExactEqualSizes(t *testing.T) {
	for _, n := range []int{5, 10, 24, 40} {
		for k := 1; k <= n; k++ {
			got, want := exactP(n, n, k*n), math.Min(1, gnedenkoKorolyuk(n, k))
			if !near(got, want, 1e-9) {
				t.Errorf("n=%d k=%d: exact %g, Gnedenko-Korolyuk %g", n, k, got, want)
			}
		}
	}
}

// TestExactAgainstEnumeration checks unequal sizes against the
// permutation distribution, enumerated.
func TestExactAgainstEnumeration(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, sz := range [][2]int{{5, 4}, {3, 7}, {6, 6}, {8, 5}} {
		n, m := sz[0], sz[1]
		pool := make([]float64, n+m)
		for i := range pool {
			pool[i] = rng.Float64()
		}
		x, y := pool[:n], pool[n:]
		obs := KSTest(x, y)
		// Every way of choosing which n of the pooled values are x.
		var extreme, all int
		for mask := 0; mask < 1<<(n+m); mask++ {
			if popcount(mask) != n {
				continue
			}
			var a, b []float64
			for i, v := range pool {
				if mask&(1<<i) != 0 {
					a = append(a, v)
				} else {
					b = append(b, v)
				}
			}
			all++
			if KSTest(a, b).D >= obs.D-1e-12 {
				extreme++
			}
		}
		if want := float64(extreme) / float64(all); !near(obs.P, want, 1e-9) {
			t.Errorf("n=%d m=%d D=%.3f: exact %g, enumerated %g", n, m, obs.D, obs.P, want)
		}
	}
}

func popcount(x int) int {
	c := 0
	for ; x != 0; x &= x - 1 {
		c++
	}
	return c
}

// TestKolmogorov checks the limit distribution against its tabulated
// quantiles: P(K > 1.2239) = 0.10, P(K > 1.3581) = 0.05, P(K > 1.6276) =
// 0.01, and Q(1) = 0.2700.
func TestKolmogorov(t *testing.T) {
	for _, c := range []struct{ lambda, q float64 }{
		{1.2239, 0.10}, {1.3581, 0.05}, {1.6276, 0.01}, {1.0, 0.26999967}, {0.5, 0.96394524}, {2.0, 0.00067093},
	} {
		if got := Kolmogorov(c.lambda); !near(got, c.q, 2e-4) {
			t.Errorf("Q(%g) = %g, want %g", c.lambda, got, c.q)
		}
	}
	// The two series agree where they meet.
	if a, b := Kolmogorov(1.1799999), Kolmogorov(1.18); !near(a, b, 1e-6) {
		t.Errorf("discontinuous at 1.18: %g vs %g", a, b)
	}
}

// TestAsymptoticNearExact: above ExactLimit the asymptotic p-value is
// close to the exact one of the same D (a little lower: the exact P(D >= d)
// includes the mass of the lattice point d itself).
func TestAsymptoticNearExact(t *testing.T) {
	n := 120 // 14,400 > ExactLimit
	for _, k := range []int{12, 18, 24} {
		exact := exactP(n, n, k*n)
		en := float64(n) / 2
		d := float64(k) / float64(n)
		asym := Kolmogorov((math.Sqrt(en) + 0.12 + 0.11/math.Sqrt(en)) * d)
		if !near(asym, exact, 0.03) {
			t.Errorf("D=%g: asymptotic %g, exact %g", d, asym, exact)
		}
	}
	x := make([]float64, 120)
	y := make([]float64, 120)
	for i := range x {
		x[i], y[i] = float64(i), float64(i)+30.5
	}
	if r := KSTest(x, y); r.Exact || !near(r.D, 31.0/120, 1e-12) || r.P > 0.001 {
		t.Fatalf("large samples: %+v", r)
	}
}

func TestWilson(t *testing.T) {
	for _, c := range []struct {
		k, n   uint64
		lo, hi float64
	}{
		{5, 10, 0.2366, 0.7634}, // the textbook example
		{0, 10, 0, 0.2775},
		{10, 10, 0.7225, 1},
		{81, 263, 0.2553, 0.3662}, // Newcombe (1998), example of 81/263
	} {
		lo, hi := Wilson(c.k, c.n, 1.96)
		if !near(lo, c.lo, 1e-4) || !near(hi, c.hi, 1e-4) {
			t.Errorf("Wilson(%d/%d) = (%.4f, %.4f), want (%.4f, %.4f)", c.k, c.n, lo, hi, c.lo, c.hi)
		}
	}
	if lo, hi := Wilson(0, 0, 1.96); lo != 0 || hi != 1 {
		t.Errorf("no tests: (%g, %g)", lo, hi)
	}
}

func TestCompare(t *testing.T) {
	crit := Criteria{Alpha: 0.05, MinDiff: 0.25, MinSamples: 8}
	seq := func(from, step float64, n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = from + step*float64(i)
		}
		return out
	}
	cases := []struct {
		name            string
		tested, control []float64
		want            string
	}{
		{"throttled to 20%", seq(3.9, 0.01, 20), seq(19.5, 0.05, 20), Differentiation},
		{"same", seq(19, 0.1, 20), seq(19.05, 0.1, 20), None},
		{"significant but small", seq(18, 0.01, 20), seq(19.5, 0.01, 20), None},
		{"tested faster", seq(25, 0.1, 20), seq(19, 0.1, 20), None},
		{"too few", seq(4, 0.1, 5), seq(19, 0.1, 20), Inconclusive},
		{"big but noisy", []float64{1, 30, 2, 28, 3, 26, 4, 5, 6, 7}, []float64{8, 9, 10, 11, 12, 1, 29, 27, 25, 24}, Inconclusive},
	}
	for _, c := range cases {
		if got := Compare(c.tested, c.control, crit); got.Outcome != c.want {
			t.Errorf("%s: %s (%+v), want %s", c.name, got.Outcome, got, c.want)
		}
	}
	if Combine(None, Differentiation) != Differentiation || Combine(None, None) != None ||
		Combine(None, Inconclusive) != Inconclusive || Combine() != Inconclusive {
		t.Error("Combine")
	}
}

func TestQuantileType7(t *testing.T) {
	xs := []float64{4, 1, 3, 2}
	for _, c := range []struct{ p, want float64 }{{0, 1}, {0.5, 2.5}, {0.25, 1.75}, {0.9, 3.7}, {1, 4}} {
		if got := Quantile(xs, c.p); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("Quantile(%v, %v) = %v, want %v", xs, c.p, got, c.want)
		}
	}
	if Median([]float64{5, 1, 3}) != 3 || Median([]float64{1, 2, 3, 10}) != 2.5 || Median(nil) != 0 {
		t.Fatal("Median is not Quantile(0.5)")
	}
	if xs[0] != 4 {
		t.Fatal("Quantile changed its argument")
	}
}

// TestMedianCIRanks: the ranks are those of the binomial tables (e.g.
// n = 10: x(2), x(9), 97.9%), coverage is at least 95% from 6 values on, and
// the normal approximation above MedianCIExact agrees with the exact sum.
func TestMedianCIRanks(t *testing.T) {
	for _, c := range []struct{ n, lo, hi int }{{1, 1, 1}, {5, 1, 5}, {6, 1, 6}, {10, 2, 9}, {20, 6, 15}, {100, 40, 61}} {
		if lo, hi := MedianCIRanks(c.n); lo != c.lo || hi != c.hi {
			t.Errorf("n=%d: ranks %d, %d; want %d, %d", c.n, lo, hi, c.lo, c.hi)
		}
	}
	binomCDF := func(n, k int) float64 { // P(B ≤ k)
		var s float64
		for i := 0; i <= k; i++ {
			lg, _ := math.Lgamma(float64(n + 1))
			a, _ := math.Lgamma(float64(i + 1))
			b, _ := math.Lgamma(float64(n - i + 1))
			s += math.Exp(lg - a - b - float64(n)*math.Ln2)
		}
		return s
	}
	for n := 6; n <= 300; n++ {
		lo, _ := MedianCIRanks(n)
		if cov := 1 - 2*binomCDF(n, lo-1); cov < 0.95 {
			t.Fatalf("n=%d: coverage %.4f < 0.95", n, cov)
		}
		if cov := 1 - 2*binomCDF(n, lo); cov >= 0.95 {
			t.Fatalf("n=%d: rank %d is not the tightest (rank %d covers %.4f)", n, lo, lo+1, cov)
		}
	}
	exact, _ := MedianCIRanks(MedianCIExact)
	approx := int(math.Floor(float64(MedianCIExact)/2 - 0.98*math.Sqrt(MedianCIExact) + 0.5))
	if d := exact - approx; d < -1 || d > 1 {
		t.Fatalf("n=%d: exact rank %d, normal approximation %d", MedianCIExact, exact, approx)
	}
	if lo, hi := MedianCI([]float64{9, 1, 8, 2, 7, 3, 6, 4, 5, 10}); lo != 2 || hi != 9 {
		t.Fatalf("MedianCI of 1..10 = %v, %v; want 2, 9", lo, hi)
	}
}

// TestBenjaminiHochberg checks the adjusted p-values against R's
// p.adjust(p, "BH") of the same vector, hand-checked: sorted p times m/rank,
// then the running minimum from the largest.
func TestBenjaminiHochberg(t *testing.T) {
	p := []float64{0.01, 0.04, 0.03, 0.005, 0.5, 0.2}
	// sorted: 0.005 0.01 0.03 0.04 0.2 0.5 -> *6/rank: 0.03 0.03 0.06 0.06 0.24 0.5
	want := []float64{0.03, 0.06, 0.06, 0.03, 0.5, 0.24}
	got := BenjaminiHochberg(p)
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-12 {
			t.Fatalf("q = %v, want %v", got, want)
		}
	}
	if q := BenjaminiHochberg(nil); len(q) != 0 {
		t.Fatalf("no hypotheses: %v", q)
	}
	// Under the null (uniform p-values), BH at 5% rejects rarely: over
	// 200 families of 50, at most a few families with any rejection.
	rng := rand.New(rand.NewPCG(1, 1))
	families := 0
	for f := 0; f < 200; f++ {
		ps := make([]float64, 50)
		for i := range ps {
			ps[i] = rng.Float64()
		}
		for _, q := range BenjaminiHochberg(ps) {
			if q <= 0.05 {
				families++
				break
			}
		}
	}
	if families > 20 { // expected 5% of families = 10
		t.Fatalf("%d of 200 null families had a rejection", families)
	}
}

func TestBinomialTail(t *testing.T) {
	for _, c := range []struct {
		k, n uint64
		p    float64
		want float64
	}{
		{0, 10, 0.05, 1},
		{1, 10, 0.05, 1 - math.Pow(0.95, 10)},
		{10, 10, 0.5, math.Pow(0.5, 10)},
		{2, 21, 0.05, 1 - math.Pow(0.95, 21) - 21*0.05*math.Pow(0.95, 20)},
		{11, 10, 0.5, 0},
	} {
		if got := BinomialTail(c.k, c.n, c.p); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("P(X >= %d | %d, %g) = %g, want %g", c.k, c.n, c.p, got, c.want)
		}
	}
}
