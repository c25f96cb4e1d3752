// Package schemastest makes valid records for tests and benchmarks.
package schemastest

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/schemas"
)

// Speedtest returns a valid, plausible speedtest record drawn from rng:
// an agent behind clientAddr measuring about mbps. uids are random UUIDs from
// rng, so the same seed gives the same records.
func Speedtest(rng *rand.Rand, start time.Time, clientAddr string, mbps float64) *schemas.Record {
	uid := func() string { return randomUUID(rng) }
	rtt := make([]float64, 10)
	for i := range rtt {
		rtt[i] = r3(10 + rng.Float64()*20)
	}
	phase := func(goodput float64) schemas.SpeedtestPhase {
		p := schemas.SpeedtestPhase{GoodputMbps: goodput, DurationS: 3, Connections: 2}
		p.Samples, p.Bytes = samples(rng, goodput, 12)
		return p
	}
	tcpRTT := r3(rtt[0] * 0.9)
	retr := uint64(rng.UintN(20))
	keys := &schemas.Speedtest{
		ConnectMS:   []float64{r3(rtt[0] * 1.1), r3(rtt[1] * 1.1)},
		RTTMS:       rtt,
		RTTMedianMS: schemas.Median(rtt),
		Download:    phase(mbps),
		Upload:      phase(mbps / 4),
	}
	keys.ServerView = &schemas.SpeedtestServer{
		BytesSent: keys.Download.Bytes, BytesReceived: keys.Upload.Bytes,
		DownloadDurationS: 3, UploadDurationS: 3, UploadMbps: keys.Upload.GoodputMbps,
		TCPRTTMS: &tcpRTT, TCPRetransmits: &retr,
	}
	return &schemas.Record{
		Envelope: schemas.Envelope{
			MeasurementUID: uid(),
			AgentID:        uid(),
			TestName:       schemas.SpeedtestName,
			TestVersion:    schemas.SpeedtestVersion,
			SchemaVersion:  schemas.SchemaVersion,
			StartTime:      start.UTC().Truncate(time.Second),
			DurationS:      7,
			Agent:          schemas.Agent{Software: "neubot", Version: "0.1.0", OS: "linux", Arch: "amd64"},
			Server:         schemas.Server{ID: ServerID, Version: "0.1.0", ClientAddress: clientAddr},
			Consent:        schemas.Consent{Informed: true, CanCollect: true, CanPublish: true},
			Synthetic:      true,
		},
		TestKeys: keys,
	}
}

// randomUUID is a version 4 UUID drawn from rng.
// ServerID is the server.id of the records made here, and ServerKey the
// identity it is enrolled with in Enrolled: records signed by it (Signed)
// are verified by a collector with that allow-list.
const ServerID = "testserver-1"

var ServerKey = func() *identity.Key {
	seed := sha256.Sum256([]byte("neubot schemastest " + ServerID))
	return identity.KeyFromSeed(seed[:])
}()

// Enrolled is an allow-list where ServerKey is enrolled as ServerID.
func Enrolled() *identity.AllowList {
	return identity.StaticAllowList(identity.Enrolled{Key: ServerKey.PublicKey(), ID: ServerID})
}

// Signed is the NDJSON of recs signed by ServerKey, as a test server's
// forwarder sends them.
func Signed(recs ...*schemas.Record) []byte {
	lines := make([][]byte, len(recs))
	for i, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			panic(err)
		}
		lines[i] = b
	}
	signed, err := ServerKey.SignRecords(lines)
	if err != nil {
		panic(err)
	}
	var out []byte
	for _, l := range signed {
		out = append(append(out, l...), '\n')
	}
	return out
}

func randomUUID(rng *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	u, _ := uuid.FromBytes(b[:])
	u[6] = (u[6] & 0x0f) | 0x40
	u[8] = (u[8] & 0x3f) | 0x80
	return u.String()
}

func r3(x float64) float64 { return math.Round(x*1000) / 1000 }

