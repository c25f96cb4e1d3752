package schemas

import (
	"math"
	"sort"

	"github.com/neubot/neubot/internal/stats"
)

// SpeedtestName is the test_name of the speedtest.
const SpeedtestName = "speedtest"

// SpeedtestVersion is the methodology version that this software writes by
// default: 2 (spec/speedtest.md v2.0.0). SpeedtestVersion1 is the first
// methodology, still available (agent/speedtest Config.Method) and still
// accepted: records of both versions share the table.
const (
	SpeedtestVersion  = "2"
	SpeedtestVersion1 = "1"
)

// Bounds of the speedtest's arrays: a test lasts seconds, so these are generous.
const (
	MaxLatencySamples    = 64
	MaxThroughputSamples = 512
)

// MinSampleGapS is the shortest interval, seconds, between two throughput
// samples of a record: a client keeps the newer of two closer ones
// (agent/plugin.AppendSample), and the server's cross-check of the
// speedtest's upload (testserver) expects no closer pair.
const MinSampleGapS = 0.010

// Speedtest is the record of the speedtest: latency (connect time and HEAD
// round trips), download and upload goodput measured at the receiver, and
// the server's own view of the same test.
type Speedtest struct {
	ConnectMS   []float64        `json:"connect_ms" v:"maxitems=64,min=0,max=60000" doc:"TCP connect times to the test server, milliseconds, one per connection made."`
	RTTMS       []float64        `json:"rtt_ms" v:"maxitems=64,min=0,max=60000" doc:"Application-level round-trip times of HTTP HEAD requests on an open connection, milliseconds."`
	RTTMedianMS float64          `json:"rtt_median_ms" v:"min=0,max=60000" doc:"Median of rtt_ms, milliseconds; 0 when rtt_ms is empty."`
	Download    SpeedtestPhase   `json:"download" doc:"The download phase (server to client), measured by the client as receiver."`
	Upload      SpeedtestPhase   `json:"upload" doc:"The upload phase (client to server), measured by the server as receiver and reported back."`
	ServerView  *SpeedtestServer `json:"server_view,omitempty" doc:"What the test server measured itself. Present in the authoritative record merged by the server; absent in a copy made by the agent alone."`
	// Schema version 3.
	Failure      string  `json:"failure,omitempty" v:"enum=|timeout|connection_reset|connection_refused|eof|closed_abnormally|canceled|protocol_violation|other|dns_lookup_failed|stalled|server_refused" doc:"Empty when the test completed; else what made it fail, one of timeout, connection_reset, connection_refused, eof, closed_abnormally, canceled, protocol_violation, other, dns_lookup_failed, stalled, server_refused (never an error's text). A failed test is still a record: what was measured before the failure is kept, the phases that did not run are zero, and figures of goodput must leave such records out (and may count them as the failure rate)."`
	FailurePhase string  `json:"failure_phase,omitempty" v:"enum=|negotiate|latency|download|upload|collect" doc:"The phase in which the test failed (negotiate, latency, download, upload, collect); empty when it did not fail."`
	RTTMinMS     float64 `json:"rtt_min_ms,omitempty" v:"min=0,max=60000" doc:"Methodology 2: the smallest of rtt_ms, milliseconds: the unloaded round trip that sizes the phases (estimation windows, connections)."`
}

