package schemas

import (
	"fmt"

	"github.com/neubot/neubot/internal/stats"
)

// BitTorrentName is the test_name of the BitTorrent differential test.
const BitTorrentName = "bittorrent"

// BitTorrentVersion is the methodology version that this software writes
// by default: 2 is the factorial design (payload × port × server address,
// both directions, server-side samples, blocking), one flow at a time; 1
// had three kinds of flow.
const BitTorrentVersion = "2"

// BitTorrentVersionDuels is the methodology of the duels option (3): the
// flows of the factorial design two at a time, a tested flow and its
// control meeting the same cross traffic, both directions at once.
const BitTorrentVersionDuels = "3"

// Bounds of the BitTorrent test's arrays.
const (
	MaxBitTorrentFlows       = 128
	MaxBitTorrentComparisons = 32
	MaxFlowSamples           = 128
)

// Kinds of flow, directions and outcomes of the BitTorrent test.
const (
	FlowBitTorrent = "bittorrent" // BitTorrent peer wire on the BitTorrent port
	FlowRandom     = "random"     // the same sizes and timing, random bytes, same port
	FlowNeutral    = "neutral"    // the same BitTorrent bytes on a neutral port
	// Version 2 completes the grid: payload {BitTorrent, random} × port
	// {BitTorrent's, a neutral one, 443}.
	FlowRandomNeutral = "random_neutral" // random bytes on the neutral port
	FlowWeb           = "web"            // BitTorrent bytes on port 443
	FlowRandomWeb     = "random_web"     // random bytes on port 443

	PayloadBitTorrent = "bittorrent"
	PayloadRandom     = "random"
	PortApplication   = "application"
	PortNeutral       = "neutral"
	PortWeb           = "web"

	// Attributions of a difference (or of blocking), as Glasnost's.
	AttributionPayload = "payload" // BitTorrent bytes, whatever the port
	AttributionPort    = "port"    // the port, whatever the bytes
	AttributionBoth    = "both"    // only BitTorrent bytes on BitTorrent's port
	AttributionHost    = "host"    // one server address, whatever the flow
	AttributionMixed   = "mixed"   // the two directions attribute differently

	DirDownload = "download"
	DirUpload   = "upload"

	OutcomeDifferentiation = "differentiation"
	OutcomeNone            = "none"
	OutcomeInconclusive    = "inconclusive"
	OutcomeBlocked         = "blocked"
)

// FlowKinds are the kinds of flow of methodology version 2, in the order of
// a repetition before rotation; KindCell gives each one's payload and port.
var FlowKinds = []string{FlowBitTorrent, FlowRandom, FlowNeutral, FlowRandomNeutral, FlowWeb, FlowRandomWeb}

