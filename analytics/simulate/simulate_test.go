package simulate

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/internal/goodput"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/schemas"
)

func TestMain(m *testing.M) { os.Exit(localchtest.Main(m)) }

// start is a fixed Monday in the past, so that fleets are the same at
// every run.
var start = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

func newFleet(t testing.TB, cfg Config) *Fleet {
	t.Helper()
	if cfg.IPDB == nil {
		cfg.IPDB = collectortest.IPDB(t)
	}
	if cfg.Start.IsZero() {
		cfg.Start = start
	}
	f, err := NewFleet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// lines returns the fleet's records as NDJSON.
func lines(t testing.TB, f *Fleet) [][]byte {
	t.Helper()
	var out [][]byte
	if err := f.Records(func(r *schemas.Record) error {
		b, err := json.Marshal(r)
		out = append(out, b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSimulateDefaultISPs checks that every default ISP is real: its ASN
// has IPv4 prefixes registered in its country, and its name is the
// database's organisation (or part of it).
func TestSimulateDefaultISPs(t *testing.T) {
	db := collectortest.IPDB(t)
	if n := len(DefaultISPs); n < 8 || n > 12 {
		t.Errorf("%d default ISPs, want 8 to 12", n)
	}
	for _, isp := range DefaultISPs {
		all := db.Prefixes(isp.ASN, 0)
		local := 0
		for _, p := range all {
			if _, _, cc := db.Origin(p.Addr()); cc == isp.Country {
				local++
			}
		}
		t.Logf("AS%-6d %-2s %-18s %q: %d IPv4 prefixes, %d in %s", isp.ASN, isp.Country, isp.Name, db.Org(isp.ASN), len(all), local, isp.Country)
		if local == 0 {
			t.Errorf("AS%d (%s): no IPv4 prefix registered in %s", isp.ASN, isp.Name, isp.Country)
		}
		if _, err := time.LoadLocation(isp.TZ); err != nil {
			t.Errorf("AS%d: %v", isp.ASN, err)
		}
	}
}

// TestSimulateDeterministicValid checks that a seed gives the same records,
// that every record is valid as the collector decodes it, synthetic and
// consented, and that its address is in a real prefix of its agent's ISP
// that the IP database maps back to the ISP's ASN.
func TestSimulateDeterministicValid(t *testing.T) {
	db := collectortest.IPDB(t)
	cfg := Config{Agents: 300, Days: 3, TestsPerAgentDay: 12, Seed: 42}
	f := newFleet(t, cfg)
	a, b := lines(t, f), lines(t, newFleet(t, cfg))
	if len(a) != len(b) || len(a) != f.Count() {
		t.Fatalf("%d records, then %d; Count says %d", len(a), len(b), f.Count())
	}
	h := sha256.New()
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("record %d differs between two fleets of the same seed:\n%s\n%s", i, a[i], b[i])
		}
		h.Write(a[i])
	}
	want := float64(cfg.Agents*cfg.Days) * cfg.TestsPerAgentDay
	if n := float64(len(a)); math.Abs(n-want) > 4*math.Sqrt(want) {
		t.Errorf("%v records, want about %v", n, want)
	}
	cfg.Seed = 43
	if c := lines(t, newFleet(t, cfg)); len(c) > 0 && bytes.Equal(c[0], a[0]) {
		t.Error("seeds 42 and 43 give the same first record")
	}

	agents := map[string]Agent{}
	prefixes := map[uint32][]netip.Prefix{}
	for _, ag := range f.Agents() {
		agents[ag.ID] = ag
		if prefixes[ag.ISP.ASN] == nil {
			prefixes[ag.ISP.ASN] = db.Prefixes(ag.ISP.ASN, 0)
		}
	}
	if len(agents) != cfg.Agents {
		t.Fatalf("%d distinct agent IDs for %d agents", len(agents), cfg.Agents)
	}
	now := time.Now()
	uids := map[string]bool{}
	_, end := f.Period()
	var prev time.Time
	for i, line := range a {
		r, err := schemas.DecodeRecord(line, now)
		if err != nil {
			t.Fatalf("record %d is invalid: %v\n%s", i, err, line)
		}
		if !r.Synthetic || r.Consent != (schemas.Consent{Informed: true, CanCollect: true, CanPublish: true}) {
			t.Fatalf("record %d: synthetic %v, consent %+v", i, r.Synthetic, r.Consent)
		}
		if uids[r.MeasurementUID] {
			t.Fatalf("record %d: measurement_uid %s twice", i, r.MeasurementUID)
		}
		uids[r.MeasurementUID] = true
		if r.StartTime.Before(start) || !r.StartTime.Before(end) || r.StartTime.After(now) || r.StartTime.Before(prev) {
			t.Fatalf("record %d: start_time %v out of [%v, %v) or out of order", i, r.StartTime, start, end)
		}
		prev = r.StartTime
		ag, ok := agents[r.AgentID]
		if !ok {
			t.Fatalf("record %d: unknown agent %s", i, r.AgentID)
		}
		addr := netip.MustParseAddr(r.Server.ClientAddress)
		if addr != ag.Addr {
			t.Fatalf("record %d: address %v, its agent's is %v", i, addr, ag.Addr)
		}
		if k := r.TestKeys.(*schemas.Speedtest); k.ServerView == nil || len(k.Download.Samples) < 10 || len(k.Upload.Samples) < 10 {
			t.Fatalf("record %d: no server view or fewer than 10 samples (1 s) a phase", i)
		}
	}
	for _, ag := range agents {
		if asn, _, _ := db.Origin(ag.Addr); asn != ag.ISP.ASN {
			t.Errorf("agent %s: %v maps to AS%d, not AS%d", ag.ID, ag.Addr, asn, ag.ISP.ASN)
		}
		if !slices.ContainsFunc(prefixes[ag.ISP.ASN], func(p netip.Prefix) bool { return p.Contains(ag.Addr) }) {
			t.Errorf("agent %s: %v is in no prefix of AS%d", ag.ID, ag.Addr, ag.ISP.ASN)
		}
	}
	t.Logf("%d records of %d agents over %d days: sha256 %x; e.g.\n%s", len(a), cfg.Agents, cfg.Days, h.Sum(nil), a[0])
}

// chi2Critical are the chi-square critical values at p = 0.001 for 1..12
// degrees of freedom.
var chi2Critical = []float64{10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59, 31.26, 32.91}

func chi2(counts []int, weights []float64) (stat float64, df int) {
	var n int
	var w float64
	for i := range counts {
		n += counts[i]
		w += weights[i]
	}
	for i := range counts {
		e := float64(n) * weights[i] / w
		stat += (float64(counts[i]) - e) * (float64(counts[i]) - e) / e
	}
	return stat, len(counts) - 1
}

// TestSimulatePlanMix checks that the ISPs' shares of the fleet and their
// plans' shares of their agents follow the weights (chi-square at
// p = 0.001), and that Truth reports the mix actually assigned.
func TestSimulatePlanMix(t *testing.T) {
	f := newFleet(t, Config{Agents: 20_000, Days: 1, TestsPerAgentDay: 1, Seed: 7})
	ispCount := make([]int, len(DefaultISPs))
	planCount := make([][]int, len(DefaultISPs))
	for i, isp := range DefaultISPs {
		planCount[i] = make([]int, len(isp.Plans))
	}
	isps := f.ISPs()
	for _, ag := range f.Agents() {
		i := slices.IndexFunc(isps, func(isp ISP) bool { return isp.ASN == ag.ISP.ASN })
		j := slices.IndexFunc(isps[i].Plans, func(p Plan) bool { return p.Name == ag.Plan.Name })
		ispCount[i]++
		planCount[i][j]++
	}
	var shares []float64
	for _, isp := range DefaultISPs {
		shares = append(shares, isp.Agents)
	}
	if s, df := chi2(ispCount, shares); s > chi2Critical[df-1] {
		t.Errorf("ISP shares %v: chi-square %.1f > %.1f (df %d)", ispCount, s, chi2Critical[df-1], df)
	}
	truth := f.Truth()
	for i, isp := range DefaultISPs {
		var w []float64
		for _, p := range isp.Plans {
			w = append(w, p.Weight)
		}
		s, df := chi2(planCount[i], w)
		if s > chi2Critical[df-1] {
			t.Errorf("AS%d plans %v: chi-square %.1f > %.1f (df %d)", isp.ASN, planCount[i], s, chi2Critical[df-1], df)
		}
		it := truth.ISP(isp.ASN)
		if it == nil || it.Agents != ispCount[i] {
			t.Fatalf("Truth of AS%d: %+v, want %d agents", isp.ASN, it, ispCount[i])
		}
		for j, p := range it.Plans {
			if p.Agents != planCount[i][j] || p.Name != isp.Plans[j].Name {
				t.Errorf("Truth of AS%d plan %q: %d agents, want %d", isp.ASN, p.Name, p.Agents, planCount[i][j])
			}
		}
		t.Logf("AS%-6d %5d agents, plans %v (chi-square %.1f, df %d)", isp.ASN, ispCount[i], planCount[i], s, df)
	}
}

// TestSimulateModes checks that the downloads of Telecom Italia's agents
// peak where its plans are, at about 0.93 times their speed: the 1, 2 and
// 7 Mbit/s ADSL peaks of the paper, then 20, 100 and 1000.
func TestSimulateModes(t *testing.T) {
	f := newFleet(t, Config{Agents: 1500, Days: 4, TestsPerAgentDay: 8, Seed: 3, ISPs: DefaultISPs[:1]})
	const binsPerDecade = 200 // 1.16% wide
	hist := map[int]int{}
	bin := func(x float64) int { return int(math.Floor(math.Log10(x) * binsPerDecade)) }
	n := 0
	f.Records(func(r *schemas.Record) error {
		hist[bin(r.TestKeys.(*schemas.Speedtest).Download.GoodputMbps)]++
		n++
		return nil
	})
	center := func(b int) float64 { return math.Pow(10, (float64(b)+0.5)/binsPerDecade) }
	for _, p := range DefaultISPs[0].Plans {
		// The highest bin between 2/3 and 5/4 of the plan's speed.
		lo, hi := bin(p.DownMbps/1.5), bin(p.DownMbps*1.25)
		mode := lo
		for b := lo; b <= hi; b++ {
			if hist[b] > hist[mode] {
				mode = b
			}
		}
		ratio := center(mode) / p.DownMbps
		edge := max(hist[lo], hist[hi])
		t.Logf("plan %-9s mode %8.3f Mbit/s = %.3f × plan (%d tests in its bin, %d at the window's edges)", p.Name, center(mode), ratio, hist[mode], edge)
		if ratio < 0.90 || ratio > 0.97 {
			t.Errorf("plan %s: the downloads peak at %.3f Mbit/s, %.3f times the plan's speed; want 0.90..0.97", p.Name, center(mode), ratio)
		}
		if hist[mode] < 5*max(edge, 1) {
			t.Errorf("plan %s: no clear peak: %d tests in the modal bin, %d at the window's edges", p.Name, hist[mode], edge)
		}
	}
	t.Logf("%d tests", n)
}

// TestSimulateRushHour checks that the median download of tests started
// between 20:00 and 23:00 local time is the RushHour factor times that of
// tests started between 03:00 and 06:00, and that RTTs grow.
func TestSimulateRushHour(t *testing.T) {
	isp := ISP{Name: "Telecom Italia", ASN: 3269, Country: "IT", TZ: "Europe/Rome", RushHour: 0.7, Agents: 1,
		Plans: []Plan{{Name: "FTTC 50M", DownMbps: 50, UpMbps: 10, Weight: 1, RTTms: 20}}}
	f := newFleet(t, Config{Agents: 500, Days: 7, TestsPerAgentDay: 12, Seed: 11, ISPs: []ISP{isp}})
	loc, _ := time.LoadLocation(isp.TZ)
	var rush, night, rushRTT, nightRTT []float64
	f.Records(func(r *schemas.Record) error {
		k := r.TestKeys.(*schemas.Speedtest)
		switch h := r.StartTime.In(loc).Hour(); {
		case h >= 20 && h < 23:
			rush, rushRTT = append(rush, k.Download.GoodputMbps), append(rushRTT, k.RTTMedianMS)
		case h >= 3 && h < 6:
			night, nightRTT = append(night, k.Download.GoodputMbps), append(nightRTT, k.RTTMedianMS)
		}
		return nil
	})
	ratio := schemas.Median(rush) / schemas.Median(night)
	t.Logf("20-23h: %d tests, median %.2f Mbit/s, RTT %.1f ms; 03-06h: %d tests, median %.2f Mbit/s, RTT %.1f ms; ratio %.3f",
		len(rush), schemas.Median(rush), schemas.Median(rushRTT), len(night), schemas.Median(night), schemas.Median(nightRTT), ratio)
	if math.Abs(ratio-isp.RushHour) > 0.02 {
		t.Errorf("rush hour / night median download = %.3f, want %.2f ± 0.02", ratio, isp.RushHour)
	}
	if schemas.Median(rushRTT) < schemas.Median(nightRTT)+5 {
		t.Errorf("median RTT %.1f ms in the rush hour, %.1f ms at night: want queueing", schemas.Median(rushRTT), schemas.Median(nightRTT))
	}
	truth := f.Truth()
	if it := truth.ISP(3269); it.RushMedianDownloadMbps != schemas.Median(rush) || it.NightMedianDownloadMbps != schemas.Median(night) {
		t.Errorf("Truth: rush %v night %v, want %v and %v", it.RushMedianDownloadMbps, it.NightMedianDownloadMbps, schemas.Median(rush), schemas.Median(night))
	}
}

// TestSimulateTruth checks Truth against the records and logs the truth of
// a default fleet: per-ISP medians and goodset shares.
func TestSimulateTruth(t *testing.T) {
	f := newFleet(t, Config{Agents: 2000, Days: 7, TestsPerAgentDay: 12, Seed: 1})
	truth := f.Truth()
	var down []float64
	perASN := map[uint32][]float64{}
	good := map[uint32]int{}
	agentASN := map[string]uint32{}
	for _, a := range f.Agents() {
		agentASN[a.ID] = a.ISP.ASN
	}
	f.Records(func(r *schemas.Record) error {
		k := r.TestKeys.(*schemas.Speedtest)
		asn := agentASN[r.AgentID]
		down = append(down, k.Download.GoodputMbps)
		perASN[asn] = append(perASN[asn], k.Download.GoodputMbps)
		if k.Download.GoodputMbps < 20 && k.RTTMedianMS < 100 {
			good[asn]++
		}
		return nil
	})
	if truth.Tests != len(down) || truth.MedianDownloadMbps != schemas.Median(down) {
		t.Errorf("Truth: %d tests, median %v; records: %d, %v", truth.Tests, truth.MedianDownloadMbps, len(down), schemas.Median(down))
	}
	total := 0
	for _, it := range truth.ISPs {
		total += good[it.ASN]
		if it.Tests != len(perASN[it.ASN]) || it.MedianDownloadMbps != schemas.Median(perASN[it.ASN]) || it.GoodsetTests != good[it.ASN] {
			t.Errorf("Truth of AS%d: %d tests, median %v, goodset %d; records: %d, %v, %d", it.ASN, it.Tests,
				it.MedianDownloadMbps, it.GoodsetTests, len(perASN[it.ASN]), schemas.Median(perASN[it.ASN]), good[it.ASN])
		}
	}
	if truth.GoodsetTests != total {
		t.Errorf("Truth: goodset %d tests, records %d", truth.GoodsetTests, total)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "seed %d, %d agents, %d tests from %s to %s: median download %.2f Mbit/s, upload %.2f, RTT %.1f ms, goodset %.1f%%\n",
		truth.Seed, truth.Agents, truth.Tests, truth.Start.Format(time.DateOnly), truth.End.Format(time.DateOnly),
		truth.MedianDownloadMbps, truth.MedianUploadMbps, truth.MedianRTTms, 100*truth.GoodsetShare)
	fmt.Fprintf(&b, "%-8s %-2s %-17s %6s %6s %9s %8s %7s %7s %7s %8s %10s\n", "ASN", "", "name", "agents", "tests",
		"down p50", "up p50", "rtt p50", "goodset", "rush", "night", "rush ratio")
	for i, it := range truth.ISPs {
		fmt.Fprintf(&b, "AS%-6d %-2s %-17s %6d %6d %9.2f %8.2f %7.1f %6.1f%% %7.2f %8.2f %10.3f\n", it.ASN, it.Country, it.Name, it.Agents, it.Tests,
			it.MedianDownloadMbps, it.MedianUploadMbps, it.MedianRTTms, 100*it.GoodsetShare, it.RushMedianDownloadMbps, it.NightMedianDownloadMbps, it.RushHourRatio)
		if want := DefaultISPs[i].RushHour; math.Abs(it.RushHourRatio-want) > 0.02 || it.RushHourAgents < it.Agents*9/10 {
			t.Errorf("AS%d: rush-hour ratio %.3f over %d of %d agents, want %.2f ± 0.02", it.ASN, it.RushHourRatio, it.RushHourAgents, it.Agents, want)
		}
	}
	t.Log("\n" + b.String())
	if _, err := json.Marshal(truth); err != nil {
		t.Fatal(err)
	}
}

func TestSimulateConfigErrors(t *testing.T) {
	db := collectortest.IPDB(t)
	ok := Config{Agents: 1, Days: 1, TestsPerAgentDay: 1, IPDB: db, Start: start}
	bad := []func(c *Config){
		func(c *Config) { c.IPDB = nil },
		func(c *Config) { c.Agents = 0 },
		func(c *Config) { c.Days = 0 },
		func(c *Config) { c.TestsPerAgentDay = 0 },
		func(c *Config) { c.TestsPerAgentDay = math.NaN() },
		func(c *Config) { c.Start = time.Now().Add(time.Hour) },
		func(c *Config) { c.ISPs = []ISP{} },
		func(c *Config) { c.ISPs = []ISP{{ASN: 23456, Agents: 1, Plans: DefaultISPs[0].Plans}} }, // no prefixes
		func(c *Config) { c.ISPs = []ISP{DefaultISPs[0], DefaultISPs[0]} },
		func(c *Config) {
			c.ISPs = []ISP{{ASN: 3269, Agents: 1, TZ: "Mars/Olympus", Plans: DefaultISPs[0].Plans}}
		},
		func(c *Config) { c.ISPs = []ISP{{ASN: 3269, Agents: 1}} },
		func(c *Config) {
			c.ISPs = []ISP{{ASN: 3269, Agents: 1, Plans: []Plan{{DownMbps: -1, UpMbps: 1, RTTms: 1, Weight: 1}}}}
		},
	}
	if _, err := NewFleet(ok); err != nil {
		t.Fatal(err)
	}
	for i, mod := range bad {
		c := ok
		mod(&c)
		if _, err := NewFleet(c); !errors.Is(err, ErrConfig) {
			t.Errorf("bad config %d: error %v, want ErrConfig", i, err)
		}
	}
	// The default period ends at today's midnight UTC.
	c := ok
	c.Start = time.Time{}
	f, err := NewFleet(c)
	if err != nil {
		t.Fatal(err)
	}
	if s, e := f.Period(); e.Sub(s) != 24*time.Hour || e.After(time.Now()) {
		t.Errorf("default period %v..%v", s, e)
	}
}

// TestSimulateThroughEstimator: every simulated goodput, stop reason and
// window are what the client's estimator of methodology 2
// (internal/goodput.Estimate, with the agent's parameters) says of the
// phase's samples, and the phase stops where it first may; over a link
// that TCP fills within the phase, the estimate is the link's steady
// goodput within the noise.
func TestSimulateThroughEstimator(t *testing.T) {
	fleet, err := NewFleet(Config{Agents: 50, Days: 1, TestsPerAgentDay: 4, Seed: 7, IPDB: collectortest.IPDB(t)})
	if err != nil {
		t.Fatal(err)
	}
	n, stable := 0, 0
	err = fleet.Records(func(r *schemas.Record) error {
		k := r.TestKeys.(*schemas.Speedtest)
		if r.TestVersion != schemas.SpeedtestVersion || k.RTTMinMS <= 0 {
			t.Fatalf("test_version %q, rtt_min_ms %v: not a methodology 2 record", r.TestVersion, k.RTTMinMS)
		}
		for _, p := range []schemas.SpeedtestPhase{k.Download, k.Upload} {
			params := goodput.Params{RTT: p.Params.RTTMS / 1000}
			var est []goodput.Sample
			for i, s := range p.Samples {
				est = append(est, goodput.Sample{T: s.TS, Bytes: s.Bytes})
				res := goodput.Estimate(est, params)
				if res.Stop != (i == len(p.Samples)-1) {
					t.Fatalf("the estimator says stop=%v at sample %d of %d", res.Stop, i+1, len(p.Samples))
				}
				if !res.Stop {
					continue
				}
				if r3(res.Mbps) != p.GoodputMbps || p.GoodputMbps <= 0 || res.StopReason != p.StopReason || r3(res.Start) != p.WindowStartS || r3(res.End) != p.WindowEndS {
					t.Fatalf("phase %v %s [%v, %v]; the estimator says %v %s [%v, %v]", p.GoodputMbps, p.StopReason, p.WindowStartS, p.WindowEndS,
						res.Mbps, res.StopReason, res.Start, res.End)
				}
			}
			if p.StopReason == goodput.StopStable {
				stable++
			}
		}
		n++
		return nil
	})
	if err != nil || n == 0 {
		t.Fatal(n, err)
	}
	t.Logf("%d records, %d of %d phases stopped stable (the others at the time cap)", n, stable, 2*n)
	if stable == 0 {
		t.Error("no phase stopped stable")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, l := range []Link{{RateMbps: 7, RTTms: 45, Loss: 1e-5}, {RateMbps: 100, RTTms: 18, Loss: 1e-6}, {RateMbps: 1000, RTTms: 40, Loss: 1e-4}} {
		var sum float64
		for i := 0; i < 50; i++ {
			sum += l.Phase(rng, 2).GoodputMbps
		}
		if mean, want := sum/50, l.Steady(2); math.Abs(mean-want)/want > 0.03 {
			t.Errorf("%+v: mean estimate %.2f, steady goodput %.2f", l, mean, want)
		}
	}
}

// TestDecodeISPs: the embedded table decodes to 9 ISPs and 41 plans, and a
// table with an unknown field or an ISP without plans is refused.
func TestDecodeISPs(t *testing.T) {
	plans := 0
	for _, isp := range DefaultISPs {
		plans += len(isp.Plans)
	}
	if len(DefaultISPs) != 9 || plans != 41 || DefaultISPs[0].ASN != 3269 || DefaultISPs[0].Plans[0].UpMbps != 0.256 {
		t.Errorf("%d ISPs, %d plans, first %+v", len(DefaultISPs), plans, DefaultISPs[0])
	}
	for _, bad := range []string{
		`[{"name": "x", "asn": 1, "agents": 1, "plans": [{"name": "p", "down_mbps": 1, "up_mbps": 1, "weight": 1, "rtt_ms": 1}], "colour": "red"}]`,
		`[{"name": "x", "asn": 1, "agents": 1, "plans": []}]`,
		`[{"name": "x", "asn": 1, "agents": 1, "plans": [{"name": "p", "down_mbps": -1, "up_mbps": 1, "weight": 1, "rtt_ms": 1}]}]`,
		`{`,
	} {
		if _, err := decodeISPs([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
