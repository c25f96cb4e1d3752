package schemas

// NDT7Name is the test_name of ndt7 run by the agent (agent/ndt7) or any
// other program that is not a web page; NDT7BrowserName is ndt7 run in a
// web browser from the test server's page. The two share the layout of
// their keys but not their tables: a browser's timers, its WebSocket
// buffering and the JavaScript client's upload algorithm make another
// methodology, whose numbers must not be mixed silently with the agent's.
const (
	NDT7Name        = "ndt7"
	NDT7BrowserName = "ndt7-browser"
)

// NDT7Version is the methodology version that this software writes.
const NDT7Version = "1"

// NDT7 is the record of an ndt7 test (spec/ndt7.md): a download and an
// upload over one WebSocket connection each, the client's own counters,
// the last measurement the server sent in band, and, in the record merged
// by a Neubot test server, the server's own view.
type NDT7 struct {
	Download   *NDT7Subtest    `json:"download,omitempty" doc:"The download subtest (server to client); absent when it did not run."`
	Upload     *NDT7Subtest    `json:"upload,omitempty" doc:"The upload subtest (client to server); absent when it did not run."`
	ServerView *NDT7ServerView `json:"server_view,omitempty" doc:"What the Neubot test server measured itself. Present in the authoritative record merged by the server; absent in a copy made by the client alone, e.g. against another ndt7 server."`
}

// NDT7Subtest is one subtest as the client saw it.
type NDT7Subtest struct {
	GoodputMbps float64            `json:"goodput_mbps" v:"min=0,max=1000000" doc:"Goodput, Mbit/s (10^6 bit/s), at the receiver: the client's counters for the download; for the upload the server's last in-band AppInfo, else its TCPInfo.BytesReceived (kernel-level, WebSocket framing included), else the client's own count (see measured_at)."`
	MeasuredAt  string             `json:"measured_at" v:"required,enum=client|server" doc:"Whose counters goodput_mbps comes from: client or server."`
	Bytes       uint64             `json:"bytes" doc:"Payload bytes the client received (download) or handed to the WebSocket and saw leave its buffer (upload)."`
	DurationS   float64            `json:"duration_s" v:"min=0,max=60" doc:"Time from the completed WebSocket handshake to the end of the subtest, seconds, by the client's clock."`
	Samples     []ThroughputSample `json:"samples" v:"maxitems=512" doc:"The client's counters over time: one sample every ~250 ms from the handshake."`
	Server      *NDT7Measurement   `json:"server_measurement,omitempty" doc:"The last measurement message the server sent during the subtest, as the client received it; absent when the server sent none."`
	UUID        string             `json:"uuid" v:"maxlen=128" doc:"The connection's identifier given by the server (ConnectionInfo.UUID); empty when it gave none."`
	Failure     string             `json:"failure" v:"enum=|timeout|connection_reset|connection_refused|eof|closed_abnormally|canceled|protocol_violation|other|dns_lookup_failed|stalled|server_refused" doc:"Empty when the subtest ended normally; else what ended it early or abruptly, one of timeout, connection_reset, connection_refused, eof, closed_abnormally, canceled, protocol_violation, other, dns_lookup_failed, stalled, server_refused (never an error's text: it can hold addresses). Data measured before it are kept."`
}

// NDT7Measurement is the part of an ndt7 measurement message that is kept.
type NDT7Measurement struct {
	AppElapsedS float64      `json:"app_elapsed_s" v:"min=0,max=60" doc:"AppInfo.ElapsedTime: when the sender measured, seconds since the handshake."`
	AppBytes    uint64       `json:"app_bytes" doc:"AppInfo.NumBytes: payload bytes sent (download) or received (upload) by the server."`
	TCPInfo     *NDT7TCPInfo `json:"tcp_info,omitempty" doc:"The server's TCP_INFO in the message; absent when it sent none."`
}