// KindCell returns the payload and the port role of a kind of flow.
func KindCell(kind string) (payload, port string) {
	switch kind {
	case FlowBitTorrent:
		return PayloadBitTorrent, PortApplication
	case FlowRandom:
		return PayloadRandom, PortApplication
	case FlowNeutral:
		return PayloadBitTorrent, PortNeutral
	case FlowRandomNeutral:
		return PayloadRandom, PortNeutral
	case FlowWeb:
		return PayloadBitTorrent, PortWeb
	case FlowRandomWeb:
		return PayloadRandom, PortWeb
	}
	return "", ""
}

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
	Flows           []BitTorrentFlow       `json:"flows" v:"maxitems=128" doc:"Every flow, in the order run."`
	Comparisons     []BitTorrentComparison `json:"comparisons" v:"maxitems=32" doc:"Tested flows against each control, per direction (version 1: BitTorrent against random and neutral; version 2: the grid's pairs and each server address against the others)."`
	DownloadOutcome string                 `json:"download_outcome" v:"enum=differentiation|none|inconclusive|blocked" doc:"Outcome of the download direction (version 1: combined outcome of its comparisons; version 2: see spec/bittorrent.md, How it decides)."`
	UploadOutcome   string                 `json:"upload_outcome" v:"enum=differentiation|none|inconclusive|blocked" doc:"Outcome of the upload direction, as download_outcome (version 2: empty when the test ran no flow in that direction)."`
	Outcome         string                 `json:"outcome" v:"enum=differentiation|none|inconclusive|blocked" doc:"Outcome of the test. Version 1: differentiation when any comparison found it, none when all found none, inconclusive otherwise. Version 2: blocked when a direction is blocked, else differentiation when a direction is, none when both are none, inconclusive otherwise."`
	ServerView      *BitTorrentServer      `json:"server_view,omitempty" doc:"What the test server measured itself. Present in the authoritative record merged by the server, which also fills the upload flows' samples (the server is their receiver) and recomputes the comparisons."`
	// Methodology version 2.
	WebPort             uint16              `json:"web_port,omitempty" doc:"Version 2: TCP port of the web-port flows (443 in production; 0: none were run)."`
	Hosts               uint8               `json:"hosts,omitempty" v:"max=8" doc:"Version 2: server addresses the flows were spread over (flows[].host indexes them; the addresses are not recorded)."`
	MaxFlowBytes        uint64              `json:"max_flow_bytes,omitempty" doc:"Version 2: a flow ends once its receiver has read this many bytes (with flow_duration_s: the flow length asked for)."`
	DownloadAttribution string              `json:"download_attribution,omitempty" v:"enum=payload|port|both|host" doc:"Version 2: what the download differentiation or blocking is attributed to: payload (BitTorrent bytes on any port), port (the port, any bytes), both (only BitTorrent bytes on BitTorrent's port), host (one server address); empty when the outcome is neither."`
	UploadAttribution   string              `json:"upload_attribution,omitempty" v:"enum=payload|port|both|host" doc:"Version 2: the same for upload."`
	Attribution         string              `json:"attribution,omitempty" v:"enum=payload|port|both|host|mixed" doc:"Version 2: the attribution of the direction(s) that gave the test's outcome; mixed when the two directions differ."`
	Blocked             []BitTorrentBlocked `json:"blocked,omitempty" v:"maxitems=12" doc:"Version 2: the evidence of blocking: every kind of flow that failed in most of its repetitions while others ran."`
	ClientCheckFlows    uint16              `json:"client_check_flows,omitempty" doc:"Version 2: download flows whose mean throughput the client measured as receiver and the server as sender (the server's is the one used)."`
	ClientCheckDisagree uint16              `json:"client_check_disagree,omitempty" doc:"Version 2: of those, flows where the two differ by more than 25% of the server's."`
}

// BitTorrentBlocked is one kind of flow, in one direction, that failed in
// most repetitions: the evidence of an outcome blocked.
type BitTorrentBlocked struct {
	Direction string `json:"direction" v:"required,enum=download|upload" doc:"Direction of the flows."`
	Kind      string `json:"kind" v:"required,enum=bittorrent|random|neutral|random_neutral|web|random_web" doc:"Kind of the flows."`
	Failure   string `json:"failure" v:"required,enum=timeout|connection_reset|connection_refused|eof|closed_abnormally|canceled|protocol_violation|other" doc:"The most common failure among them (schemas/failure.go's vocabulary; timeout is a stall: no byte for the stall time)."`
	Flows     uint8  `json:"flows" doc:"Flows of this kind and direction."`
	Failed    uint8  `json:"failed" doc:"Of those, flows that failed."`
}