// NDT7 returns a valid, plausible ndt7 record merged by a test server:
// name is schemas.NDT7Name or schemas.NDT7BrowserName, the client behind
// clientAddr measuring about mbps.
func NDT7(rng *rand.Rand, name string, start time.Time, clientAddr string, mbps float64) *schemas.Record {
	tcp := func(el float64) *schemas.NDT7TCPInfo {
		rtt := r3(10 + rng.Float64()*20)
		return &schemas.NDT7TCPInfo{ElapsedS: el, RTTMS: rtt, MinRTTMS: r3(rtt * 0.8), RTTVarMS: r3(rtt / 10),
			BytesAcked: uint64(mbps * 1e6 / 8 * el), BytesSent: uint64(mbps * 1e6 / 8 * el * 1.01),
			BytesRetrans: uint64(rng.UintN(100000)), BusyS: r3(el * 0.9)}
	}
	subtest := func(goodput float64, at string) (*schemas.NDT7Subtest, *schemas.NDT7ServerSubtest) {
		s := &schemas.NDT7Subtest{GoodputMbps: r3(goodput), MeasuredAt: at, DurationS: 10, UUID: randomUUID(rng)}
		s.Samples, s.Bytes = samples(rng, goodput, 40)
		total := s.Bytes
		s.Server = &schemas.NDT7Measurement{AppElapsedS: 10, AppBytes: total, TCPInfo: tcp(10)}
		sv := &schemas.NDT7ServerSubtest{UUID: s.UUID, Bytes: total, DurationS: 10, GoodputMbps: r3(goodput),
			MaxMessageBytes: 1 << 20, TCPInfo: tcp(10)}
		return s, sv
	}
	keys := &schemas.NDT7{ServerView: &schemas.NDT7ServerView{}}
	keys.Download, keys.ServerView.Download = subtest(mbps, "client")
	keys.Upload, keys.ServerView.Upload = subtest(mbps/4, "server")
	agent := schemas.Agent{Software: "neubot", Version: "0.1.0", OS: "linux", Arch: "amd64"}
	if name == schemas.NDT7BrowserName {
		agent = schemas.Agent{Software: "m-lab/ndt7", Version: "0.1.4"}
	}
	return &schemas.Record{
		Envelope: schemas.Envelope{
			MeasurementUID: randomUUID(rng),
			AgentID:        randomUUID(rng),
			TestName:       name,
			TestVersion:    schemas.NDT7Version,
			SchemaVersion:  schemas.SchemaVersion,
			StartTime:      start.UTC().Truncate(time.Second),
			DurationS:      21,
			Agent:          agent,
			Server:         schemas.Server{ID: ServerID, Version: "0.1.0", ClientAddress: clientAddr},
			Consent:        schemas.Consent{Informed: true, CanCollect: true, CanPublish: true},
			Synthetic:      true,
		},
		TestKeys: keys,
	}
}

// Line returns the record as one NDJSON line, newline included.
func Line(r *schemas.Record) []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("schemastest: %v", err))
	}
	return append(b, '\n')
}

