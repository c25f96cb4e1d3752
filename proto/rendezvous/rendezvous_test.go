package rendezvous_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/schemas"
)

func validRegistration() rendezvous.ServerRegistration {
	return rendezvous.ServerRegistration{
		ID:      "mlab1.mil04:9775",
		URL:     "https://neubot.mlab1.mil04.example.org:9775/",
		Tests:   []string{schemas.SpeedtestName},
		Version: "1.0.0-rc.1",
		Load:    rendezvous.ServerLoad{Active: 3, Queued: 1, Capacity: 8},
	}
}

// paths returns the field paths of a *MessageError, failing otherwise.
func paths(t *testing.T, err error) []string {
	t.Helper()
	var me *rendezvous.MessageError
	if !errors.As(err, &me) {
		t.Fatalf("error %v (%T) is not a *MessageError", err, err)
	}
	var out []string
	for _, f := range me.Fields {
		out = append(out, f.Path)
	}
	return out
}

func TestServerRegistrationValidate(t *testing.T) {
	long := func(n int, c string) string { return strings.Repeat(c, n) }
	tests := []struct {
		name   string
		mutate func(r *rendezvous.ServerRegistration)
		want   []string // field paths of the errors; nil: valid
		reason string   // a word of the first reason
	}{
		{"valid", func(r *rendezvous.ServerRegistration) {}, nil, ""},
		{"http, IPv6 host, no version", func(r *rendezvous.ServerRegistration) {
			r.URL, r.Version = "http://[2001:db8::1]:9775", ""
		}, nil, ""},
		{"id of 128 bytes", func(r *rendezvous.ServerRegistration) { r.ID = long(128, "a") }, nil, ""},
		{"idle", func(r *rendezvous.ServerRegistration) { r.Load = rendezvous.ServerLoad{Capacity: 1} }, nil, ""},
		{"no id", func(r *rendezvous.ServerRegistration) { r.ID = "" }, []string{"id"}, "required"},
		{"id too long", func(r *rendezvous.ServerRegistration) { r.ID = long(129, "a") }, []string{"id"}, "129"},
		{"id with a space", func(r *rendezvous.ServerRegistration) { r.ID = "a b" }, []string{"id"}, "allowed"},
		{"id with a slash", func(r *rendezvous.ServerRegistration) { r.ID = "a/b" }, []string{"id"}, "allowed"},
		{"id not ASCII", func(r *rendezvous.ServerRegistration) { r.ID = "città" }, []string{"id"}, "allowed"},
		{"no url", func(r *rendezvous.ServerRegistration) { r.URL = "" }, []string{"url"}, "required"},
		{"url too long", func(r *rendezvous.ServerRegistration) { r.URL = "http://x.org/" + long(500, "a") }, []string{"url"}, "512"},
		{"url ftp", func(r *rendezvous.ServerRegistration) { r.URL = "ftp://x.org/" }, []string{"url"}, "http"},
		{"url relative", func(r *rendezvous.ServerRegistration) { r.URL = "/speedtest" }, []string{"url"}, "http"},
		{"url without host", func(r *rendezvous.ServerRegistration) { r.URL = "http:///x" }, []string{"url"}, "host"},
		{"url opaque", func(r *rendezvous.ServerRegistration) { r.URL = "http:x.org" }, []string{"url"}, "host"},
		{"url port only", func(r *rendezvous.ServerRegistration) { r.URL = "http://:9775/" }, []string{"url"}, "host"},
		{"url unparsable", func(r *rendezvous.ServerRegistration) { r.URL = "http://x.org/%zz" }, []string{"url"}, "URL"},
		{"url with credentials", func(r *rendezvous.ServerRegistration) { r.URL = "https://u:p@x.org/" }, []string{"url"}, "credentials"},
		{"no tests", func(r *rendezvous.ServerRegistration) { r.Tests = nil }, []string{"tests"}, "speedtest"},
		{"too many tests", func(r *rendezvous.ServerRegistration) {
			r.Tests = make([]string, 17)
		}, []string{"tests"}, "16"},
		{"unknown test", func(r *rendezvous.ServerRegistration) {
			r.Tests = []string{schemas.SpeedtestName, "dash"}
		}, []string{"tests[1]"}, "unknown"},
		{"repeated test", func(r *rendezvous.ServerRegistration) {
			r.Tests = []string{schemas.SpeedtestName, schemas.SpeedtestName}
		}, []string{"tests[1]"}, "repeats"},
		{"version too long", func(r *rendezvous.ServerRegistration) { r.Version = long(33, "1") }, []string{"version"}, "33"},
		{"version with a newline", func(r *rendezvous.ServerRegistration) { r.Version = "1\n2" }, []string{"version"}, "control"},
		{"version not UTF-8", func(r *rendezvous.ServerRegistration) { r.Version = "\xff" }, []string{"version"}, "UTF-8"},
		{"negative active", func(r *rendezvous.ServerRegistration) { r.Load.Active = -1 }, []string{"load.active"}, "negative"},
		{"negative queued", func(r *rendezvous.ServerRegistration) { r.Load.Queued = -1 }, []string{"load.queued"}, "negative"},
		{"zero capacity", func(r *rendezvous.ServerRegistration) { r.Load.Capacity = 0 }, []string{"load.capacity"}, "at least 1"},
		{"server with a peer's id", func(r *rendezvous.ServerRegistration) { r.ID = "peer-1" }, []string{"id"}, "peer-"},
		{"peer without the prefix", func(r *rendezvous.ServerRegistration) {
			r.URL, r.Peer = "", &rendezvous.PeerOffer{Port: 9777, Caps: rendezvous.PeerCaps{MaxTests: 1, MaxMbps: 20, DailyMB: 500}}
		}, []string{"id"}, "peer-"},
		{"peer", func(r *rendezvous.ServerRegistration) {
			r.ID = "peer-a1"
			r.URL, r.Peer = "", &rendezvous.PeerOffer{Port: 9777, Caps: rendezvous.PeerCaps{MaxTests: 1, MaxMbps: 20, DailyMB: 500}}
		}, nil, ""},
		{"peer with a url", func(r *rendezvous.ServerRegistration) {
			r.ID = "peer-a1"
			r.Peer = &rendezvous.PeerOffer{Port: 9777, Caps: rendezvous.PeerCaps{MaxTests: 1, MaxMbps: 20, DailyMB: 500}}
		}, []string{"url"}, "empty for a peer"},
		{"peer on a well-known port", func(r *rendezvous.ServerRegistration) {
			r.ID, r.URL, r.Peer = "peer-a1", "", &rendezvous.PeerOffer{Port: 80, Caps: rendezvous.PeerCaps{MaxTests: 1, MaxMbps: 20, DailyMB: 500}}
		}, []string{"peer.port"}, "1024"},
		{"peer with bad port and caps", func(r *rendezvous.ServerRegistration) {
			r.ID, r.URL, r.Peer = "peer-a1", "", &rendezvous.PeerOffer{Port: 65536, Caps: rendezvous.PeerCaps{MaxTests: 9, MaxMbps: math.NaN(), DailyMB: 0}}
		}, []string{"peer.port", "peer.caps.max_tests", "peer.caps.max_mbps", "peer.caps.daily_mb"}, "65535"},
		{"peer with no caps", func(r *rendezvous.ServerRegistration) {
			r.ID, r.URL, r.Peer = "peer-a1", "", &rendezvous.PeerOffer{Port: 1024}
		}, []string{"peer.caps.max_tests", "peer.caps.max_mbps", "peer.caps.daily_mb"}, "from 1"},
		{"everything wrong", func(r *rendezvous.ServerRegistration) {
			*r = rendezvous.ServerRegistration{Tests: []string{"x"}, Version: long(40, "v"), Load: rendezvous.ServerLoad{Active: -1, Queued: -1}}
		}, []string{"id", "url", "tests[0]", "version", "load.active", "load.queued", "load.capacity"}, "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRegistration()
			tt.mutate(&r)
			checkRefusal(t, r.Validate(), tt.want, "invalid server registration: ", tt.reason)
		})
	}
}

