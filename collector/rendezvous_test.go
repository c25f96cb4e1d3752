package collector

// Tests of the rendezvous. They are internal to the package to set the
// registry's clock; they need no ClickHouse (Run is never called).

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metricsreg "github.com/neubot/neubot/internal/metrics"
	"github.com/neubot/neubot/internal/webtest"
	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/schemas"
)

// fakeClock is the registry's clock in tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// rendezvousServer serves a collector's real handler (without its loader)
// with the registry on a fake clock.
func rendezvousServer(t testing.TB, cfg Config) (*Collector, *httptest.Server, *fakeClock) {
	t.Helper()
	cfg.SpoolDir = t.TempDir()
	if cfg.Enrolled == nil {
		cfg.Enrolled = testAllow
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	c.rdv.now = clock.Now
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(func() {
		srv.Close()
		c.Close()
	})
	return c, srv, clock
}

// postJSON posts body to url+path and returns the status and the body.
func postJSON(t testing.TB, url, path string, body any, header ...string) (int, []byte) {
	t.Helper()
	var data []byte
	switch b := body.(type) {
	case []byte:
		data = b
	case string:
		data = []byte(b)
	default:
		var err error
		if data, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(http.MethodPost, url+path, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if path == rendezvous.RegisterPath {
		signRegistration(req, data)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return webtest.Do(t, req)
}

func registration(id string, active, queued, capacity int) rendezvous.ServerRegistration {
	return rendezvous.ServerRegistration{
		ID:      id,
		URL:     "https://" + id + ".example.org:9775",
		Tests:   []string{schemas.SpeedtestName},
		Version: "1.0.0",
		Load:    rendezvous.ServerLoad{Active: active, Queued: queued, Capacity: capacity},
	}
}

func register(t testing.TB, url string, reg rendezvous.ServerRegistration, header ...string) {
	t.Helper()
	code, body := postJSON(t, url, rendezvous.RegisterPath, reg, header...)
	if code != http.StatusOK {
		t.Fatalf("register %s: status %d: %s", reg.ID, code, body)
	}
	var ack rendezvous.RegistrationAck
	if err := json.Unmarshal(body, &ack); err != nil {
		t.Fatalf("ack is not JSON: %v: %s", err, body)
	}
	if ack != (rendezvous.RegistrationAck{HeartbeatS: 10, ExpiresS: 30}) {
		t.Fatalf("ack %+v, want heartbeat 10 s and expiry 30 s", ack)
	}
}

// askRendezvous asks for tests and returns the IDs listed for each, in order,
// with the full answer.
func askRendezvous(t testing.TB, url string, tests ...string) (map[string][]string, rendezvous.RendezvousResponse) {
	t.Helper()
	code, body := postJSON(t, url, rendezvous.RendezvousPath, rendezvous.RendezvousRequest{
		AgentID: "123e4567-e89b-12d3-a456-426614174000", Tests: tests, AgentVersion: "1.0.0",
	})
	if code != http.StatusOK {
		t.Fatalf("rendezvous: status %d: %s", code, body)
	}
	var resp rendezvous.RendezvousResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, body)
	}
	if resp.TTLS != 60 {
		t.Fatalf("ttl_s %d, want 60", resp.TTLS)
	}
	ids := map[string][]string{}
	for test, list := range resp.Servers {
		if list == nil {
			t.Fatalf("test %s maps to null, want a list: %s", test, body)
		}
		for i := 1; i < len(list); i++ {
			if list[i].Load < list[i-1].Load {
				t.Fatalf("%s: not least loaded first: %+v", test, list)
			}
		}
		// Ties come in random order (agents spread over them): by ID
		// here, so that the tests can name the order they expect.
		slices.SortFunc(list, func(a, b rendezvous.ServerInfo) int {
			return cmp.Or(cmp.Compare(a.Load, b.Load), strings.Compare(a.ID, b.ID))
		})
		ids[test] = []string{}
		for _, s := range list {
			ids[test] = append(ids[test], s.ID)
		}
	}
	return ids, resp
}

// TestRegisterRefuses checks each way a registration is refused, and that
// the answer names the field at fault.
func TestRegisterRefuses(t *testing.T) {
	_, srv, _ := rendezvousServer(t, Config{})
	valid, _ := json.Marshal(registration("s1", 0, 0, 4))
	tests := []struct {
		name   string
		body   string
		ctype  string
		code   int
		fields []string // field paths listed in the answer
		reason string   // in the answer's error
	}{
		{"valid", string(valid), "", http.StatusOK, nil, ""},
		{"valid, charset and unknown field", `{"id":"s1","url":"http://s1","tests":["speedtest"],"load":{"capacity":1},"region":"eu"}`, "application/json; charset=utf-8", http.StatusOK, nil, ""},
		{"bad id", `{"id":"s 1","url":"http://s1","tests":["speedtest"],"load":{"capacity":1}}`, "", 400, []string{"id"}, "id: has"},
		{"bad url", `{"id":"s1","url":"gopher://s1","tests":["speedtest"],"load":{"capacity":1}}`, "", 400, []string{"url"}, "url: must be an http or https URL"},
		{"unknown test", `{"id":"s1","url":"http://s1","tests":["speedtest","dash"],"load":{"capacity":1}}`, "", 400, []string{"tests[1]"}, "unknown test"},
		{"long version", `{"id":"s1","url":"http://s1","tests":["speedtest"],"version":"` + strings.Repeat("v", 33) + `","load":{"capacity":1}}`, "", 400, []string{"version"}, "version: is 33 bytes"},
		{"negative load", `{"id":"s1","url":"http://s1","tests":["speedtest"],"load":{"active":-1,"capacity":1}}`, "", 400, []string{"load.active"}, "negative"},
		{"no capacity", `{"id":"s1","url":"http://s1","tests":["speedtest"]}`, "", 400, []string{"load.capacity"}, "at least 1"},
		{"several", `{"url":"http://s1","tests":[],"load":{"queued":-2,"capacity":1}}`, "", 400, []string{"id", "tests", "load.queued"}, "invalid server registration"},
		{"wrong type", `{"id":"s1","url":"http://s1","tests":["speedtest"],"load":{"capacity":"many"}}`, "", 400, []string{"load.capacity"}, "must be a JSON integer"},
		{"tests not an array", `{"id":"s1","url":"http://s1","tests":"speedtest","load":{"capacity":1}}`, "", 400, []string{"tests"}, "must be a JSON array"},
		{"not an object", `[1,2]`, "", 400, nil, "must be a JSON object"},
		{"malformed", `{"id":`, "", 400, nil, "truncated"},
		{"syntax", `{"id" 1}`, "", 400, nil, "malformed JSON at byte"},
		{"trailing data", string(valid) + ` {}`, "", 400, nil, "trailing"},
		{"empty", ``, "", 400, nil, "empty"},
		{"null", `null`, "", 400, []string{"id", "url", "tests", "load.capacity"}, "required"},
		{"too large", `{"id":"` + strings.Repeat("a", 70<<10) + `"}`, "", 413, nil, "limit"},
		{"form", string(valid), "application/x-www-form-urlencoded", 415, nil, "application/json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var header []string
			if tt.ctype != "" {
				header = []string{"Content-Type", tt.ctype}
			}
			code, body := postJSON(t, srv.URL, rendezvous.RegisterPath, tt.body, header...)
			if code != tt.code {
				t.Fatalf("status %d, want %d: %s", code, tt.code, body)
			}
			if code == http.StatusOK {
				return
			}
			var e RendezvousError
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("answer is not JSON: %v: %s", err, body)
			}
			var fields []string
			for _, f := range e.Fields {
				fields = append(fields, f.Path)
			}
			if fmt.Sprint(fields) != fmt.Sprint(tt.fields) || !strings.Contains(e.Error, tt.reason) {
				t.Fatalf("answer %+v\nwant fields %v and reason %q", e, tt.fields, tt.reason)
			}
		})
	}
	t.Run("GET", func(t *testing.T) {
		resp, err := http.Get(srv.URL + rendezvous.RegisterPath)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("GET: status %d, want 405", resp.StatusCode)
		}
	})
}