// NDT7TCPInfo is the ndt7 specification's subset of TCP_INFO, in the units
// of Neubot's records (milliseconds, seconds). A field the kernel did not
// give is 0.
type NDT7TCPInfo struct {
	ElapsedS       float64 `json:"elapsed_s" v:"min=0,max=60" doc:"When TCP_INFO was read, seconds since the handshake."`
	RTTMS          float64 `json:"rtt_ms" v:"min=0,max=600000" doc:"Smoothed round-trip time (tcpi_rtt), milliseconds."`
	MinRTTMS       float64 `json:"min_rtt_ms" v:"min=0,max=600000" doc:"Minimum round-trip time seen by the kernel (tcpi_min_rtt), milliseconds."`
	RTTVarMS       float64 `json:"rttvar_ms" v:"min=0,max=600000" doc:"Round-trip time variance (tcpi_rttvar), milliseconds."`
	BytesAcked     uint64  `json:"bytes_acked" doc:"Bytes acknowledged by the peer (tcpi_bytes_acked), TCP payload including WebSocket and TLS."`
	BytesReceived  uint64  `json:"bytes_received" doc:"Bytes received and acknowledged (tcpi_bytes_received)."`
	BytesSent      uint64  `json:"bytes_sent" doc:"Bytes transmitted, retransmissions included (tcpi_bytes_sent)."`
	BytesRetrans   uint64  `json:"bytes_retrans" doc:"Bytes retransmitted (tcpi_bytes_retrans)."`
	BusyS          float64 `json:"busy_s" v:"min=0,max=600" doc:"Time the send queue was not empty (tcpi_busy_time), seconds."`
	RWndLimitedS   float64 `json:"rwnd_limited_s" v:"min=0,max=600" doc:"Time stalled by the receiver's window (tcpi_rwnd_limited), seconds."`
	SndBufLimitedS float64 `json:"sndbuf_limited_s" v:"min=0,max=600" doc:"Time stalled by the sender's buffer (tcpi_sndbuf_limited), seconds."`
}

// NDT7ServerView is the Neubot test server's view of both subtests.
type NDT7ServerView struct {
	Download *NDT7ServerSubtest `json:"download,omitempty" doc:"The server's view of the download; absent when none ran under this token."`
	Upload   *NDT7ServerSubtest `json:"upload,omitempty" doc:"The server's view of the upload; absent when none ran under this token."`
}

// NDT7ServerSubtest is one subtest as the server saw it.
type NDT7ServerSubtest struct {
	UUID               string       `json:"uuid" v:"maxlen=128" doc:"The connection's identifier the server sent in ConnectionInfo.UUID."`
	Bytes              uint64       `json:"bytes" doc:"Payload bytes the server sent (download) or received (upload)."`
	DurationS          float64      `json:"duration_s" v:"min=0,max=60" doc:"Time from the handshake to the end of the subtest, by the server's clock, seconds."`
	GoodputMbps        float64      `json:"goodput_mbps" v:"min=0,max=1000000" doc:"bytes over duration_s, Mbit/s; for the upload this is the receiver's goodput."`
	MaxMessageBytes    uint32       `json:"max_message_bytes" doc:"The largest binary message sent (download) or received (upload), bytes."`
	ClientMeasurements uint32       `json:"client_measurements" doc:"Measurement messages the client sent during the subtest (the client may send none)."`
	TCPInfo            *NDT7TCPInfo `json:"tcp_info,omitempty" doc:"TCP_INFO read by the server at the end of the subtest; absent where the kernel does not give it."`
	Failure            string       `json:"failure" v:"enum=|timeout|connection_reset|connection_refused|eof|closed_abnormally|canceled|protocol_violation|other|dns_lookup_failed|stalled|server_refused" doc:"Empty when the subtest ended normally on the server's side; else what ended it, one of timeout, connection_reset, connection_refused, eof, closed_abnormally, canceled, protocol_violation, other, dns_lookup_failed, stalled, server_refused (never an error's text: it can hold addresses). Data measured before it are kept."`
}

func init() {
	register[NDT7](NDT7Name, "ndt7", ndt7Columns, NDT7Version)
	register[NDT7](NDT7BrowserName, "ndt7_browser", ndt7Columns, NDT7Version)
}