// SpeedtestPhase is one direction of transfer.
type SpeedtestPhase struct {
	GoodputMbps float64            `json:"goodput_mbps" v:"min=0,max=1000000" doc:"Application-level goodput, Mbit/s (10^6 bit/s), measured at the receiver over the phase."`
	Bytes       uint64             `json:"bytes" doc:"Application payload bytes moved during the phase."`
	DurationS   float64            `json:"duration_s" v:"min=0,max=600" doc:"Duration of the phase, seconds."`
	Connections uint8              `json:"connections" v:"max=16" doc:"Number of TCP connections used in parallel."`
	Samples     []ThroughputSample `json:"samples" v:"maxitems=512" doc:"Throughput over time at the receiver: one sample every ~250 ms (methodology 1) or ~100 ms (methodology 2) from the start of the phase. In methodology 2 the upload's samples are the server's reports, timed by the server's clock."`
	// Schema version 3.
	StopReason        string           `json:"stop_reason,omitempty" v:"enum=|stable|time_cap|failure" doc:"Why the phase stopped: stable (the estimate held over the required window), time_cap (the phase hit its time cap first), failure; empty in records older than schema version 3."`
	WindowStartS      float64          `json:"window_start_s,omitempty" v:"min=0,max=600" doc:"Start of the estimation window, seconds since the phase started: goodput_mbps is the rate over [window_start_s, window_end_s]. In methodology 2 this is where TCP's ramp-up was found to end."`
	WindowEndS        float64          `json:"window_end_s,omitempty" v:"min=0,max=600" doc:"End of the estimation window, seconds since the phase started."`
	Failure           string           `json:"failure,omitempty" v:"enum=|timeout|connection_reset|connection_refused|eof|closed_abnormally|canceled|protocol_violation|other|dns_lookup_failed|stalled|server_refused" doc:"Empty when the phase ended normally; else what ended it (same vocabulary as the record's failure)."`
	Params            *SpeedtestParams `json:"params,omitempty" doc:"Methodology 2: the parameters the phase ran with."`
	LoadedRTTMS       []float64        `json:"loaded_rtt_ms,omitempty" v:"maxitems=512,min=0,max=60000" doc:"Methodology 2: latency under load, round trips of small pings on a separate connection to the server (one every ~100 ms) sent during the estimation window (after TCP's start-up), milliseconds."`
	LoadedRTTMedianMS float64          `json:"loaded_rtt_median_ms,omitempty" v:"min=0,max=60000" doc:"Median of loaded_rtt_ms, milliseconds; 0 when empty."`
	LoadedRTTP90MS    float64          `json:"loaded_rtt_p90_ms,omitempty" v:"min=0,max=60000" doc:"90th percentile of loaded_rtt_ms (nearest rank), milliseconds; 0 when empty."`
}

// SpeedtestParams are the parameters of one phase of methodology 2.
type SpeedtestParams struct {
	SampleMS           float64 `json:"sample_ms" v:"min=0,max=10000" doc:"Receiver sampling period, milliseconds."`
	MaxPhaseS          float64 `json:"max_phase_s" v:"min=0,max=600" doc:"Time cap of the phase, seconds."`
	MinWindowS         float64 `json:"min_window_s" v:"min=0,max=600" doc:"Shortest stable window before the phase may stop, seconds: max(min_window, stable_rtts x rtt)."`
	StableRTTs         float64 `json:"stable_rtts" v:"min=0,max=1000" doc:"Length of the required stable window in round trips."`
	Tolerance          float64 `json:"tolerance" v:"min=0,max=1" doc:"Largest relative difference allowed between the two halves of the stable window."`
	RTTMS              float64 `json:"rtt_ms" v:"min=0,max=60000" doc:"Round trip the phase was sized with (rtt_min_ms of the record), milliseconds."`
	BDPBytes           uint64  `json:"bdp_bytes" doc:"Largest bandwidth-delay product measured during the phase (goodput x rtt_ms), bytes: it chose the connections."`
	PerConnectionBytes uint64  `json:"per_connection_bytes" doc:"Bytes in flight one connection is allowed to carry: half the socket buffer limit, at most 512 KiB since protocol v2.8.0 (2 MiB before); connections = ceil(1.5 x bdp_bytes / per_connection_bytes), within [initial_connections, max_connections]."`
	InitialConnections uint8   `json:"initial_connections" v:"max=16" doc:"Connections opened at the start of the phase."`
	MaxConnections     uint8   `json:"max_connections" v:"max=16" doc:"Most connections the phase may open."`
}

// ThroughputSample is one point of a throughput time series.
type ThroughputSample struct {
	TS    float64 `json:"t_s" v:"min=0,max=600" doc:"Time since the start of the phase, seconds."`
	Bytes uint64  `json:"bytes" doc:"Bytes received since the start of the phase, cumulative."`
	Mbps  float64 `json:"mbps" v:"min=0,max=1000000" doc:"Goodput over the interval since the previous sample, Mbit/s."`
}

