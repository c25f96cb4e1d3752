package schemas

// PingName is the test_name of the ping test (spec/ping.md).
const PingName = "ping"

// PingVersion is the methodology version that this software writes.
const PingVersion = "1"

// MaxPings bounds the round trips of one ping test.
const MaxPings = 100

// Ping is the record of the ping test: application-level round trips of
// small WebSocket messages on one open connection, and the server's view.
type Ping struct {
	RTTMS       []float64   `json:"rtt_ms" v:"maxitems=100,min=0,max=60000" doc:"Round-trip times of the pings, milliseconds, in order: the client's send to its receipt of the server's echo."`
	RTTMinMS    float64     `json:"rtt_min_ms" v:"min=0,max=60000" doc:"Minimum of rtt_ms, milliseconds; 0 when rtt_ms is empty."`
	RTTMedianMS float64     `json:"rtt_median_ms" v:"min=0,max=60000" doc:"Median of rtt_ms, milliseconds; 0 when rtt_ms is empty."`
	ServerView  *PingServer `json:"server_view,omitempty" doc:"What the test server measured itself. Present in the authoritative record merged by the server."`
}

// PingServer is the test server's view of a ping test.
type PingServer struct {
	Echoed   uint32   `json:"echoed" v:"max=100" doc:"Pings the server echoed."`
	TCPRTTMS *float64 `json:"tcp_rtt_ms,omitempty" v:"min=0,max=60000" doc:"Smoothed RTT from the kernel's TCP_INFO at the end of the test, milliseconds; absent where TCP_INFO is not available."`
}

func init() {
	register[Ping](PingName, "ping",
		[]string{"rtt_ms", "rtt_min_ms", "rtt_median_ms", "server_view", "sv_echoed", "sv_tcp_rtt_ms"}, PingVersion)
}

// Check implements TestKeys.
func (p *Ping) Check(c Checker) {
	if len(p.RTTMS) > 0 && p.RTTMedianMS != Median(p.RTTMS) {
		c.Add("rtt_median_ms", "is %g but the median of rtt_ms is %g", p.RTTMedianMS, Median(p.RTTMS))
	}
}

// Values implements TestKeys.
func (p *Ping) Values(dst []any) []any {
	sv := p.ServerView
	if sv == nil {
		sv = &PingServer{}
	}
	return append(dst, nonNil(p.RTTMS), p.RTTMinMS, p.RTTMedianMS, boolU8(p.ServerView != nil), sv.Echoed, sv.TCPRTTMS)
}

// Authoritative reports whether the record was merged by the server.
func (p *Ping) Authoritative() bool { return p.ServerView != nil }

// Headline implements Headliner.
func (p *Ping) Headline() Headline { return Headline{RTTMS: p.RTTMedianMS} }