// BitTorrentFlow is one TCP connection of the test.
type BitTorrentFlow struct {
	Index     uint16             `json:"index" v:"max=127" doc:"Position of the flow in the test, from 0."`
	Kind      string             `json:"kind" v:"required,enum=bittorrent|random|neutral|random_neutral|web|random_web" doc:"bittorrent: peer wire on the BitTorrent port; random: same sizes and timing, random bytes, same port; neutral: peer wire on the neutral port; version 2 adds random_neutral (random bytes, neutral port), web (peer wire on port 443) and random_web (random bytes on port 443)."`
	Direction string             `json:"direction" v:"required,enum=download|upload" doc:"download: the server sends pieces; upload: the client does."`
	Port      uint16             `json:"port" doc:"Server TCP port of the flow."`
	StartS    float64            `json:"start_s" v:"min=0,max=600" doc:"Start of the flow since the start of the test, seconds. Version 3: the two flows of a duel (run at the same time, same direction, next to each other in flows) have the same start_s, the start of the duel."`
	Bytes     uint64             `json:"bytes" doc:"Bytes the receiver read during the sampled time (all of the stream, framing included)."`
	Mbps      float64            `json:"mbps" v:"min=0,max=1000000" doc:"Mean throughput at the receiver after the warm-up, Mbit/s."`
	Samples   []ThroughputSample `json:"samples" v:"maxitems=128" doc:"Throughput at the receiver over time since the start of the flow (client for download, server for upload)."`
	Error     string             `json:"error,omitempty" v:"maxlen=256" doc:"Why the flow ended early, if it did, as the client saw it; empty when it ran its course. Version 2: a word of schemas/failure.go's vocabulary (timeout, connection_reset, ...); version 1 had the error's text."`
	// Methodology version 2.
	Payload       string             `json:"payload,omitempty" v:"enum=bittorrent|random" doc:"Version 2: the flow's bytes: bittorrent (peer wire) or random (same sizes and timing)."`
	PortRole      string             `json:"port_role,omitempty" v:"enum=application|neutral|web" doc:"Version 2: the flow's server port: application (BitTorrent's), neutral, or web (443)."`
	Host          uint8              `json:"host,omitempty" v:"max=7" doc:"Version 2: index of the server address the flow went to (0 to hosts-1), as the server saw it."`
	ServerSamples []ThroughputSample `json:"server_samples,omitempty" v:"maxitems=128" doc:"Version 2: throughput over time as the server measured it, in both directions: bytes the client acknowledged (TCP_INFO) in download, bytes read in upload. The comparisons use these."`
	ServerMbps    float64            `json:"server_mbps,omitempty" v:"min=0,max=1000000" doc:"Version 2: mean throughput after the warm-up from server_samples, Mbit/s."`
	ServerError   string             `json:"server_error,omitempty" v:"enum=timeout|connection_reset|connection_refused|eof|closed_abnormally|canceled|protocol_violation|other|unseen" doc:"Version 2: why the flow ended early as the server saw it (unseen: the server never admitted it)."`
	Pipeline      uint16             `json:"pipeline,omitempty" doc:"Version 2: the most block requests the leecher kept outstanding (sized from throughput × round-trip time)."`
}

// BitTorrentComparison is the decision on BitTorrent flows against one
// control in one direction: a two-sample Kolmogorov–Smirnov test on the
// throughput samples plus a threshold on the difference of the medians.
type BitTorrentComparison struct {
	Direction      string  `json:"direction" v:"required,enum=download|upload" doc:"Direction of the flows compared."`
	Control        string  `json:"control" v:"required,enum=random|neutral|random_neutral|web|random_web|other_hosts|inverted|random_payload|neutral_port|web_port|random_and_neutral" doc:"The control compared with the tested flows: a kind; other_hosts, the flows to every other server address; since v2.1.0 a set of kinds: random_payload (random bytes, each paired with the BitTorrent flow of its port), neutral_port and web_port (the flows on that port, each paired with the flow of the same payload), random_and_neutral (the random and neutral flows, each paired with the BitTorrent flow)."`
	Samples        uint32  `json:"samples" doc:"Throughput samples of the tested flows used (after the warm-up)."`
	ControlSamples uint32  `json:"control_samples" doc:"Throughput samples of the control flows used (after the warm-up)."`
	MedianMbps     float64 `json:"median_mbps" v:"min=0,max=1000000" doc:"Median of the tested flows' samples, Mbit/s."`
	ControlMedian  float64 `json:"control_median_mbps" v:"min=0,max=1000000" doc:"Median of the control samples, Mbit/s."`
	DiffPct        float64 `json:"diff_pct" v:"min=-1000000,max=100" doc:"How much lower the tested median is than the control's, percent of the control's (negative: the tested flows were faster)."`
	KSD            float64 `json:"ks_d" v:"min=0,max=1" doc:"Two-sample Kolmogorov–Smirnov statistic D of the two sets of samples."`
	KSP            float64 `json:"ks_p" v:"min=0,max=1" doc:"p-value of D (exact for small samples, asymptotic above 10,000 pairs)."`
	Alpha          float64 `json:"alpha" v:"min=0,max=1" doc:"Significance level the p-value was compared with."`
	ThresholdPct   float64 `json:"threshold_pct" v:"min=0,max=100" doc:"Smallest diff_pct that counts as differentiation."`
	Reps           uint8   `json:"reps" doc:"Pairs of flows compared (version 1 and 2.0: repetitions with samples of both kinds; since v2.1.0: pairs of a tested flow and its controls, of the same repetition or, for a host, next to it in time, run without failure, with samples in their tail)."`
	RepsSlower     uint8   `json:"reps_slower" doc:"Pairs whose tested flow is at least threshold_pct slower than its control (version 1 and 2.0: the medians of the flows; since v2.1.0: than each of its controls, by the mean throughput of the flows' tails, from the later of the warm-up and the middle of the flow)."`
	Outcome        string  `json:"outcome" v:"required,enum=differentiation|none|inconclusive" doc:"Since v2.1.0: differentiation when the p-value of reps_slower slower pairs out of reps is below alpha, under the null that a pair's tested flow is the slowest of its m+1 flows with chance 1/(m+1) (one control: the sign test, P(Binomial(reps, 1/2) >= reps_slower)); inconclusive when the pairs that could be compared cannot reach alpha even if all were slower; none otherwise (ks_p and the medians are evidence only). Version 1 and 2.0: differentiation when ks_p < alpha, diff_pct >= threshold_pct and reps_slower = reps; inconclusive with too few samples, or diff_pct >= threshold_pct without the other two; none otherwise."`
	// Methodology version 2.
	Tested string `json:"tested,omitempty" v:"enum=bittorrent|random|neutral|random_neutral|web|original|host_0|host_1|host_2|host_3|host_4|host_5|host_6|host_7|bittorrent_payload|application_port|neutral_port" doc:"Version 2: the flows tested against the control: a kind; host_N, the flows to server address N; since v2.1.0 a set of kinds: bittorrent_payload (the flows carrying BitTorrent bytes), application_port and neutral_port (the flows on that port). Version 1: always bittorrent."`
	Factor string `json:"factor,omitempty" v:"enum=payload|port|host|both" doc:"Version 2: the factor the comparison isolates: payload (same port), port (same payload), host (same mix of flows), both (since v2.1.0: BitTorrent bytes on BitTorrent's port against each single-factor control)."`
}

