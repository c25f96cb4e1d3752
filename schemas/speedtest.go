package schemas

import (
	"math"

	"github.com/neubot/neubot/internal/stats"
)

// SpeedtestName is the test_name of the speedtest.
const SpeedtestName = "speedtest"

// SpeedtestVersion is the methodology version that this software writes.
const SpeedtestVersion = "1"

// Bounds of the speedtest's arrays: a test lasts seconds, so these are generous.
const (
	MaxLatencySamples    = 64
	MaxThroughputSamples = 512
)

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
}

// SpeedtestPhase is one direction of transfer.
type SpeedtestPhase struct {
	GoodputMbps float64            `json:"goodput_mbps" v:"min=0,max=1000000" doc:"Application-level goodput, Mbit/s (10^6 bit/s), measured at the receiver over the phase."`
	Bytes       uint64             `json:"bytes" doc:"Application payload bytes moved during the phase."`
	DurationS   float64            `json:"duration_s" v:"min=0,max=600" doc:"Duration of the phase, seconds."`
	Connections uint8              `json:"connections" v:"max=16" doc:"Number of TCP connections used in parallel."`
	Samples     []ThroughputSample `json:"samples" v:"maxitems=512" doc:"Throughput over time: one sample every ~250 ms from the start of the phase."`
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
}

func init() {
	Register(&Test{
		Name:     SpeedtestName,
		Versions: []string{SpeedtestVersion},
		Table:    "speedtest",
		Columns:  speedtestColumns,
		NewKeys:  func() TestKeys { return new(Speedtest) },
		Decode:   DecodeAs[Speedtest],
	})
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
		prev := -1.0
		for i, smp := range p.phase.Samples {
			if smp.TS < prev {
				c.Add(p.name+".samples", "times must not decrease (sample %d)", i)
				break
			}
			prev = smp.TS
		}
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
	return append(dst, boolU8(s.ServerView != nil), sv.BytesSent, sv.BytesReceived,
		sv.DownloadDurationS, sv.UploadDurationS, sv.UploadMbps,
		sv.TCPRTTMS, sv.TCPRTTVarMS, sv.TCPRetransmits)
}

func (p *SpeedtestPhase) values(dst []any) []any {
	ts := make([]float64, len(p.Samples))
	by := make([]uint64, len(p.Samples))
	mb := make([]float64, len(p.Samples))
	for i, s := range p.Samples {
		ts[i], by[i], mb[i] = s.TS, s.Bytes, s.Mbps
	}
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
