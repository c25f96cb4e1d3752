package schemas

import "fmt"

// BitTorrentName is the test_name of the BitTorrent differential test.
const BitTorrentName = "bittorrent"

// BitTorrentVersion is the methodology version that this software writes.
const BitTorrentVersion = "1"

// Bounds of the BitTorrent test's arrays.
const (
	MaxBitTorrentFlows       = 64
	MaxBitTorrentComparisons = 8
	MaxFlowSamples           = 128
)

// Kinds of flow, directions and outcomes of the BitTorrent test.
const (
	FlowBitTorrent = "bittorrent" // BitTorrent peer wire on the BitTorrent port
	FlowRandom     = "random"     // the same sizes and timing, random bytes, same port
	FlowNeutral    = "neutral"    // the same BitTorrent bytes on a neutral port

	DirDownload = "download"
	DirUpload   = "upload"

	OutcomeDifferentiation = "differentiation"
	OutcomeNone            = "none"
	OutcomeInconclusive    = "inconclusive"
)

// BitTorrent is the record of the BitTorrent differential test: flows of
// BitTorrent peer wire and of two controls, interleaved, in both
// directions, with their throughput over time, and the comparisons of the
// BitTorrent flows with each control (spec/bittorrent.md).
type BitTorrent struct {
	BitTorrentPort  uint16                 `json:"bittorrent_port" doc:"TCP port of the BitTorrent and random flows on the test server (6881 by default)."`
	NeutralPort     uint16                 `json:"neutral_port" doc:"TCP port of the neutral-port control flows on the test server."`
	FlowDurationS   float64                `json:"flow_duration_s" v:"min=0,max=60" doc:"Planned duration of each flow, seconds."`
	SampleEveryS    float64                `json:"sample_every_s" v:"min=0,max=10" doc:"Throughput sampling period, seconds."`
	WarmupS         float64                `json:"warmup_s" v:"min=0,max=60" doc:"Samples before this time since the start of a flow are left out of the comparisons (TCP slow start), seconds."`
	Flows           []BitTorrentFlow       `json:"flows" v:"maxitems=64" doc:"Every flow, in the order run."`
	Comparisons     []BitTorrentComparison `json:"comparisons" v:"maxitems=8" doc:"BitTorrent flows against each control, per direction."`
	DownloadOutcome string                 `json:"download_outcome" v:"enum=differentiation|none|inconclusive" doc:"Combined outcome of the download comparisons."`
	UploadOutcome   string                 `json:"upload_outcome" v:"enum=differentiation|none|inconclusive" doc:"Combined outcome of the upload comparisons."`
	Outcome         string                 `json:"outcome" v:"enum=differentiation|none|inconclusive" doc:"Outcome of the test: differentiation when any comparison found it, none when all found none, inconclusive otherwise."`
	ServerView      *BitTorrentServer      `json:"server_view,omitempty" doc:"What the test server measured itself. Present in the authoritative record merged by the server, which also fills the upload flows' samples (the server is their receiver) and recomputes the comparisons."`
}

// BitTorrentFlow is one TCP connection of the test.
type BitTorrentFlow struct {
	Index     uint16             `json:"index" v:"max=63" doc:"Position of the flow in the test, from 0."`
	Kind      string             `json:"kind" v:"required,enum=bittorrent|random|neutral" doc:"bittorrent: peer wire on the BitTorrent port; random: same sizes and timing, random bytes, same port; neutral: peer wire on the neutral port."`
	Direction string             `json:"direction" v:"required,enum=download|upload" doc:"download: the server sends pieces; upload: the client does."`
	Port      uint16             `json:"port" doc:"Server TCP port of the flow."`
	StartS    float64            `json:"start_s" v:"min=0,max=600" doc:"Start of the flow since the start of the test, seconds."`
	Bytes     uint64             `json:"bytes" doc:"Bytes the receiver read during the sampled time (all of the stream, framing included)."`
	Mbps      float64            `json:"mbps" v:"min=0,max=1000000" doc:"Mean throughput at the receiver after the warm-up, Mbit/s."`
	Samples   []ThroughputSample `json:"samples" v:"maxitems=128" doc:"Throughput at the receiver over time since the start of the flow (client for download, server for upload)."`
	Error     string             `json:"error,omitempty" v:"maxlen=256" doc:"Why the flow ended early, if it did: one of timeout, connection_reset, connection_refused, eof, closed_abnormally, canceled, protocol_violation, other; empty when it ran its course. Never an error's text (it can hold addresses): since schema version 3 the collector stores any other value as other."`
}

