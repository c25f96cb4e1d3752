// Package simulate is a fleet of simulated Neubot volunteers: agents behind
// real ISPs' address prefixes, each on a broadband plan, running speedtests
// at random times. Its records are the demo's data, the benchmarks' load and
// the input of the analytics' golden tests, whose expected answers
// [Fleet.Truth] computes from the very records generated.
//
// Everything is deterministic for a seed: the agents (ISP, plan, address,
// line quality), their test times and every number of every record. Records
// are valid (schemas), marked synthetic, and carry the agent's address as
// the address the test server saw, so the collector annotates them with the
// ISP's real ASN, organisation and country.
//
// The model of one test, for an agent on plan P of ISP I:
//
//   - download goodput = P.DownMbps × efficiency × rush × noise, where
//     efficiency is the agent's line (uniform in 0.90..0.97, drawn once per
//     agent: protocol overhead, sync rate, home network), rush is
//     I.RushHour when the test starts between 20:00 and 23:00 local time of
//     I.TZ and 1 otherwise, and noise is lognormal with median 1 and
//     sigma 0.05; upload likewise from P.UpMbps;
//   - round-trip times around the agent's base RTT (P.RTTms × a lognormal
//     factor of sigma 0.15 drawn once per agent), plus queueing: about
//     1 ms off-peak, 60 ms × (1 - I.RushHour) on average in the rush hour;
//   - each phase goes through a link (Link: that rate, the test's round
//     trip, the line's loss, 1e-6 to 1e-5): two TCP connections in slow
//     start up to the rate (or the loss-limited rate, Mathis), sampled every
//     100 ms with noise until the real client's estimator of methodology 2
//     (internal/goodput.Estimate, with the agent's parameters) says the
//     phase may stop (stable, or the 4 s time cap); the goodput, stop reason
//     and estimation window are the estimator's, as the agent reports;
//   - the test server's view: bytes, timing, upload goodput over the whole
//     phase, TCP_INFO RTT, RTT variance and retransmissions.
//
// Each agent tests at random times, uniform over the 24 hours of a day: a
// renewal process with mean interval 24 h / Config.TestsPerAgentDay and,
// like the real agent, a floor between tests (15 minutes, or a quarter of
// the mean interval if that is shorter).
package simulate

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"
	_ "time/tzdata" // local rush hours the same on every machine

	"github.com/google/uuid"

	"github.com/neubot/neubot/collector/annotate"
)

// Plan is a broadband offer.
type Plan struct {
	Name     string  `json:"name"`      // e.g. "ADSL 7M"
	DownMbps float64 `json:"down_mbps"` // nominal download, Mbit/s
	UpMbps   float64 `json:"up_mbps"`   // nominal upload, Mbit/s
	Weight   float64 `json:"weight"`    // share of the ISP's agents on this plan (relative to the other plans)
	RTTms    float64 `json:"rtt_ms"`    // typical round-trip time to a test server, ms
}

// ISP is an access network of the fleet.
type ISP struct {
	Name    string `json:"name"`    // e.g. "Telecom Italia"; the database's organisation when empty
	ASN     uint32 `json:"asn"`     // must have IPv4 ranges in Config.IPDB
	Country string `json:"country"` // ISO 3166-1 alpha-2; agents get addresses in prefixes registered there when there are any
	TZ      string `json:"tz"`      // IANA time zone of the rush hour, e.g. "Europe/Rome"; UTC when empty
	Plans   []Plan `json:"plans"`
	// RushHour is the throughput factor between 20:00 and 23:00 local
	// time, e.g. 0.7; 1 (or 0) for none.
	RushHour float64 `json:"rush_hour"`
	// Agents is the ISP's share of the fleet (relative to the other ISPs).
	Agents float64 `json:"agents"`
}

// Config describes a fleet.
type Config struct {
	Agents int       // size of the fleet
	Start  time.Time // first instant of the period; zero: midnight UTC, Days days ago
	Days   int       // length of the period, days
	// TestsPerAgentDay is the mean number of tests per agent per day.
	TestsPerAgentDay float64
	Seed             uint64
	ISPs             []ISP // DefaultISPs when nil
	// IPDB gives the real prefixes of each ISP: each agent gets a stable
	// address in one of them. Required.
	IPDB *annotate.DB
	// Logger gets Submit's retries; nil for none.
	Logger *slog.Logger
}

// Agent is one simulated volunteer.
type Agent struct {
	ID   string // agent_id, a UUID
	ISP  *ISP
	Plan *Plan
	Addr netip.Addr // the address test servers see
}

// Limits of a Config.
const (
	MaxAgents = 10_000_000
	MaxDays   = 3660
	// MaxTestsPerAgentDay is the real agent's ceiling: never less than
	// 15 minutes between tests.
	MaxTestsPerAgentDay = 96
	// prefixesPerISP bounds the prefixes agents' addresses are drawn from.
	prefixesPerISP = 256
)

// agentLine holds what is stable about an agent besides Agent.
type agentLine struct {
	isp, plan        int
	effDown, effUp   float64 // efficiency of the line, 0.90..0.97
	rttBase          float64 // ms
	loss             float64 // packet loss TCP sees, 1e-6..1e-5 (log-uniform)
	os, arch, server string
}