// TestRendezvousRefuses checks the validation of agents' requests.
func TestRendezvousRefuses(t *testing.T) {
	_, srv, _ := rendezvousServer(t, Config{})
	for _, tt := range []struct {
		body   string
		fields string
	}{
		{`{"tests":["speedtest"]}`, "[agent_id]"},
		{`{"agent_id":"a","tests":[]}`, "[tests]"},
		{`{"agent_id":"a","tests":["speedtest","warp"]}`, "[tests[1]]"},
		{`{"agent_id":"a","tests":["speedtest"],"agent_version":"` + strings.Repeat("1", 40) + `"}`, "[agent_version]"},
	} {
		code, body := postJSON(t, srv.URL, rendezvous.RendezvousPath, tt.body)
		var e RendezvousError
		_ = json.Unmarshal(body, &e)
		var fields []string
		for _, f := range e.Fields {
			fields = append(fields, f.Path)
		}
		if code != http.StatusBadRequest || fmt.Sprint(fields) != tt.fields {
			t.Errorf("%s: status %d, fields %v; want 400 and %s (%s)", tt.body, code, fields, tt.fields, body)
		}
	}
}

// TestRegisterToken checks that a collector with a registration token
// refuses registrations without it, and that agents need none.
func TestRegisterToken(t *testing.T) {
	_, srv, _ := rendezvousServer(t, Config{RegisterToken: "s3cret-token"})
	reg := registration("s1", 0, 0, 1)
	for _, tt := range []struct {
		name   string
		header []string
		code   int
	}{
		{"no header", nil, http.StatusUnauthorized},
		{"wrong token", []string{"Authorization", "Bearer s3cret-tokeN"}, http.StatusUnauthorized},
		{"prefix of the token", []string{"Authorization", "Bearer s3cret"}, http.StatusUnauthorized},
		{"empty token", []string{"Authorization", "Bearer "}, http.StatusUnauthorized},
		{"basic", []string{"Authorization", "Basic s3cret-token"}, http.StatusUnauthorized},
		{"token alone", []string{"Authorization", "s3cret-token"}, http.StatusUnauthorized},
		{"bearer", []string{"Authorization", "Bearer s3cret-token"}, http.StatusOK},
		{"scheme in lower case", []string{"Authorization", "bearer s3cret-token"}, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := postJSON(t, srv.URL, rendezvous.RegisterPath, reg, tt.header...)
			if code != tt.code {
				t.Fatalf("status %d, want %d: %s", code, tt.code, body)
			}
			if code == http.StatusUnauthorized && !strings.Contains(string(body), "Bearer") {
				t.Fatalf("401 does not say what is missing: %s", body)
			}
		})
	}
	// The token is checked before the body: an invalid body without the
	// token is 401, not 400.
	if code, _ := postJSON(t, srv.URL, rendezvous.RegisterPath, "{"); code != http.StatusUnauthorized {
		t.Fatalf("bad body without token: status %d, want 401", code)
	}
	ids, _ := askRendezvous(t, srv.URL, schemas.SpeedtestName)
	if !slices.Equal(ids[schemas.SpeedtestName], []string{"s1"}) {
		t.Fatalf("rendezvous lists %v, want [s1]", ids)
	}
}