// SpeedtestServer is the test server's view of a speedtest.
type SpeedtestServer struct {
	BytesSent         uint64   `json:"bytes_sent" doc:"Payload bytes the server sent (download)."`
	BytesReceived     uint64   `json:"bytes_received" doc:"Payload bytes the server received (upload)."`
	DownloadDurationS float64  `json:"download_duration_s" v:"min=0,max=600" doc:"Time the server spent sending, seconds."`
	UploadDurationS   float64  `json:"upload_duration_s" v:"min=0,max=600" doc:"Time the server spent receiving, seconds."`
	UploadMbps        float64  `json:"upload_mbps" v:"min=0,max=1000000" doc:"Upload goodput timed at the server as receiver, Mbit/s."`
	TCPRTTMS          *float64 `json:"tcp_rtt_ms,omitempty" v:"min=0,max=60000" doc:"Smoothed RTT from the kernel's TCP_INFO at the end of the download, milliseconds; absent where TCP_INFO is not available."`
	TCPRTTVarMS       *float64 `json:"tcp_rttvar_ms,omitempty" v:"min=0,max=60000" doc:"RTT variance from TCP_INFO, milliseconds; absent where not available."`
	TCPRetransmits    *uint64  `json:"tcp_retransmits,omitempty" doc:"Total segments retransmitted (TCP_INFO total_retrans) over the test's connections; absent where not available."`
	// Schema version 3.
	Download *SpeedtestServerPhase `json:"download,omitempty" doc:"The server's per-phase view of the download: TCP_INFO of its connections over time; absent where TCP_INFO is not available or no download ran."`
	Upload   *SpeedtestServerPhase `json:"upload,omitempty" doc:"The server's per-phase view of the upload, as for download."`
}

// SpeedtestServerPhase is the server's view of one phase: TCP_INFO of the
// phase's connections sampled every ~100 ms.
type SpeedtestServerPhase struct {
	Connections   uint8                `json:"connections" v:"max=64" doc:"Connections of the phase the server served."`
	BytesAcked    uint64               `json:"bytes_acked" doc:"TCP_INFO bytes_acked at the end, summed over the phase's connections: what the client acknowledged (download), TCP payload."`
	BytesReceived uint64               `json:"bytes_received" doc:"TCP_INFO bytes_received at the end, summed over the phase's connections: what the server received (upload), TCP payload."`
	RTTMedianMS   float64              `json:"rtt_median_ms" v:"min=0,max=60000" doc:"Median of samples[].rtt_ms, milliseconds: for the download, the kernel's latency under load."`
	RTTP90MS      float64              `json:"rtt_p90_ms" v:"min=0,max=60000" doc:"90th percentile (nearest rank) of samples[].rtt_ms, milliseconds."`
	Samples       []SpeedtestTCPSample `json:"samples" v:"maxitems=512" doc:"TCP_INFO of the phase's connections over time."`
}

// SpeedtestTCPSample is one reading of TCP_INFO over a phase's connections.
type SpeedtestTCPSample struct {
	TS               float64 `json:"t_s" v:"min=0,max=600" doc:"Time since the phase's first connection reached the server, seconds (server clock)."`
	RTTMS            float64 `json:"rtt_ms" v:"min=0,max=60000" doc:"Smoothed RTT (tcpi_rtt), mean over the open connections, milliseconds."`
	MinRTTMS         float64 `json:"min_rtt_ms" v:"min=0,max=60000" doc:"Minimum RTT (tcpi_min_rtt), smallest over the open connections, milliseconds."`
	DeliveryRateMbps float64 `json:"delivery_rate_mbps" v:"min=0,max=1000000" doc:"Delivery rate (tcpi_delivery_rate), summed over the open connections, Mbit/s."`
	BytesAcked       uint64  `json:"bytes_acked" doc:"tcpi_bytes_acked summed over the phase's connections (closed ones count with their last reading)."`
	BytesReceived    uint64  `json:"bytes_received" doc:"tcpi_bytes_received summed over the phase's connections."`
	BytesRetrans     uint64  `json:"bytes_retrans" doc:"tcpi_bytes_retrans summed over the phase's connections."`
}