// Fleet is a simulated fleet. It is read-only after NewFleet: its methods
// may be called concurrently and always produce the same records.
type Fleet struct {
	cfg    Config
	isps   []ISP
	locs   []*time.Location // of isps
	agents []Agent
	lines  []agentLine
	end    time.Time // end of the period, at the latest NewFleet's time
}

// ErrConfig is wrapped by NewFleet's errors about its Config.
var ErrConfig = errors.New("simulate: bad config")

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
}

// NewFleet builds the fleet of cfg: the same Config gives the same fleet.
// Tests that would start after the moment NewFleet is called are not part
// of it, so that no record is in the future.
func NewFleet(cfg Config) (*Fleet, error) {
	now := time.Now()
	switch {
	case cfg.IPDB == nil:
		return nil, configErr("IPDB is required: agents get addresses in their ISP's real prefixes")
	case cfg.Agents < 1 || cfg.Agents > MaxAgents:
		return nil, configErr("Agents must be 1..%d, not %d", MaxAgents, cfg.Agents)
	case cfg.Days < 1 || cfg.Days > MaxDays:
		return nil, configErr("Days must be 1..%d, not %d", MaxDays, cfg.Days)
	case !(cfg.TestsPerAgentDay > 0 && cfg.TestsPerAgentDay <= MaxTestsPerAgentDay):
		return nil, configErr("TestsPerAgentDay must be > 0 and <= %d, not %g", MaxTestsPerAgentDay, cfg.TestsPerAgentDay)
	}
	if cfg.Start.IsZero() {
		cfg.Start = now.UTC().Truncate(24*time.Hour).AddDate(0, 0, -cfg.Days)
	}
	if cfg.Start.Before(time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)) || cfg.Start.After(now) {
		return nil, configErr("Start %s must be between 2010-01-01 and now", cfg.Start.Format(time.RFC3339))
	}
	if cfg.ISPs == nil {
		cfg.ISPs = DefaultISPs
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{cfg: cfg, end: cfg.Start.AddDate(0, 0, cfg.Days)}
	if f.end.After(now) {
		f.end = now
	}
	if err := f.setISPs(cfg.ISPs); err != nil {
		return nil, err
	}
	prefixes := make([][]netip.Prefix, len(f.isps))
	for i := range f.isps {
		p, err := ispPrefixes(cfg.IPDB, &f.isps[i])
		if err != nil {
			return nil, err
		}
		prefixes[i] = p
	}

	// One stream for the fleet's make-up, drawn agent by agent.
	rng := rand.New(rand.NewPCG(mix(cfg.Seed, streamFleet), mix(cfg.Seed, streamFleet+1)))
	ispCDF := cdf(len(f.isps), func(i int) float64 { return f.isps[i].Agents })
	planCDF := make([][]float64, len(f.isps))
	for i := range f.isps {
		planCDF[i] = cdf(len(f.isps[i].Plans), func(j int) float64 { return f.isps[i].Plans[j].Weight })
	}
	f.agents = make([]Agent, cfg.Agents)
	f.lines = make([]agentLine, cfg.Agents)
	for k := range f.agents {
		i := pick(rng, ispCDF)
		j := pick(rng, planCDF[i])
		isp := &f.isps[i]
		plan := &isp.Plans[j]
		addr := randomAddr(rng, prefixes[i][rng.IntN(len(prefixes[i]))])
		if asn, _, _ := cfg.IPDB.Origin(addr); asn != isp.ASN {
			return nil, fmt.Errorf("simulate: %v, drawn for AS%d, maps to AS%d", addr, isp.ASN, asn)
		}
		f.agents[k] = Agent{ID: newUUID(rng), ISP: isp, Plan: plan, Addr: addr}
		os, arch := platform(rng)
		f.lines[k] = agentLine{
			isp: i, plan: j,
			effDown: 0.90 + 0.07*rng.Float64(),
			effUp:   0.90 + 0.07*rng.Float64(),
			rttBase: plan.RTTms * math.Exp(0.15*rng.NormFloat64()),
			os:      os, arch: arch,
			server: "sim-" + strings.ToLower(isp.Country) + "-1",
			loss:   math.Pow(10, -6+rng.Float64()),
		}
	}
	return f, nil
}