// TestRendezvousLiveSortedByLoad registers servers at different times and
// loads: the answer lists only the live ones, least loaded first, ties by
// ID, at most MaxServersPerTest.
func TestRendezvousLiveSortedByLoad(t *testing.T) {
	_, srv, clock := rendezvousServer(t, Config{})

	// Before any registration: the test maps to an empty list.
	ids, _ := askRendezvous(t, srv.URL, schemas.SpeedtestName)
	if got := ids[schemas.SpeedtestName]; got == nil || len(got) != 0 || len(ids) != 1 {
		t.Fatalf("empty registry: %v, want speedtest: []", ids)
	}

	register(t, srv.URL, registration("old", 0, 0, 10)) // idle, but will expire
	clock.Advance(25 * time.Second)
	register(t, srv.URL, registration("busy", 8, 4, 8))   // 1.5
	register(t, srv.URL, registration("half-b", 2, 0, 4)) // 0.5
	register(t, srv.URL, registration("half-a", 1, 1, 4)) // 0.5
	register(t, srv.URL, registration("quiet", 1, 0, 10)) // 0.1
	clock.Advance(6 * time.Second)                        // "old" is now 31 s silent

	ids, resp := askRendezvous(t, srv.URL, schemas.SpeedtestName)
	want := []string{"quiet", "half-a", "half-b", "busy"}
	if !slices.Equal(ids[schemas.SpeedtestName], want) {
		t.Fatalf("listed %v, want %v", ids[schemas.SpeedtestName], want)
	}
	got := resp.Servers[schemas.SpeedtestName]
	if got[0].Load != 0.1 || got[3].Load != 1.5 || got[0].URL != "https://quiet.example.org:9775" || got[0].Version != "1.0.0" {
		t.Fatalf("servers %+v: wrong load, URL or version", got)
	}

	// A heartbeat with a new load moves a server.
	register(t, srv.URL, registration("busy", 0, 0, 8))
	ids, _ = askRendezvous(t, srv.URL, schemas.SpeedtestName)
	if want := []string{"busy", "quiet", "half-a", "half-b"}; !slices.Equal(ids[schemas.SpeedtestName], want) {
		t.Fatalf("after heartbeat: %v, want %v", ids[schemas.SpeedtestName], want)
	}

	// At most MaxServersPerTest, the least loaded.
	for i := range 10 {
		register(t, srv.URL, registration(fmt.Sprintf("x%02d", i), 9-i, 0, 100))
	}
	ids, _ = askRendezvous(t, srv.URL, schemas.SpeedtestName)
	want = []string{"busy", "x09", "x08", "x07", "x06", "x05", "x04", "x03"}
	if !slices.Equal(ids[schemas.SpeedtestName], want) {
		t.Fatalf("14 live servers: listed %v, want %v", ids[schemas.SpeedtestName], want)
	}
}

