package schemas

// ReplayName is the test_name of the replay differential test.
const ReplayName = "replay"

// ReplayVersion is the methodology version that this software writes.
const ReplayVersion = "1"

// Kinds of replay flow.
const (
	ReplayOriginal = "original" // the application's first bytes (a real TLS ClientHello)
	ReplayInverted = "inverted" // the same bytes, every bit inverted (Wehe's control)
)

// Replay is the record of the replay differential test (spec/replay.md):
// flows that replay an application's recorded traffic shape (sizes and
// timing per packet, from a versioned trace), half opening with the
// application's real first bytes (for TLS, a ClientHello carrying a server
// name) and half with the same bytes bit-inverted, interleaved; the server
// measures each flow and compares the two kinds.
type Replay struct {
	Trace          string                `json:"trace" v:"required,maxlen=64" doc:"Name of the replayed trace, e.g. tls-video."`
	TraceVersion   uint16                `json:"trace_version" v:"min=1" doc:"Version of the trace's data file."`
	SNI            string                `json:"sni,omitempty" v:"maxlen=253" doc:"Server name carried by the original flows' TLS ClientHello (empty: the trace is not TLS)."`
	Port           uint16                `json:"port" doc:"Server TCP port of the flows (443 in production)."`
	FlowDurationS  float64               `json:"flow_duration_s" v:"min=0,max=60" doc:"Longest time each flow replays, seconds."`
	SampleEveryS   float64               `json:"sample_every_s" v:"min=0,max=10" doc:"Throughput sampling period, seconds."`
	WarmupS        float64               `json:"warmup_s" v:"min=0,max=60" doc:"Samples before this time since the start of a flow are left out of the comparison, seconds."`
	Flows          []ReplayFlow          `json:"flows" v:"maxitems=32" doc:"Every flow, in the order run."`
	Comparison     *BitTorrentComparison `json:"comparison,omitempty" doc:"The original flows against the inverted ones (server samples; tested original, control inverted, factor payload), as the BitTorrent test's comparisons."`
	Outcome        string                `json:"outcome" v:"enum=differentiation|none|inconclusive|blocked" doc:"differentiation: the comparison says so; blocked: the original flows failed in most repetitions while the inverted ones ran; none: the comparison says none; inconclusive otherwise."`
	BlockedFailure string                `json:"blocked_failure,omitempty" v:"enum=timeout|connection_reset|connection_refused|eof|closed_abnormally|canceled|protocol_violation|other" doc:"With outcome blocked: the original flows' most common failure."`
	ServerView     *ReplayServer         `json:"server_view,omitempty" doc:"What the test server measured itself; present in the authoritative record merged by the server, which fills the flows' server samples and decides."`
}

// ReplayFlow is one TCP connection of the replay test.
type ReplayFlow struct {
	Index       uint16             `json:"index" v:"max=31" doc:"Position of the flow in the test, from 0."`
	Kind        string             `json:"kind" v:"required,enum=original|inverted" doc:"original: the application's first bytes; inverted: the same bytes with every bit inverted."`
	StartS      float64            `json:"start_s" v:"min=0,max=600" doc:"Start of the flow since the start of the test, seconds."`
	Bytes       uint64             `json:"bytes" doc:"Bytes of the server's part of the trace the client acknowledged (TCP_INFO), as the server saw."`
	Mbps        float64            `json:"mbps" v:"min=0,max=1000000" doc:"Mean throughput after the warm-up from samples, Mbit/s."`
	Samples     []ThroughputSample `json:"samples" v:"maxitems=128" doc:"Throughput over time as the server measured it (bytes acknowledged)."`
	ClientMbps  float64            `json:"client_mbps" v:"min=0,max=1000000" doc:"Mean throughput the client measured as receiver after the warm-up, Mbit/s (a cross-check)."`
	Error       string             `json:"error,omitempty" v:"enum=timeout|connection_reset|connection_refused|eof|closed_abnormally|canceled|protocol_violation|other" doc:"Why the flow ended early as the client saw it (schemas/failure.go's vocabulary)."`
	ServerError string             `json:"server_error,omitempty" v:"enum=timeout|connection_reset|connection_refused|eof|closed_abnormally|canceled|protocol_violation|other|unseen" doc:"Why the flow ended early as the server saw it (unseen: never admitted)."`
}