// BitTorrent returns a valid BitTorrent differential record drawn from rng
// whose outcome is outcome (differentiation: the BitTorrent flows ran at a
// fifth of the controls' mbps in both directions; none: all flows alike;
// inconclusive: one comparison had too few samples).
func BitTorrent(rng *rand.Rand, start time.Time, clientAddr string, mbps float64, outcome string) *schemas.Record {
	rec := Speedtest(rng, start, clientAddr, mbps)                                 // for its envelope
	rec.TestName, rec.TestVersion, rec.DurationS = schemas.BitTorrentName, "1", 48 // the three kinds of version 1
	r3 := func(x float64) float64 { return math.Round(x*1000) / 1000 }
	keys := &schemas.BitTorrent{BitTorrentPort: 6881, NeutralPort: 9776, FlowDurationS: 2.5, SampleEveryS: 0.25, WarmupS: 0.5}
	at := 0.0
	for rep := 0; rep < 3; rep++ {
		for _, dir := range []string{schemas.DirDownload, schemas.DirUpload} {
			for _, kind := range []string{schemas.FlowBitTorrent, schemas.FlowRandom, schemas.FlowNeutral} {
				rate := mbps
				if outcome == schemas.OutcomeDifferentiation && kind == schemas.FlowBitTorrent {
					rate = mbps / 5
				}
				port := keys.BitTorrentPort
				if kind == schemas.FlowNeutral {
					port = keys.NeutralPort
				}
				f := schemas.BitTorrentFlow{Index: uint16(len(keys.Flows)), Kind: kind, Direction: dir, Port: port, StartS: r3(at)}
				var total uint64
				for i := 1; i <= 10; i++ {
					m := r3(rate * (0.95 + rng.Float64()*0.1))
					total += uint64(m * 1e6 / 8 * 0.25)
					f.Samples = append(f.Samples, schemas.ThroughputSample{TS: float64(i) * 0.25, Bytes: total, Mbps: m})
				}
				f.Bytes, f.Mbps = total, r3(rate)
				keys.Flows = append(keys.Flows, f)
				at += 2.6
			}
		}
	}
	for _, dir := range []string{schemas.DirDownload, schemas.DirUpload} {
		for _, ctl := range []string{schemas.FlowRandom, schemas.FlowNeutral} {
			c := schemas.BitTorrentComparison{Direction: dir, Control: ctl, Samples: 24, ControlSamples: 24,
				MedianMbps: mbps, ControlMedian: mbps, DiffPct: 0, KSD: 0.2, KSP: 0.6, Alpha: 0.05, ThresholdPct: 25, Reps: 3, Outcome: schemas.OutcomeNone}
			switch {
			case outcome == schemas.OutcomeDifferentiation:
				c.MedianMbps, c.DiffPct, c.KSD, c.KSP, c.RepsSlower, c.Outcome = r3(mbps/5), 80, 1, 3e-14, 3, schemas.OutcomeDifferentiation
			case outcome == schemas.OutcomeInconclusive && dir == schemas.DirUpload && ctl == schemas.FlowNeutral:
				c.ControlSamples, c.KSD, c.KSP, c.Outcome = 3, 0, 1, schemas.OutcomeInconclusive
			}
			keys.Comparisons = append(keys.Comparisons, c)
		}
	}
	keys.DownloadOutcome = schemas.OutcomeNone
	keys.UploadOutcome = schemas.OutcomeNone
	switch outcome {
	case schemas.OutcomeDifferentiation:
		keys.DownloadOutcome, keys.UploadOutcome = outcome, outcome
	case schemas.OutcomeInconclusive:
		keys.UploadOutcome = outcome
	}
	keys.Outcome = outcome
	keys.ServerView = &schemas.BitTorrentServer{BytesSent: 1 << 24, BytesReceived: 1 << 24, Flows: uint16(len(keys.Flows))}
	rec.TestKeys = keys
	return rec
}

// Generators make a plausible record of each registered test, by name: a
// test that stores records adds its generator here, with its record type,
// and publish's TestExportEveryTest round-trips its table through the dumps.
var Generators = map[string]func(rng *rand.Rand, start time.Time, clientAddr string, mbps float64) *schemas.Record{
	schemas.SpeedtestName: Speedtest,
	schemas.NDT7Name: func(rng *rand.Rand, start time.Time, addr string, mbps float64) *schemas.Record {
		return NDT7(rng, schemas.NDT7Name, start, addr, mbps)
	},
	schemas.NDT7BrowserName: func(rng *rand.Rand, start time.Time, addr string, mbps float64) *schemas.Record {
		return NDT7(rng, schemas.NDT7BrowserName, start, addr, mbps)
	},
	schemas.BitTorrentName: func(rng *rand.Rand, start time.Time, addr string, mbps float64) *schemas.Record {
		outcomes := []string{schemas.OutcomeDifferentiation, schemas.OutcomeNone, schemas.OutcomeInconclusive}
		return BitTorrent(rng, start, addr, mbps, outcomes[rng.IntN(3)])
	},
	schemas.PingName: Ping,
	schemas.ReplayName: func(rng *rand.Rand, start time.Time, addr string, mbps float64) *schemas.Record {
		return Replay(rng, start, addr, mbps, rng.IntN(2) == 0)
	},
}