// TestRegistrationExpiry checks, on the fake clock, that a registration
// lasts 30 s from its last heartbeat and that the gauge follows.
func TestRegistrationExpiry(t *testing.T) {
	_, srv, clock := rendezvousServer(t, Config{})
	listed := func() []string {
		t.Helper()
		ids, _ := askRendezvous(t, srv.URL, schemas.SpeedtestName)
		return ids[schemas.SpeedtestName]
	}
	gauge := func() string {
		t.Helper()
		v, found, err := metricsreg.Scrape(srv.URL, `neubot_collector_test_servers{test="speedtest"}`)
		if err != nil {
			t.Fatal(err)
		}
		if !found {
			return "absent"
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	}

	register(t, srv.URL, registration("a", 0, 0, 1))
	register(t, srv.URL, registration("b", 0, 0, 1))
	steps := []struct {
		advance   time.Duration
		heartbeat string // ID registering again after the advance
		want      []string
		gauge     string
	}{
		{0, "", []string{"a", "b"}, "2"},
		{20 * time.Second, "b", []string{"a", "b"}, "2"},                 // t=20: b heartbeats
		{10*time.Second - time.Millisecond, "", []string{"a", "b"}, "2"}, // t=29.999
		{time.Millisecond, "", []string{"b"}, "1"},                       // t=30: a is gone
		{19 * time.Second, "", []string{"b"}, "1"},                       // t=49
		{time.Second, "", []string{}, "0"},                               // t=50: b is gone
		{time.Hour, "a", []string{"a"}, "1"},                             // a comes back
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		if s.heartbeat != "" {
			register(t, srv.URL, registration(s.heartbeat, 0, 0, 1))
		}
		if got := listed(); !slices.Equal(got, s.want) {
			t.Fatalf("step %d: listed %v, want %v", i, got, s.want)
		}
		if got := gauge(); got != s.gauge {
			t.Fatalf("step %d: neubot_collector_test_servers{test=speedtest} = %s, want %s", i, got, s.gauge)
		}
	}
}

// TestRegistryBounded checks that registrations under ever new IDs cannot
// grow the registry without bound, and that room comes back on expiry.
func TestRegistryBounded(t *testing.T) {
	c, srv, clock := rendezvousServer(t, Config{})
	r := c.rendezvous()
	for i := range MaxRegisteredServers {
		if _, err := r.upsert(registration(fmt.Sprintf("s%d", i), 0, 0, 1), ""); err != nil {
			t.Fatalf("server %d: %v", i, err)
		}
	}
	code, body := postJSON(t, srv.URL, rendezvous.RegisterPath, registration("one-more", 0, 0, 1))
	if code != http.StatusTooManyRequests {
		t.Fatalf("full registry: status %d, want 429: %s", code, body)
	}
	register(t, srv.URL, registration("s7", 1, 0, 1)) // a known ID still heartbeats
	clock.Advance(RegistrationExpiry)
	register(t, srv.URL, registration("one-more", 0, 0, 1))
}

// FuzzRendezvousBodies posts arbitrary bytes to both endpoints: the answer
// is never a 5xx nor a panic, always JSON, and every body that decodes to a
// valid message is accepted.
func FuzzRendezvousBodies(f *testing.F) {
	c, err := New(Config{SpoolDir: f.TempDir(), Enrolled: testAllow})
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	h := c.Handler()
	reg, _ := json.Marshal(registration("s1", 1, 2, 3))
	req, _ := json.Marshal(rendezvous.RendezvousRequest{AgentID: "a", Tests: []string{"speedtest"}})
	for _, seed := range [][]byte{
		reg, req, nil, []byte("null"), []byte("{}"), []byte(`{"id":1}`), []byte(`[`),
		[]byte(`{"id":"s","url":"http://h","tests":["speedtest"],"load":{"capacity":1}}`),
		[]byte(`{"agent_id":"a","tests":["speedtest","speedtest"]}`),
		[]byte(`{"load":{"active":1e400}}`), []byte(`{"tests":[` + strings.Repeat(`"speedtest",`, 20) + `""]}`),
		[]byte(strings.Repeat("[", 10000)), []byte("{\"id\":\"\xff\"}"),
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, body []byte, toRendezvous bool) {
		path := rendezvous.RegisterPath
		if toRendezvous {
			path = rendezvous.RendezvousPath
		}
		r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		if path == rendezvous.RegisterPath {
			signRegistration(r, body)
		}
		w := serveFuzzed(t, h, r, http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusTooManyRequests)
		// An independent decoding: a body that is one valid message must
		// be accepted.
		var valid bool
		dec := json.NewDecoder(bytes.NewReader(body))
		if toRendezvous {
			var m rendezvous.RendezvousRequest
			valid = dec.Decode(&m) == nil && m.Validate() == nil
		} else {
			var m rendezvous.ServerRegistration
			valid = dec.Decode(&m) == nil && m.Validate() == nil
		}
		if _, err := dec.Token(); err != io.EOF {
			valid = false
		}
		if valid && len(body) <= rendezvous.MaxRendezvousBodyBytes && w.Code != http.StatusOK && w.Code != http.StatusTooManyRequests {
			t.Fatalf("valid %s body refused with %d: %q: %s", path, w.Code, body, w.Body.Bytes())
		}
		if !valid && w.Code == http.StatusOK {
			t.Fatalf("invalid %s body accepted: %q", path, body)
		}
	})
}

// serveFuzzed serves a fuzzed JSON request r with h and fails the test
// unless the answer is JSON with one of the allowed statuses.
func serveFuzzed(t *testing.T, h http.Handler, r *http.Request, allowed ...int) *httptest.ResponseRecorder {
	t.Helper()
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if !json.Valid(w.Body.Bytes()) {
		t.Fatalf("answer %d is not JSON: %q", w.Code, w.Body.Bytes())
	}
	if !slices.Contains(allowed, w.Code) {
		t.Fatalf("status %d for %s: %s", w.Code, r.URL.Path, w.Body.Bytes())
	}
	return w
}