// speedtestColumns are the speedtest's own columns of its ClickHouse table,
// in the order of (*Speedtest).Values. Migrations declare them with types
// and documentation; a test checks both lists against the live table.
var speedtestColumns = []string{
	"connect_ms", "rtt_ms", "rtt_median_ms",
	"download_mbps", "download_bytes", "download_duration_s", "download_connections",
	"download_samples_t_s", "download_samples_bytes", "download_samples_mbps",
	"upload_mbps", "upload_bytes", "upload_duration_s", "upload_connections",
	"upload_samples_t_s", "upload_samples_bytes", "upload_samples_mbps",
	"server_view", "sv_bytes_sent", "sv_bytes_received", "sv_download_duration_s", "sv_upload_duration_s",
	"sv_upload_mbps", "sv_tcp_rtt_ms", "sv_tcp_rttvar_ms", "sv_tcp_retransmits",
	// Schema version 3 (migration 0006).
	"failure", "failure_phase", "rtt_min_ms",
	"download_stop_reason", "download_window_start_s", "download_window_end_s", "download_failure",
	"download_params_present", "download_param_sample_ms", "download_param_max_phase_s", "download_param_min_window_s",
	"download_param_stable_rtts", "download_param_tolerance", "download_param_rtt_ms", "download_param_bdp_bytes",
	"download_param_per_connection_bytes", "download_param_initial_connections", "download_param_max_connections",
	"download_loaded_rtt_ms", "download_loaded_rtt_median_ms", "download_loaded_rtt_p90_ms",
	"upload_stop_reason", "upload_window_start_s", "upload_window_end_s", "upload_failure",
	"upload_params_present", "upload_param_sample_ms", "upload_param_max_phase_s", "upload_param_min_window_s",
	"upload_param_stable_rtts", "upload_param_tolerance", "upload_param_rtt_ms", "upload_param_bdp_bytes",
	"upload_param_per_connection_bytes", "upload_param_initial_connections", "upload_param_max_connections",
	"upload_loaded_rtt_ms", "upload_loaded_rtt_median_ms", "upload_loaded_rtt_p90_ms",
	"sv_download_present", "sv_download_connections", "sv_download_bytes_acked", "sv_download_bytes_received",
	"sv_download_rtt_median_ms", "sv_download_rtt_p90_ms", "sv_download_tcp_t_s", "sv_download_tcp_rtt_ms",
	"sv_download_tcp_min_rtt_ms", "sv_download_tcp_delivery_rate_mbps", "sv_download_tcp_bytes_acked",
	"sv_download_tcp_bytes_received", "sv_download_tcp_bytes_retrans",
	"sv_upload_present", "sv_upload_connections", "sv_upload_bytes_acked", "sv_upload_bytes_received",
	"sv_upload_rtt_median_ms", "sv_upload_rtt_p90_ms", "sv_upload_tcp_t_s", "sv_upload_tcp_rtt_ms",
	"sv_upload_tcp_min_rtt_ms", "sv_upload_tcp_delivery_rate_mbps", "sv_upload_tcp_bytes_acked",
	"sv_upload_tcp_bytes_received", "sv_upload_tcp_bytes_retrans",
}

func init() {
	register[Speedtest](SpeedtestName, "speedtest", speedtestColumns, SpeedtestVersion1, SpeedtestVersion)
}

// Median returns the median of xs (0 for none) without changing xs: the
// mean of the two middle values for an even count (internal/stats.Median).
func Median(xs []float64) float64 { return stats.Median(xs) }