// Ping returns a valid ping record drawn from rng (mbps is not used).
func Ping(rng *rand.Rand, start time.Time, clientAddr string, _ float64) *schemas.Record {
	rec := Speedtest(rng, start, clientAddr, 1)
	keys := &schemas.Ping{RTTMS: rec.TestKeys.(*schemas.Speedtest).RTTMS}
	keys.RTTMinMS, keys.RTTMedianMS = slices.Min(keys.RTTMS), schemas.Median(keys.RTTMS)
	rtt := r3(keys.RTTMinMS * 0.9)
	keys.ServerView = &schemas.PingServer{Echoed: uint32(len(keys.RTTMS)), TCPRTTMS: &rtt}
	rec.TestName, rec.TestVersion, rec.DurationS, rec.TestKeys = schemas.PingName, schemas.PingVersion, 1, keys
	return rec
}

// Replay returns a valid replay differential record drawn from rng: 4
// repetitions of original and inverted flows of the tls-video trace at
// about mbps, the original ones at a fifth of it when throttled.
func Replay(rng *rand.Rand, start time.Time, clientAddr string, mbps float64, throttled bool) *schemas.Record {
	rec := Speedtest(rng, start, clientAddr, mbps) // for its envelope
	rec.TestName, rec.TestVersion, rec.DurationS = schemas.ReplayName, schemas.ReplayVersion, 30
	r3 := func(x float64) float64 { return math.Round(x*1000) / 1000 }
	keys := &schemas.Replay{Trace: "tls-video", TraceVersion: 1, SNI: "video.example.net", Port: 443, FlowDurationS: 3, SampleEveryS: 0.25, WarmupS: 0.5}
	for i := 0; i < 8; i++ {
		kind := []string{schemas.ReplayOriginal, schemas.ReplayInverted}[(i+i/2)%2]
		rate := mbps
		if throttled && kind == schemas.ReplayOriginal {
			rate = mbps / 5
		}
		f := schemas.ReplayFlow{Index: uint16(i), Kind: kind, StartS: r3(float64(i) * 3.2)}
		var total uint64
		for j := 1; j <= 12; j++ {
			m := r3(rate * (0.95 + rng.Float64()*0.1))
			total += uint64(m * 1e6 / 8 * 0.25)
			f.Samples = append(f.Samples, schemas.ThroughputSample{TS: float64(j) * 0.25, Bytes: total, Mbps: m})
		}
		f.Bytes, f.Mbps, f.ClientMbps = total, r3(rate), r3(rate)
		keys.Flows = append(keys.Flows, f)
	}
	c := &schemas.BitTorrentComparison{Direction: schemas.DirDownload, Tested: schemas.ReplayOriginal, Control: schemas.ReplayInverted, Factor: "payload",
		Samples: 40, ControlSamples: 40, MedianMbps: mbps, ControlMedian: mbps, KSD: 0.2, KSP: 0.6, Alpha: 0.05, ThresholdPct: 25, Reps: 4, Outcome: schemas.OutcomeNone}
	if throttled {
		c.MedianMbps, c.DiffPct, c.KSD, c.KSP, c.RepsSlower, c.Outcome = r3(mbps/5), 80, 1, 1e-12, 4, schemas.OutcomeDifferentiation
	}
	keys.Comparison, keys.Outcome = c, c.Outcome
	keys.ServerView = &schemas.ReplayServer{BytesSent: 1 << 24, BytesReceived: 1 << 12, Flows: 8}
	rec.TestKeys = keys
	return rec
}

// samples draws n throughput samples a quarter of a second apart, each
// within 10% of goodput, and returns them with the bytes they add up to.
func samples(rng *rand.Rand, goodput float64, n int) ([]schemas.ThroughputSample, uint64) {
	var out []schemas.ThroughputSample
	var total uint64
	for i := 1; i <= n; i++ {
		m := r3(goodput * (0.9 + rng.Float64()*0.2))
		total += uint64(m * 1e6 / 8 * 0.25)
		out = append(out, schemas.ThroughputSample{TS: float64(i) * 0.25, Bytes: total, Mbps: m})
	}
	return out, total
}