// setISPs validates isps and keeps a deep copy.
func (f *Fleet) setISPs(isps []ISP) error {
	if len(isps) == 0 {
		return configErr("no ISPs")
	}
	seen := map[uint32]bool{}
	var share float64
	for _, isp := range isps {
		switch {
		case seen[isp.ASN]:
			return configErr("AS%d appears twice", isp.ASN)
		case !(isp.Agents >= 0) || math.IsInf(isp.Agents, 0):
			return configErr("AS%d: Agents share %g", isp.ASN, isp.Agents)
		case !(isp.RushHour >= 0 && isp.RushHour <= 1):
			return configErr("AS%d: RushHour %g is not in 0..1", isp.ASN, isp.RushHour)
		case len(isp.Plans) == 0:
			return configErr("AS%d has no plans", isp.ASN)
		}
		seen[isp.ASN] = true
		share += isp.Agents
		loc, err := time.LoadLocation(isp.TZ)
		if err != nil {
			return configErr("AS%d: time zone: %v", isp.ASN, err)
		}
		var weight float64
		for _, p := range isp.Plans {
			if !(p.DownMbps > 0 && p.DownMbps <= 100_000 && p.UpMbps > 0 && p.UpMbps <= 100_000 &&
				p.RTTms > 0 && p.RTTms <= 10_000 && p.Weight >= 0 && !math.IsInf(p.Weight, 0)) {
				return configErr("AS%d: plan %q: speeds must be in (0, 100000] Mbit/s, RTT in (0, 10000] ms, weight >= 0", isp.ASN, p.Name)
			}
			weight += p.Weight
		}
		if weight <= 0 {
			return configErr("AS%d: the plans' weights add up to 0", isp.ASN)
		}
		isp.Plans = append([]Plan(nil), isp.Plans...)
		if isp.RushHour == 0 {
			isp.RushHour = 1
		}
		f.isps = append(f.isps, isp)
		f.locs = append(f.locs, loc)
	}
	if share <= 0 {
		return configErr("the ISPs' Agents shares add up to 0")
	}
	return nil
}

// ispPrefixes returns the prefixes agents of isp get addresses in: those
// of its ASN registered in its country, or all of them if none is. It
// fills isp.Name from the database when empty.
func ispPrefixes(db *annotate.DB, isp *ISP) ([]netip.Prefix, error) {
	if isp.Name == "" {
		isp.Name = db.Org(isp.ASN)
	}
	all := db.Prefixes(isp.ASN, 0)
	if len(all) == 0 {
		return nil, configErr("AS%d (%s) has no IPv4 prefix in the IP database %s", isp.ASN, isp.Name, db.Version())
	}
	var local []netip.Prefix
	for _, p := range all {
		if _, _, cc := db.Origin(p.Addr()); cc == isp.Country {
			local = append(local, p)
			if len(local) == prefixesPerISP {
				break
			}
		}
	}
	if len(local) == 0 {
		local = all[:min(len(all), prefixesPerISP)]
	}
	return local, nil
}

// Agents returns the fleet's agents, in a fixed order.
func (f *Fleet) Agents() []Agent { return append([]Agent(nil), f.agents...) }

// ISPs returns the fleet's ISPs (names filled in from the IP database).
func (f *Fleet) ISPs() []ISP {
	out := append([]ISP(nil), f.isps...)
	for i := range out {
		out[i].Plans = append([]Plan(nil), out[i].Plans...)
	}
	return out
}

// Period returns the period of the fleet's tests: [start, end).
func (f *Fleet) Period() (start, end time.Time) { return f.cfg.Start, f.end }

// cdf returns the cumulative weights of n items, normalised to end at 1.
func cdf(n int, weight func(int) float64) []float64 {
	c := make([]float64, n)
	var sum float64
	for i := range c {
		sum += weight(i)
		c[i] = sum
	}
	for i := range c {
		c[i] /= sum
	}
	return c
}

// pick draws an index from a cdf.
func pick(rng *rand.Rand, cdf []float64) int {
	u := rng.Float64()
	for i, c := range cdf {
		if u < c {
			return i
		}
	}
	return len(cdf) - 1
}

// randomAddr draws an address of p, avoiding the first and last of each
// /24 (that a home router would rarely have).
func randomAddr(rng *rand.Rand, p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	base := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	size := uint64(1) << (32 - p.Bits())
	for range 16 {
		x := base + uint32(rng.Uint64N(size))
		if last := x & 0xff; size < 256 || (last != 0 && last != 255) {
			return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
		}
	}
	return p.Addr()
}

// platforms are the agents' operating systems and architectures, with
// their shares.
var platforms = []struct {
	os, arch string
	share    float64
}{
	{"linux", "amd64", 0.35}, {"linux", "arm64", 0.15}, {"linux", "arm", 0.05},
	{"windows", "amd64", 0.30}, {"darwin", "arm64", 0.10}, {"darwin", "amd64", 0.05},
}

var platformCDF = cdf(len(platforms), func(i int) float64 { return platforms[i].share })

func platform(rng *rand.Rand) (os, arch string) {
	p := platforms[pick(rng, platformCDF)]
	return p.os, p.arch
}

// newUUID draws a version 4 UUID from rng.
func newUUID(rng *rand.Rand) string {
	var u uuid.UUID
	hi, lo := rng.Uint64(), rng.Uint64()
	for i := range 8 {
		u[i], u[8+i] = byte(hi>>(56-8*i)), byte(lo>>(56-8*i))
	}
	u[6] = (u[6] & 0x0f) | 0x40
	u[8] = (u[8] & 0x3f) | 0x80
	return u.String()
}

// Stream numbers of mix: the fleet's make-up, then two per agent for its
// schedule.
const (
	streamFleet  = 1
	streamAgents = 1 << 32
)

// mix is SplitMix64's finaliser over seed and a stream number: seeds of
// independent random streams.
func mix(seed, stream uint64) uint64 {
	z := seed + stream*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