// checkRefusal checks what Validate said: nothing when want is nil, else
// an error naming exactly the fields in want, starting with prefix and
// saying reason.
func checkRefusal(t *testing.T, err error, want []string, prefix, reason string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("valid message refused: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("invalid message accepted; want fields %v refused", want)
	}
	if got := paths(t, err); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fields %v, want %v (%v)", got, want, err)
	}
	if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), reason) {
		t.Fatalf("error %q does not start with %q and say %q", err, prefix, reason)
	}
}

func TestRendezvousRequestValidate(t *testing.T) {
	valid := rendezvous.RendezvousRequest{
		AgentID:      "123e4567-e89b-12d3-a456-426614174000",
		Tests:        []string{schemas.SpeedtestName},
		AgentVersion: "1.0.0",
	}
	tests := []struct {
		name   string
		mutate func(r *rendezvous.RendezvousRequest)
		want   []string
	}{
		{"valid", func(r *rendezvous.RendezvousRequest) {}, nil},
		{"no version", func(r *rendezvous.RendezvousRequest) { r.AgentVersion = "" }, nil},
		{"no agent_id", func(r *rendezvous.RendezvousRequest) { r.AgentID = "" }, []string{"agent_id"}},
		{"bad agent_id", func(r *rendezvous.RendezvousRequest) { r.AgentID = "{x}" }, []string{"agent_id"}},
		{"no tests", func(r *rendezvous.RendezvousRequest) { r.Tests = []string{} }, []string{"tests"}},
		{"unknown test", func(r *rendezvous.RendezvousRequest) { r.Tests = []string{"warp"} }, []string{"tests[0]"}},
		{"long version", func(r *rendezvous.RendezvousRequest) { r.AgentVersion = strings.Repeat("9", 33) }, []string{"agent_version"}},
		{"all wrong", func(r *rendezvous.RendezvousRequest) {
			*r = rendezvous.RendezvousRequest{AgentVersion: "\x00"}
		}, []string{"agent_id", "tests", "agent_version"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := valid
			r.Tests = append([]string(nil), valid.Tests...)
			tt.mutate(&r)
			checkRefusal(t, r.Validate(), tt.want, "invalid rendezvous request: ", "")
		})
	}
}