// BitTorrentServer is the test server's view of a BitTorrent test (and of a
// replay test: ReplayServer).
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
	// Methodology version 2 (migration 0010).
	"web_port", "hosts", "max_flow_bytes", "download_attribution", "upload_attribution", "attribution",
	"client_check_flows", "client_check_disagree",
	"flow_payload", "flow_port_role", "flow_host", "flow_server_samples_t_s", "flow_server_samples_mbps", "flow_server_mbps",
	"flow_server_error", "flow_pipeline",
	"cmp_tested", "cmp_factor",
	"blk_direction", "blk_kind", "blk_failure", "blk_flows", "blk_failed",
}

func init() {
	register[BitTorrent](BitTorrentName, "bittorrent", bittorrentColumns, "1", BitTorrentVersion, BitTorrentVersionDuels)
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
		if decreasingAt(f.Samples) >= 0 {
			c.Add(fmt.Sprintf("flows[%d].samples", i), "times must not decrease")
		}
	}
	if b.Hosts > 0 {
		b.checkV2(c)
		return
	}
	var down, up []string
	for _, cmp := range b.Comparisons {
		if cmp.Direction == DirDownload {
			down = append(down, cmp.Outcome)
		} else {
			up = append(up, cmp.Outcome)
		}
	}
	if want := stats.Combine(down...); b.DownloadOutcome != want {
		c.Add("download_outcome", "is %q but the download comparisons give %q", b.DownloadOutcome, want)
	}
	if want := stats.Combine(up...); b.UploadOutcome != want {
		c.Add("upload_outcome", "is %q but the upload comparisons give %q", b.UploadOutcome, want)
	}
	if want := stats.Combine(b.DownloadOutcome, b.UploadOutcome); b.Outcome != want {
		c.Add("outcome", "is %q but the directions give %q", b.Outcome, want)
	}
}

// checkV2 checks the outcomes of methodology version 2 against each other
// and against their evidence.
func (b *BitTorrent) checkV2(c Checker) {
	blocked := map[string]bool{}
	for _, x := range b.Blocked {
		blocked[x.Direction] = true
	}
	for _, d := range []struct{ name, outcome, attribution string }{
		{DirDownload, b.DownloadOutcome, b.DownloadAttribution}, {DirUpload, b.UploadOutcome, b.UploadAttribution},
	} {
		switch {
		case d.outcome == OutcomeBlocked && !blocked[d.name]:
			c.Add(d.name+"_outcome", "is blocked without evidence in blocked")
		case d.outcome == OutcomeDifferentiation && d.attribution == "":
			c.Add(d.name+"_attribution", "is empty but the outcome is differentiation")
		case d.attribution != "" && d.outcome != OutcomeDifferentiation && d.outcome != OutcomeBlocked:
			c.Add(d.name+"_attribution", "is %q but the outcome is %q", d.attribution, d.outcome)
		}
	}
	if want := CombineV2(b.DownloadOutcome, b.UploadOutcome); b.Outcome != want {
		c.Add("outcome", "is %q but the directions give %q", b.Outcome, want)
	}
	if want := AttributionOf(b.Outcome, [2]string{b.DownloadOutcome, b.UploadOutcome}, [2]string{b.DownloadAttribution, b.UploadAttribution}); b.Attribution != want {
		c.Add("attribution", "is %q but the directions give %q", b.Attribution, want)
	}
}

