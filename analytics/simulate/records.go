package simulate

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/neubot/neubot/internal/version"
	"github.com/neubot/neubot/schemas"
)

// Model constants (see the package documentation).
const (
	// RushHourStart and RushHourEnd bound the rush hour, local time:
	// tests starting at 20:00:00 up to 22:59:59 are slowed down.
	RushHourStart = 20
	RushHourEnd   = 23
	noiseSigma    = 0.05 // lognormal sigma of goodput per test
	rttSigma      = 0.15 // lognormal sigma of an agent's base RTT around its plan's
	rushQueueMS   = 60   // mean queueing in the rush hour is rushQueueMS × (1 - RushHour)
	idleQueueMS   = 1    // mean queueing off-peak
	sampleS       = 0.1  // seconds between throughput samples (methodology 2)
	rttSamples    = 10   // HEAD round trips
	connects      = 5    // TCP connections: latency, 2 download, 2 upload
	floorGap      = 15 * time.Minute
)

// slot is one scheduled test: its agent, start and seeds.
type slot struct {
	start int64 // Unix nanoseconds
	agent int32
	seed  [2]uint64
}

// schedule calls fn for every test of the period, ordered by start time
// (then agent), day by day so that only one day's slots are in memory.
func (f *Fleet) schedule(fn func(slot) error) error {
	n := len(f.agents)
	mean := float64(24*time.Hour) / f.cfg.TestsPerAgentDay
	floor := math.Min(float64(floorGap), mean/4)
	start, end := f.cfg.Start.UnixNano(), f.end.UnixNano()
	src := make([]rand.PCG, n)
	next := make([]int64, n)
	for k := range src {
		src[k].Seed(mix(f.cfg.Seed, streamAgents+2*uint64(k)), mix(f.cfg.Seed, streamAgents+2*uint64(k)+1))
		next[k] = start + int64(rand.New(&src[k]).Float64()*mean)
	}
	var day []slot
	for d := start; d < end; d += int64(24 * time.Hour) {
		dayEnd := min(d+int64(24*time.Hour), end)
		day = day[:0]
		for k := range next {
			if next[k] >= dayEnd {
				continue
			}
			rng := rand.New(&src[k])
			for next[k] < dayEnd {
				day = append(day, slot{start: next[k], agent: int32(k), seed: [2]uint64{rng.Uint64(), rng.Uint64()}})
				next[k] += int64(floor + (mean-floor)*rng.ExpFloat64())
			}
		}
		slices.SortFunc(day, func(a, b slot) int {
			if c := cmp.Compare(a.start, b.start); c != 0 {
				return c
			}
			return cmp.Compare(a.agent, b.agent)
		})
		for _, s := range day {
			if err := fn(s); err != nil {
				return err
			}
		}
	}
	return nil
}

// Count returns the number of records of the fleet, without making them.
func (f *Fleet) Count() int {
	n := 0
	f.schedule(func(slot) error { n++; return nil })
	return n
}

// Records calls fn with every record of the period, in order of start time,
// each a new value that fn may keep. The records are the same at every call.
// It stops at, and returns, the first error of fn.
func (f *Fleet) Records(fn func(*schemas.Record) error) error {
	return f.schedule(func(s slot) error { return fn(f.record(s)) })
}

// rushHour reports whether t, Unix nanoseconds, is in the rush hour of loc.
func rushHour(t int64, loc *time.Location) bool {
	h := time.Unix(0, t).In(loc).Hour()
	return h >= RushHourStart && h < RushHourEnd
}

func r3(x float64) float64 { return math.Round(x*1000) / 1000 }