// Check implements TestKeys.
func (s *Speedtest) Check(c Checker) {
	if len(s.RTTMS) > 0 {
		if m := Median(s.RTTMS); math.Abs(m-s.RTTMedianMS) > 1e-6*math.Max(1, m) {
			c.Add("rtt_median_ms", "is %g but the median of rtt_ms is %g", s.RTTMedianMS, m)
		}
	}
	for _, p := range []struct {
		name  string
		phase *SpeedtestPhase
	}{{"download", &s.Download}, {"upload", &s.Upload}} {
		if l := p.phase.LoadedRTTMS; len(l) > 0 {
			if m := Median(l); math.Abs(m-p.phase.LoadedRTTMedianMS) > 1e-3*math.Max(1, m) {
				c.Add(p.name+".loaded_rtt_median_ms", "is %g but the median of loaded_rtt_ms is %g", p.phase.LoadedRTTMedianMS, m)
			}
		}
		if p.phase.WindowEndS < p.phase.WindowStartS {
			c.Add(p.name+".window_end_s", "is before window_start_s")
		}
		if i := decreasingAt(p.phase.Samples); i >= 0 {
			c.Add(p.name+".samples", "times must not decrease (sample %d)", i)
		}
	}
	if (s.Failure == "") != (s.FailurePhase == "") {
		c.Add("failure_phase", "must be given exactly when failure is")
	}
}

// Values implements TestKeys.
func (s *Speedtest) Values(dst []any) []any {
	dst = append(dst, nonNil(s.ConnectMS), nonNil(s.RTTMS), s.RTTMedianMS)
	dst = s.Download.values(dst)
	dst = s.Upload.values(dst)
	sv := s.ServerView
	if sv == nil {
		sv = &SpeedtestServer{}
	}
	dst = append(dst, boolU8(s.ServerView != nil), sv.BytesSent, sv.BytesReceived,
		sv.DownloadDurationS, sv.UploadDurationS, sv.UploadMbps,
		sv.TCPRTTMS, sv.TCPRTTVarMS, sv.TCPRetransmits)
	dst = append(dst, s.Failure, s.FailurePhase, s.RTTMinMS)
	dst = s.Download.valuesV3(dst)
	dst = s.Upload.valuesV3(dst)
	dst = sv.Download.values(dst)
	return sv.Upload.values(dst)
}

func (p *SpeedtestPhase) valuesV3(dst []any) []any {
	dst = append(dst, p.StopReason, p.WindowStartS, p.WindowEndS, p.Failure)
	pp := p.Params
	if pp == nil {
		pp = &SpeedtestParams{}
	}
	dst = append(dst, boolU8(p.Params != nil), pp.SampleMS, pp.MaxPhaseS, pp.MinWindowS, pp.StableRTTs, pp.Tolerance,
		pp.RTTMS, pp.BDPBytes, pp.PerConnectionBytes, pp.InitialConnections, pp.MaxConnections)
	return append(dst, nonNil(p.LoadedRTTMS), p.LoadedRTTMedianMS, p.LoadedRTTP90MS)
}

func (p *SpeedtestServerPhase) values(dst []any) []any {
	present := p != nil
	if p == nil {
		p = &SpeedtestServerPhase{}
	}
	n := len(p.Samples)
	ts, rtt, minRTT, rate := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	acked, recv, retr := make([]uint64, n), make([]uint64, n), make([]uint64, n)
	for i, x := range p.Samples {
		ts[i], rtt[i], minRTT[i], rate[i] = x.TS, x.RTTMS, x.MinRTTMS, x.DeliveryRateMbps
		acked[i], recv[i], retr[i] = x.BytesAcked, x.BytesReceived, x.BytesRetrans
	}
	return append(dst, boolU8(present), p.Connections, p.BytesAcked, p.BytesReceived, p.RTTMedianMS, p.RTTP90MS,
		ts, rtt, minRTT, rate, acked, recv, retr)
}

// P90 is the 90th percentile of xs by nearest rank (0 for none), without
// changing xs.
func P90(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[int(math.Ceil(0.9*float64(len(s))))-1]
}

func (p *SpeedtestPhase) values(dst []any) []any {
	ts, by, mb := seriesColumns(p.Samples)
	return append(dst, p.GoodputMbps, p.Bytes, p.DurationS, p.Connections, ts, by, mb)
}

func nonNil(xs []float64) []float64 {
	if xs == nil {
		return []float64{}
	}
	return xs
}

func boolU8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
