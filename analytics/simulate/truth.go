package simulate

import (
	"time"

	"github.com/neubot/neubot/schemas"
)

// The paper's goodset: tests of lines slow enough, and close enough to the
// test server, that the test measures the access link rather than the
// path: download below GoodsetMaxDownloadMbps and median RTT
// (rtt_median_ms) below GoodsetMaxRTTms.
const (
	GoodsetMaxDownloadMbps = 20
	GoodsetMaxRTTms        = 100
)

// Truth is what analytics must recover from a fleet's records: the plan mix
// actually assigned and statistics computed from the records themselves.
// Medians follow [schemas.Median]: the mean of the two middle values for an
// even count. ClickHouse's quantileExact(0.5) returns the upper of the two
// instead (a test checks it on the real server), so compare with it exactly
// only for odd counts.
type Truth struct {
	Seed        uint64     `json:"seed"`
	Start       time.Time  `json:"start"`
	End         time.Time  `json:"end"`
	Agents      int        `json:"agents"`
	Tests       int        `json:"tests"`
	TruthCounts            // over every test
	ISPs        []ISPTruth `json:"isps"` // in the order of the fleet's ISPs
}

// TruthCounts are the statistics of a set of tests.
type TruthCounts struct {
	MedianDownloadMbps float64 `json:"median_download_mbps"`
	MedianUploadMbps   float64 `json:"median_upload_mbps"`
	MedianRTTms        float64 `json:"median_rtt_ms"` // of rtt_median_ms
	GoodsetTests       int     `json:"goodset_tests"`
	GoodsetShare       float64 `json:"goodset_share"` // GoodsetTests / tests, 0 for none
}

// ISPTruth is the truth of one ISP.
type ISPTruth struct {
	ASN     uint32      `json:"asn"`
	Name    string      `json:"name"`
	Country string      `json:"country"`
	Agents  int         `json:"agents"`
	Tests   int         `json:"tests"`
	Plans   []PlanTruth `json:"plans"` // in the order of the ISP's plans, even those no agent got
	TruthCounts
	// Medians of the download of the tests that started in the rush hour
	// (20:00-22:59 local) and at night (03:00-05:59 local). With a mix of
	// plans their ratio need not be the ISP's RushHour: the median of a
	// mixture can jump between the plans' modes.
	RushMedianDownloadMbps  float64 `json:"rush_median_download_mbps"`
	NightMedianDownloadMbps float64 `json:"night_median_download_mbps"`
	// RushHourRatio is what recovers RushHour: the median, over the ISP's
	// agents with tests at both times, of the agent's median rush-hour
	// download over its median night download (0 when no agent has both).
	RushHourRatio  float64 `json:"rush_hour_ratio"`
	RushHourAgents int     `json:"rush_hour_agents"` // agents with tests at both times
}

// PlanTruth is a plan and how many agents got it.
type PlanTruth struct {
	Plan
	Agents int `json:"agents"`
	Tests  int `json:"tests"`
}

// ISP returns the truth of asn, or nil.
func (t *Truth) ISP(asn uint32) *ISPTruth {
	for i := range t.ISPs {
		if t.ISPs[i].ASN == asn {
			return &t.ISPs[i]
		}
	}
	return nil
}

// series collects the numbers of a set of tests.
type series struct {
	down, up, rtt, rush, night []float64
	good                       int
}

func (s *series) add(k *schemas.Speedtest, rush, night bool) {
	d := k.Download.GoodputMbps
	s.down = append(s.down, d)
	s.up = append(s.up, k.Upload.GoodputMbps)
	s.rtt = append(s.rtt, k.RTTMedianMS)
	if rush {
		s.rush = append(s.rush, d)
	}
	if night {
		s.night = append(s.night, d)
	}
	if d < GoodsetMaxDownloadMbps && k.RTTMedianMS < GoodsetMaxRTTms {
		s.good++
	}
}

func (s *series) counts() TruthCounts {
	c := TruthCounts{
		MedianDownloadMbps: schemas.Median(s.down),
		MedianUploadMbps:   schemas.Median(s.up),
		MedianRTTms:        schemas.Median(s.rtt),
		GoodsetTests:       s.good,
	}
	if n := len(s.down); n > 0 {
		c.GoodsetShare = float64(s.good) / float64(n)
	}
	return c
}

// Truth generates every record of the fleet (as [Fleet.Records] does, and
// as slowly) and returns what analytics must find in them.
func (f *Fleet) Truth() Truth {
	t := Truth{Seed: f.cfg.Seed, Start: f.cfg.Start, End: f.end, Agents: len(f.agents)}
	t.ISPs = make([]ISPTruth, len(f.isps))
	for i, isp := range f.isps {
		it := &t.ISPs[i]
		it.ASN, it.Name, it.Country = isp.ASN, isp.Name, isp.Country
		for _, p := range isp.Plans {
			it.Plans = append(it.Plans, PlanTruth{Plan: p})
		}
	}
	for _, l := range f.lines {
		t.ISPs[l.isp].Agents++
		t.ISPs[l.isp].Plans[l.plan].Agents++
	}
	var all series
	per := make([]series, len(f.isps))
	agentRush := make([][]float64, len(f.agents))
	agentNight := make([][]float64, len(f.agents))
	_ = f.schedule(func(s slot) error {
		r := f.record(s)
		l := f.lines[s.agent]
		k := r.TestKeys.(*schemas.Speedtest)
		h := time.Unix(0, s.start).In(f.locs[l.isp]).Hour()
		rush, night := h >= RushHourStart && h < RushHourEnd, h >= 3 && h < 6
		all.add(k, rush, night)
		per[l.isp].add(k, rush, night)
		if rush {
			agentRush[s.agent] = append(agentRush[s.agent], k.Download.GoodputMbps)
		}
		if night {
			agentNight[s.agent] = append(agentNight[s.agent], k.Download.GoodputMbps)
		}
		t.ISPs[l.isp].Plans[l.plan].Tests++
		return nil
	})
	t.Tests = len(all.down)
	t.TruthCounts = all.counts()
	ratios := make([][]float64, len(f.isps))
	for k, l := range f.lines {
		if len(agentRush[k]) > 0 && len(agentNight[k]) > 0 {
			ratios[l.isp] = append(ratios[l.isp], schemas.Median(agentRush[k])/schemas.Median(agentNight[k]))
		}
	}
	for i := range t.ISPs {
		it := &t.ISPs[i]
		it.RushHourRatio = schemas.Median(ratios[i])
		it.RushHourAgents = len(ratios[i])
		it.Tests = len(per[i].down)
		it.TruthCounts = per[i].counts()
		it.RushMedianDownloadMbps = schemas.Median(per[i].rush)
		it.NightMedianDownloadMbps = schemas.Median(per[i].night)
	}
	return t
}