// CombineV2 is the outcome of a version 2 test from its directions':
// blocked if either is, else differentiation if either is, none if both
// are none, inconclusive otherwise. A direction the test did not run has
// no outcome ("") and does not count.
func CombineV2(down, up string) string {
	switch {
	case down == "" && up == "":
		return OutcomeInconclusive
	case down == "":
		return up
	case up == "":
		return down
	case down == OutcomeBlocked || up == OutcomeBlocked:
		return OutcomeBlocked
	case down == OutcomeDifferentiation || up == OutcomeDifferentiation:
		return OutcomeDifferentiation
	case down == OutcomeNone && up == OutcomeNone:
		return OutcomeNone
	}
	return OutcomeInconclusive
}

// AttributionOf is the test's attribution: that of the directions whose
// outcome is the test's (blocked or differentiation), mixed when they
// differ; empty for the other outcomes.
func AttributionOf(outcome string, outcomes, attributions [2]string) string {
	if outcome != OutcomeBlocked && outcome != OutcomeDifferentiation {
		return ""
	}
	got := ""
	for i := range outcomes {
		if outcomes[i] != outcome {
			continue
		}
		switch {
		case got == "":
			got = attributions[i]
		case got != attributions[i]:
			return AttributionMixed
		}
	}
	return got
}

// Values implements TestKeys.
func (b *BitTorrent) Values(dst []any) []any {
	n := len(b.Flows)
	idx, ports := make([]uint16, n), make([]uint16, n)
	kind, dir, errs := make([]string, n), make([]string, n), make([]string, n)
	start, mbps := make([]float64, n), make([]float64, n)
	bytes := make([]uint64, n)
	for i, f := range b.Flows {
		idx[i], kind[i], dir[i], ports[i], start[i], bytes[i], mbps[i], errs[i] = f.Index, f.Kind, f.Direction, f.Port, f.StartS, f.Bytes, f.Mbps, Failure(f.Error)
	}
	ts, sm := flowSeriesColumns(b.Flows, func(f *BitTorrentFlow) []ThroughputSample { return f.Samples })
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
	dst = append(dst, boolU8(b.ServerView != nil), sv.BytesSent, sv.BytesReceived, sv.Flows)
	// Version 2.
	dst = append(dst, b.WebPort, b.Hosts, b.MaxFlowBytes, b.DownloadAttribution, b.UploadAttribution, b.Attribution,
		b.ClientCheckFlows, b.ClientCheckDisagree)
	pay, role, serr := make([]string, n), make([]string, n), make([]string, n)
	host := make([]uint8, n)
	pipe := make([]uint16, n)
	smbps := make([]float64, n)
	for i, f := range b.Flows {
		pay[i], role[i], serr[i], host[i], pipe[i], smbps[i] = f.Payload, f.PortRole, f.ServerError, f.Host, f.Pipeline, f.ServerMbps
	}
	sts, ssm := flowSeriesColumns(b.Flows, func(f *BitTorrentFlow) []ThroughputSample { return f.ServerSamples })
	dst = append(dst, pay, role, host, sts, ssm, smbps, serr, pipe)
	ctested, cfactor := make([]string, k), make([]string, k)
	for i, x := range b.Comparisons {
		ctested[i], cfactor[i] = x.Tested, x.Factor
	}
	dst = append(dst, ctested, cfactor)
	m := len(b.Blocked)
	bd, bk, bf := make([]string, m), make([]string, m), make([]string, m)
	bn, bx := make([]uint8, m), make([]uint8, m)
	for i, x := range b.Blocked {
		bd[i], bk[i], bf[i], bn[i], bx[i] = x.Direction, x.Kind, x.Failure, x.Flows, x.Failed
	}
	return append(dst, bd, bk, bf, bn, bx)
}