// BitTorrentComparison is the decision on BitTorrent flows against one
// control in one direction: a two-sample Kolmogorov–Smirnov test on the
// throughput samples plus a threshold on the difference of the medians.
type BitTorrentComparison struct {
	Direction      string  `json:"direction" v:"required,enum=download|upload" doc:"Direction of the flows compared."`
	Control        string  `json:"control" v:"required,enum=random|neutral" doc:"The control compared with the BitTorrent flows."`
	Samples        uint32  `json:"samples" doc:"Throughput samples of the BitTorrent flows used."`
	ControlSamples uint32  `json:"control_samples" doc:"Throughput samples of the control flows used."`
	MedianMbps     float64 `json:"median_mbps" v:"min=0,max=1000000" doc:"Median of the BitTorrent samples, Mbit/s."`
	ControlMedian  float64 `json:"control_median_mbps" v:"min=0,max=1000000" doc:"Median of the control samples, Mbit/s."`
	DiffPct        float64 `json:"diff_pct" v:"min=-1000000,max=100" doc:"How much lower the BitTorrent median is than the control's, percent of the control's (negative: BitTorrent was faster)."`
	KSD            float64 `json:"ks_d" v:"min=0,max=1" doc:"Two-sample Kolmogorov–Smirnov statistic D of the two sets of samples."`
	KSP            float64 `json:"ks_p" v:"min=0,max=1" doc:"p-value of D (exact for small samples, asymptotic above 10,000 pairs)."`
	Alpha          float64 `json:"alpha" v:"min=0,max=1" doc:"Significance level the p-value was compared with."`
	ThresholdPct   float64 `json:"threshold_pct" v:"min=0,max=100" doc:"Smallest diff_pct that counts as differentiation."`
	Reps           uint8   `json:"reps" doc:"Repetitions with samples of both kinds."`
	RepsSlower     uint8   `json:"reps_slower" doc:"Repetitions whose BitTorrent flow's median is at least threshold_pct below the control flow's of the same repetition."`
	Outcome        string  `json:"outcome" v:"required,enum=differentiation|none|inconclusive" doc:"differentiation: ks_p < alpha, diff_pct >= threshold_pct and reps_slower = reps; inconclusive: too few samples, or diff_pct >= threshold_pct without the other two; none otherwise."`
}

// BitTorrentServer is the test server's view of a BitTorrent test.
type BitTorrentServer struct {
	BytesSent     uint64 `json:"bytes_sent" doc:"Bytes the server wrote on the test's flows."`
	BytesReceived uint64 `json:"bytes_received" doc:"Bytes the server read on the test's flows."`
	Flows         uint16 `json:"flows" doc:"Flows the server accepted for this test."`
}

// bittorrentColumns are the test's own columns of its ClickHouse table, in
// the order of (*BitTorrent).Values.
var bittorrentColumns = []string{
	"bittorrent_port", "neutral_port", "flow_duration_s", "sample_every_s", "warmup_s",
	"outcome", "download_outcome", "upload_outcome",
	"flow_index", "flow_kind", "flow_direction", "flow_port", "flow_start_s", "flow_bytes", "flow_mbps", "flow_error",
	"flow_samples_t_s", "flow_samples_mbps",
	"cmp_direction", "cmp_control", "cmp_samples", "cmp_control_samples", "cmp_median_mbps", "cmp_control_median_mbps",
	"cmp_diff_pct", "cmp_ks_d", "cmp_ks_p", "cmp_alpha", "cmp_threshold_pct", "cmp_reps", "cmp_reps_slower", "cmp_outcome",
	"server_view", "sv_bytes_sent", "sv_bytes_received", "sv_flows",
}

func init() {
	Register(&Test{
		Name:     BitTorrentName,
		Versions: []string{BitTorrentVersion},
		Table:    "bittorrent",
		Columns:  bittorrentColumns,
		NewKeys:  func() TestKeys { return new(BitTorrent) },
		Decode:   DecodeAs[BitTorrent],
	})
}

// Authoritative reports whether the record was merged by the server.
func (b *BitTorrent) Authoritative() bool { return b.ServerView != nil }