// ndt7Columns are ndt7's own columns, in the order of (*NDT7).Values;
// both tables have them (the browser's is made AS the agent's).
var ndt7Columns = func() []string {
	var cols []string
	tcp := func(p string) {
		cols = append(cols, p+"present", p+"elapsed_s", p+"rtt_ms", p+"min_rtt_ms", p+"rttvar_ms",
			p+"bytes_acked", p+"bytes_received", p+"bytes_sent", p+"bytes_retrans",
			p+"busy_s", p+"rwnd_limited_s", p+"sndbuf_limited_s")
	}
	for _, p := range []string{"download_", "upload_"} {
		cols = append(cols, p+"present", p+"goodput_mbps", p+"measured_at", p+"bytes", p+"duration_s",
			p+"samples_t_s", p+"samples_bytes", p+"samples_mbps", p+"uuid", p+"failure",
			p+"srv_present", p+"srv_app_elapsed_s", p+"srv_app_bytes")
		tcp(p + "srv_tcp_")
	}
	cols = append(cols, "server_view")
	for _, p := range []string{"sv_download_", "sv_upload_"} {
		cols = append(cols, p+"present", p+"uuid", p+"bytes", p+"duration_s", p+"goodput_mbps",
			p+"max_message_bytes", p+"client_measurements", p+"failure")
		tcp(p + "tcp_")
	}
	return cols
}()

// Check implements TestKeys.
func (n *NDT7) Check(c Checker) {
	if n.Download == nil && n.Upload == nil {
		c.Add("download", "is required when there is no upload: a record has at least one subtest")
	}
	for name, s := range map[string]*NDT7Subtest{"download": n.Download, "upload": n.Upload} {
		if s == nil {
			continue
		}
		if i := decreasingAt(s.Samples); i >= 0 {
			c.Add(name+".samples", "times must not decrease (sample %d)", i)
		}
	}
}

// Authoritative reports whether the record was merged by a Neubot server.
func (n *NDT7) Authoritative() bool { return n.ServerView != nil }

// Values implements TestKeys.
func (n *NDT7) Values(dst []any) []any {
	for _, s := range []*NDT7Subtest{n.Download, n.Upload} {
		dst = s.values(dst)
	}
	dst = append(dst, boolU8(n.ServerView != nil))
	sv := n.ServerView
	if sv == nil {
		sv = &NDT7ServerView{}
	}
	for _, s := range []*NDT7ServerSubtest{sv.Download, sv.Upload} {
		dst = s.values(dst)
	}
	return dst
}

func (s *NDT7Subtest) values(dst []any) []any {
	present := s != nil
	if s == nil {
		s = &NDT7Subtest{}
	}
	ts, by, mb := seriesColumns(s.Samples)
	dst = append(dst, boolU8(present), s.GoodputMbps, s.MeasuredAt, s.Bytes, s.DurationS, ts, by, mb, s.UUID, s.Failure)
	m := s.Server
	if m == nil {
		m = &NDT7Measurement{}
	}
	dst = append(dst, boolU8(s.Server != nil), m.AppElapsedS, m.AppBytes)
	return m.TCPInfo.values(dst)
}

func (s *NDT7ServerSubtest) values(dst []any) []any {
	present := s != nil
	if s == nil {
		s = &NDT7ServerSubtest{}
	}
	dst = append(dst, boolU8(present), s.UUID, s.Bytes, s.DurationS, s.GoodputMbps, s.MaxMessageBytes, s.ClientMeasurements, s.Failure)
	return s.TCPInfo.values(dst)
}

func (t *NDT7TCPInfo) values(dst []any) []any {
	present := t != nil
	if t == nil {
		t = &NDT7TCPInfo{}
	}
	return append(dst, boolU8(present), t.ElapsedS, t.RTTMS, t.MinRTTMS, t.RTTVarMS,
		t.BytesAcked, t.BytesReceived, t.BytesSent, t.BytesRetrans, t.BusyS, t.RWndLimitedS, t.SndBufLimitedS)
}

// MinRTTMS is the download's minimum RTT from the server's TCP_INFO (the
// server's view, else what the server sent in band); 0 when unknown.
func (k *NDT7) MinRTTMS() float64 {
	if sv := k.ServerView; sv != nil && sv.Download != nil && sv.Download.TCPInfo != nil {
		return sv.Download.TCPInfo.MinRTTMS
	}
	if d := k.Download; d != nil && d.Server != nil && d.Server.TCPInfo != nil {
		return d.Server.TCPInfo.MinRTTMS
	}
	return 0
}