// record makes the record of one scheduled test.
func (f *Fleet) record(s slot) *schemas.Record {
	rng := rand.New(rand.NewPCG(s.seed[0], s.seed[1]))
	a, line := &f.agents[s.agent], &f.lines[s.agent]
	rush := rushHour(s.start, f.locs[line.isp])
	factor, queue := 1.0, idleQueueMS*rng.ExpFloat64()
	if rush {
		factor = a.ISP.RushHour
		queue = rushQueueMS * (1 - factor) * rng.ExpFloat64()
	}
	uid := newUUID(rng)
	// The link of this test: the line's rate (plan, efficiency, rush hour,
	// noise), its round trip under this test's queueing, its loss.
	down := a.Plan.DownMbps * line.effDown * factor * math.Exp(noiseSigma*rng.NormFloat64())
	up := a.Plan.UpMbps * line.effUp * factor * math.Exp(noiseSigma*rng.NormFloat64())
	linkRTT := line.rttBase + queue

	// Latency: each round trip is the base RTT, jitter and a share of the
	// test's queueing.
	sample := func() float64 {
		return r3(line.rttBase*(1+0.03*math.Abs(rng.NormFloat64())) + queue*(0.5+rng.Float64()) + 0.3*rng.ExpFloat64())
	}
	keys := &schemas.Speedtest{ConnectMS: make([]float64, connects), RTTMS: make([]float64, rttSamples)}
	for i := range keys.ConnectMS {
		keys.ConnectMS[i] = sample()
	}
	for i := range keys.RTTMS {
		keys.RTTMS[i] = sample()
	}
	keys.RTTMedianMS = schemas.Median(keys.RTTMS)
	keys.RTTMinMS = slices.Min(keys.RTTMS)
	keys.Download = Link{RateMbps: down, RTTms: linkRTT, Loss: line.loss}.Phase(rng, 2)
	keys.Upload = Link{RateMbps: up, RTTms: linkRTT, Loss: line.loss}.Phase(rng, 2)

	// The server's view: it sent a little more than the client received
	// (the last range in flight), timed the upload over the whole phase,
	// and saw its own queue in TCP's RTT.
	dl, ul := keys.Download, keys.Upload
	ulDur := r3(ul.DurationS - 0.01*rng.Float64())
	tcpRTT := r3(keys.RTTMedianMS*(1.05+0.25*rng.Float64()) + queue)
	tcpVar := r3(tcpRTT * (0.05 + 0.2*rng.Float64()))
	lossRate := 2e-4
	if rush {
		lossRate = 1e-3
	}
	retr := uint64(float64(dl.Bytes+ul.Bytes) / 1448 * lossRate * 2 * rng.Float64())
	keys.ServerView = &schemas.SpeedtestServer{
		BytesSent:         dl.Bytes + uint64(rng.IntN(64<<10)),
		BytesReceived:     ul.Bytes,
		DownloadDurationS: r3(dl.DurationS + 0.02*rng.Float64()),
		UploadDurationS:   ulDur,
		UploadMbps:        r3(float64(ul.Bytes) * 8 / 1e6 / ulDur),
		TCPRTTMS:          &tcpRTT,
		TCPRTTVarMS:       &tcpVar,
		TCPRetransmits:    &retr,
	}
	return &schemas.Record{
		Envelope: schemas.Envelope{
			MeasurementUID: uid,
			AgentID:        a.ID,
			TestName:       schemas.SpeedtestName,
			TestVersion:    schemas.SpeedtestVersion,
			SchemaVersion:  schemas.SchemaVersion,
			StartTime:      time.Unix(0, s.start).UTC().Truncate(time.Second),
			DurationS:      r3(dl.DurationS + ul.DurationS + 0.3 + 0.5*rng.Float64() + 13*keys.RTTMedianMS/1000),
			Agent:          schemas.Agent{Software: "neubot", Version: version.Version, OS: line.os, Arch: line.arch},
			Server:         schemas.Server{ID: line.server, Version: version.Version, ClientAddress: a.Addr.String()},
			Consent:        schemas.Consent{Informed: true, CanCollect: true, CanPublish: true},
			Synthetic:      true,
		},
		TestKeys: keys,
	}
}