// Check implements TestKeys.
func (b *BitTorrent) Check(c Checker) {
	seen := map[uint16]bool{}
	for i, f := range b.Flows {
		if seen[f.Index] {
			c.Add(fmt.Sprintf("flows[%d].index", i), "%d is used twice", f.Index)
		}
		seen[f.Index] = true
		prev := -1.0
		for _, s := range f.Samples {
			if s.TS < prev {
				c.Add(fmt.Sprintf("flows[%d].samples", i), "times must not decrease")
				break
			}
			prev = s.TS
		}
	}
	var down, up []string
	for _, cmp := range b.Comparisons {
		if cmp.Direction == DirDownload {
			down = append(down, cmp.Outcome)
		} else {
			up = append(up, cmp.Outcome)
		}
	}
	if want := combineOutcomes(down...); b.DownloadOutcome != want {
		c.Add("download_outcome", "is %q but the download comparisons give %q", b.DownloadOutcome, want)
	}
	if want := combineOutcomes(up...); b.UploadOutcome != want {
		c.Add("upload_outcome", "is %q but the upload comparisons give %q", b.UploadOutcome, want)
	}
	if want := combineOutcomes(b.DownloadOutcome, b.UploadOutcome); b.Outcome != want {
		c.Add("outcome", "is %q but the directions give %q", b.Outcome, want)
	}
}

// combineOutcomes mirrors the rule of internal/stats.Combine (schemas
// imports no component): differentiation if any, none if all none.
func combineOutcomes(outcomes ...string) string {
	all := len(outcomes) > 0
	for _, o := range outcomes {
		if o == OutcomeDifferentiation {
			return OutcomeDifferentiation
		}
		all = all && o == OutcomeNone
	}
	if all {
		return OutcomeNone
	}
	return OutcomeInconclusive
}

// Values implements TestKeys.
func (b *BitTorrent) Values(dst []any) []any {
	n := len(b.Flows)
	idx, ports := make([]uint16, n), make([]uint16, n)
	kind, dir, errs := make([]string, n), make([]string, n), make([]string, n)
	start, mbps := make([]float64, n), make([]float64, n)
	bytes := make([]uint64, n)
	ts, sm := make([][]float64, n), make([][]float64, n)
	for i, f := range b.Flows {
		idx[i], kind[i], dir[i], ports[i], start[i], bytes[i], mbps[i], errs[i] = f.Index, f.Kind, f.Direction, f.Port, f.StartS, f.Bytes, f.Mbps, Failure(f.Error)
		ts[i], sm[i] = make([]float64, len(f.Samples)), make([]float64, len(f.Samples))
		for j, s := range f.Samples {
			ts[i][j], sm[i][j] = s.TS, s.Mbps
		}
	}
	dst = append(dst, b.BitTorrentPort, b.NeutralPort, b.FlowDurationS, b.SampleEveryS, b.WarmupS,
		b.Outcome, b.DownloadOutcome, b.UploadOutcome,
		idx, kind, dir, ports, start, bytes, mbps, errs, ts, sm)
	k := len(b.Comparisons)
	cd, cc, co := make([]string, k), make([]string, k), make([]string, k)
	cn, ccn := make([]uint32, k), make([]uint32, k)
	cr, crs := make([]uint8, k), make([]uint8, k)
	cm, ccm, cdp, ckd, ckp, ca, ct := make([]float64, k), make([]float64, k), make([]float64, k), make([]float64, k), make([]float64, k), make([]float64, k), make([]float64, k)
	for i, x := range b.Comparisons {
		cd[i], cc[i], co[i], cn[i], ccn[i], cr[i], crs[i] = x.Direction, x.Control, x.Outcome, x.Samples, x.ControlSamples, x.Reps, x.RepsSlower
		cm[i], ccm[i], cdp[i], ckd[i], ckp[i], ca[i], ct[i] = x.MedianMbps, x.ControlMedian, x.DiffPct, x.KSD, x.KSP, x.Alpha, x.ThresholdPct
	}
	dst = append(dst, cd, cc, cn, ccn, cm, ccm, cdp, ckd, ckp, ca, ct, cr, crs, co)
	sv := b.ServerView
	if sv == nil {
		sv = &BitTorrentServer{}
	}
	return append(dst, boolU8(b.ServerView != nil), sv.BytesSent, sv.BytesReceived, sv.Flows)
}