// ReplayServer is the test server's view of a replay test: the same
// counts as a BitTorrent test's.
type ReplayServer = BitTorrentServer

var replayColumns = []string{
	"trace", "trace_version", "sni", "port", "flow_duration_s", "sample_every_s", "warmup_s", "outcome", "blocked_failure",
	"flow_index", "flow_kind", "flow_start_s", "flow_bytes", "flow_mbps", "flow_client_mbps", "flow_error", "flow_server_error",
	"flow_samples_t_s", "flow_samples_mbps",
	"cmp_samples", "cmp_control_samples", "cmp_median_mbps", "cmp_control_median_mbps", "cmp_diff_pct", "cmp_ks_d", "cmp_ks_p",
	"cmp_alpha", "cmp_threshold_pct", "cmp_reps", "cmp_reps_slower", "cmp_outcome",
	"server_view", "sv_bytes_sent", "sv_bytes_received", "sv_flows",
}

func init() {
	register[Replay](ReplayName, "replay", replayColumns, ReplayVersion)
}

// Authoritative reports whether the record was merged by the server.
func (r *Replay) Authoritative() bool { return r.ServerView != nil }

// Check implements TestKeys.
func (r *Replay) Check(c Checker) {
	seen := map[uint16]bool{}
	for i, f := range r.Flows {
		if seen[f.Index] {
			c.Add("flows", "index %d is used twice (flows[%d])", f.Index, i)
		}
		seen[f.Index] = true
	}
	switch {
	case r.Outcome == OutcomeBlocked && r.BlockedFailure == "":
		c.Add("blocked_failure", "is empty but the outcome is blocked")
	case r.Outcome != OutcomeBlocked && r.BlockedFailure != "":
		c.Add("blocked_failure", "is set but the outcome is %q", r.Outcome)
	case r.Outcome == OutcomeDifferentiation && (r.Comparison == nil || r.Comparison.Outcome != OutcomeDifferentiation):
		c.Add("outcome", "is differentiation but the comparison does not say so")
	}
}

// Values implements TestKeys.
func (r *Replay) Values(dst []any) []any {
	n := len(r.Flows)
	idx := make([]uint16, n)
	kind, errs, serrs := make([]string, n), make([]string, n), make([]string, n)
	start, mbps, cm := make([]float64, n), make([]float64, n), make([]float64, n)
	bytes := make([]uint64, n)
	for i, f := range r.Flows {
		idx[i], kind[i], errs[i], serrs[i], start[i], mbps[i], cm[i], bytes[i] = f.Index, f.Kind, f.Error, f.ServerError, f.StartS, f.Mbps, f.ClientMbps, f.Bytes
	}
	ts, sm := flowSeriesColumns(r.Flows, func(f *ReplayFlow) []ThroughputSample { return f.Samples })
	dst = append(dst, r.Trace, r.TraceVersion, r.SNI, r.Port, r.FlowDurationS, r.SampleEveryS, r.WarmupS, r.Outcome, r.BlockedFailure,
		idx, kind, start, bytes, mbps, cm, errs, serrs, ts, sm)
	c := r.Comparison
	if c == nil {
		c = &BitTorrentComparison{}
	}
	dst = append(dst, c.Samples, c.ControlSamples, c.MedianMbps, c.ControlMedian, c.DiffPct, c.KSD, c.KSP, c.Alpha, c.ThresholdPct, c.Reps, c.RepsSlower, c.Outcome)
	sv := r.ServerView
	if sv == nil {
		sv = &ReplayServer{}
	}
	return append(dst, boolU8(r.ServerView != nil), sv.BytesSent, sv.BytesReceived, sv.Flows)
}