func TestServerLoadRatio(t *testing.T) {
	for _, tt := range []struct {
		load rendezvous.ServerLoad
		want float64
	}{
		{rendezvous.ServerLoad{Capacity: 4}, 0},
		{rendezvous.ServerLoad{Active: 2, Queued: 2, Capacity: 4}, 1},
		{rendezvous.ServerLoad{Active: 4, Queued: 2, Capacity: 4}, 1.5},
		{rendezvous.ServerLoad{Active: 1}, 0}, // invalid: no division by zero
	} {
		if got := tt.load.Ratio(); got != tt.want {
			t.Errorf("%+v.Ratio() = %v, want %v", tt.load, got, tt.want)
		}
	}
}

// TestRendezvousJSONNames pins the wire names: they are a protocol.
func TestRendezvousJSONNames(t *testing.T) {
	for _, tt := range []struct {
		v    any
		want string
	}{
		{validRegistration(), `{"id":"mlab1.mil04:9775","url":"https://neubot.mlab1.mil04.example.org:9775/","tests":["speedtest"],"version":"1.0.0-rc.1","load":{"active":3,"queued":1,"capacity":8}}`},
		{rendezvous.RegistrationAck{HeartbeatS: 10, ExpiresS: 30}, `{"heartbeat_s":10,"expires_s":30}`},
		{rendezvous.RendezvousRequest{AgentID: "a", Tests: []string{"speedtest"}, AgentVersion: "1"}, `{"agent_id":"a","tests":["speedtest"],"agent_version":"1"}`},
		{rendezvous.RendezvousResponse{Servers: map[string][]rendezvous.ServerInfo{"speedtest": {{ID: "s", URL: "http://s", Version: "1", Load: 0.5}}}, TTLS: 60},
			`{"servers":{"speedtest":[{"id":"s","url":"http://s","version":"1","load":0.5}]},"ttl_s":60}`},
		{rendezvous.RendezvousResponse{Servers: map[string][]rendezvous.ServerInfo{}, TTLS: 60, LatestAgentVersion: "0.2.0"},
			`{"servers":{},"ttl_s":60,"latest_agent_version":"0.2.0"}`},
		{rendezvous.ServerRegistration{ID: "p", Tests: []string{"speedtest"}, Load: rendezvous.ServerLoad{Capacity: 1},
			Peer: &rendezvous.PeerOffer{Port: 9777, Caps: rendezvous.PeerCaps{MaxTests: 1, MaxMbps: 20, DailyMB: 500}}},
			`{"id":"p","url":"","tests":["speedtest"],"version":"","load":{"active":0,"queued":0,"capacity":1},"peer":{"port":9777,"caps":{"max_tests":1,"max_mbps":20,"daily_mb":500}}}`},
		{rendezvous.RegistrationAck{HeartbeatS: 10, ExpiresS: 30, Peer: &rendezvous.PeerStatus{URL: "http://192.0.2.1:9777", Reason: "r", CheckedAt: "t"}},
			`{"heartbeat_s":10,"expires_s":30,"peer":{"listed":false,"url":"http://192.0.2.1:9777","reason":"r","checked_at":"t"}}`},
		{rendezvous.RendezvousRequest{AgentID: "a", Tests: []string{"speedtest"}, Peers: true}, `{"agent_id":"a","tests":["speedtest"],"agent_version":"","peers":true}`},
		{rendezvous.ServerInfo{ID: "p", URL: "http://p", Load: 0, Peer: true}, `{"id":"p","url":"http://p","version":"","load":0,"peer":true}`},
		{rendezvous.PeerHello{ID: "p", Nonce: "n"}, `{"id":"p","nonce":"n"}`},
	} {
		b, err := json.Marshal(tt.v)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tt.want {
			t.Errorf("%T encodes as\n%s\nwant\n%s", tt.v, b, tt.want)
		}
	}
}

func TestPeerCapsValidate(t *testing.T) {
	ok := rendezvous.PeerCaps{MaxTests: 2, MaxMbps: 1.5, DailyMB: 1}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid caps refused: %v", err)
	}
	bad := rendezvous.PeerCaps{MaxTests: 0, MaxMbps: 0.5, DailyMB: rendezvous.MaxPeerDailyMB + 1}
	if got := fmt.Sprint(paths(t, bad.Validate())); got != "[max_tests max_mbps daily_mb]" {
		t.Fatalf("fields %s", got)
	}
}

func TestValidVersion(t *testing.T) {
	for v, want := range map[string]bool{
		"0.2.0": true, "1.0.0-rc1": true, "0.1.0~20261203.abc1234": true, "1.0+deb12": true,
		"": false, "v1.0": false, "1.0 beta": false, "1.0<script>": false, strings.Repeat("1", 33): false,
	} {
		if got := rendezvous.ValidVersion(v); got != want {
			t.Errorf("ValidVersion(%q) = %v, want %v", v, got, want)
		}
	}
}
