package schemas_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func validLine(t testing.TB) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	return bytes.TrimSpace(schemastest.Line(schemastest.Speedtest(rng, now.Add(-time.Hour), "151.5.10.20", 20)))
}

// mutate decodes line, applies fn to the generic form and re-encodes it.
func mutate(t testing.TB, line []byte, fn func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func get(m map[string]any, path ...string) map[string]any {
	for _, p := range path {
		m = m[p].(map[string]any)
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 50; i++ {
		rec := schemastest.Speedtest(rng, now.Add(-time.Duration(i)*time.Hour), "8.8.8.8", float64(1+i))
		got, err := schemas.DecodeRecord(bytes.TrimSpace(schemastest.Line(rec)), now)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, rec) {
			t.Fatalf("record %d changed in a round trip:\n got %+v\nwant %+v", i, got, rec)
		}
	}
}

type badCase struct {
	name   string
	fn     func(m map[string]any)
	raw    string // used instead of fn when set
	path   string
	reason string
	// inSchema: the JSON Schema can express this rule, so it must also
	// refuse the record.
	inSchema bool
}

var badCases = []badCase{
	{name: "bad uuid", fn: func(m map[string]any) { m["measurement_uid"] = "nope" }, path: "measurement_uid", reason: "UUID", inSchema: true},
	{name: "upper-case uuid", fn: func(m map[string]any) { m["agent_id"] = "51B99195-5DE5-400F-9FDE-D208AFCA1EFC" }, path: "agent_id", reason: "UUID", inSchema: true},
	{name: "missing uid", fn: func(m map[string]any) { delete(m, "measurement_uid") }, path: "measurement_uid", reason: "required", inSchema: true},
	{name: "unknown test", fn: func(m map[string]any) { m["test_name"] = "warp" }, path: "test_name", reason: "unknown test", inSchema: true},
	{name: "unknown version", fn: func(m map[string]any) { m["test_version"] = "99" }, path: "test_version", reason: "unknown version", inSchema: true},
	{name: "future schema", fn: func(m map[string]any) { m["schema_version"] = 999 }, path: "schema_version", reason: "newer"},
	{name: "future start", fn: func(m map[string]any) { m["start_time"] = "2030-01-01T00:00:00Z" }, path: "start_time", reason: "future"},
	{name: "ancient start", fn: func(m map[string]any) { m["start_time"] = "1999-01-01T00:00:00Z" }, path: "start_time", reason: "before"},
	{name: "bad time", fn: func(m map[string]any) { m["start_time"] = "yesterday" }, path: "start_time", reason: "RFC 3339", inSchema: true},
	{name: "negative download", fn: func(m map[string]any) { get(m, "test_keys", "download")["goodput_mbps"] = -1 }, path: "test_keys.download.goodput_mbps", reason: "negative", inSchema: true},
	{name: "negative sample", fn: func(m map[string]any) {
		get(m, "test_keys", "upload")["samples"].([]any)[3].(map[string]any)["mbps"] = -2
	}, path: "test_keys.upload.samples[3].mbps", reason: "negative", inSchema: true},
	{name: "string for number", fn: func(m map[string]any) {
		get(m, "test_keys", "upload")["samples"].([]any)[2].(map[string]any)["mbps"] = "fast"
	}, path: "test_keys.upload.samples[2].mbps", reason: "must be a number", inSchema: true},
	{name: "string in array", fn: func(m map[string]any) { get(m, "test_keys")["rtt_ms"].([]any)[4] = "x" }, path: "test_keys.rtt_ms[4]", reason: "number", inSchema: true},
	{name: "object for array", fn: func(m map[string]any) { get(m, "test_keys")["connect_ms"] = map[string]any{} }, path: "test_keys.connect_ms", reason: "array", inSchema: true},
	{name: "too many rtts", fn: func(m map[string]any) {
		a := make([]any, 65)
		for i := range a {
			a[i] = 1.0
		}
		get(m, "test_keys")["rtt_ms"] = a
	}, path: "test_keys.rtt_ms", reason: "limit of 64", inSchema: true},
	{name: "long string", fn: func(m map[string]any) { get(m, "agent")["software"] = strings.Repeat("a", 33) }, path: "agent.software", reason: "limit of 32", inSchema: true},
	{name: "huge uint8", fn: func(m map[string]any) { get(m, "test_keys", "download")["connections"] = 300 }, path: "test_keys.download.connections", reason: "integer", inSchema: true},
	{name: "negative uint", fn: func(m map[string]any) { get(m, "test_keys", "download")["bytes"] = -5 }, path: "test_keys.download.bytes", reason: "integer", inSchema: true},
	{name: "too many connections", fn: func(m map[string]any) { get(m, "test_keys", "download")["connections"] = 17 }, path: "test_keys.download.connections", reason: "at most 16", inSchema: true},
	{name: "unknown field", fn: func(m map[string]any) { m["colour"] = "blue" }, path: "colour", reason: "not a field", inSchema: true},
	{name: "unknown nested field", fn: func(m map[string]any) { get(m, "test_keys", "download")["colour"] = 1 }, path: "test_keys.download.colour", reason: "not a field", inSchema: true},
	{name: "bad client address", fn: func(m map[string]any) { get(m, "server")["client_address"] = "300.1.1.1" }, path: "server.client_address", reason: "IPv4 or IPv6", inSchema: true},
	{name: "not informed", fn: func(m map[string]any) { get(m, "consent")["informed"] = false }, path: "consent.informed", reason: "informed"},
	{name: "no collection", fn: func(m map[string]any) { get(m, "consent")["can_collect"] = false }, path: "consent.can_collect", reason: "did not allow"},
	{name: "median mismatch", fn: func(m map[string]any) { get(m, "test_keys")["rtt_median_ms"] = 999.0 }, path: "test_keys.rtt_median_ms", reason: "median"},
	{name: "samples go back", fn: func(m map[string]any) {
		get(m, "test_keys", "download")["samples"].([]any)[5].(map[string]any)["t_s"] = 0.1
	}, path: "test_keys.download.samples", reason: "decrease"},
	{name: "no test keys", fn: func(m map[string]any) { delete(m, "test_keys") }, path: "test_keys", reason: "required", inSchema: true},
	{name: "null test keys", fn: func(m map[string]any) { m["test_keys"] = nil }, path: "test_keys", reason: "required", inSchema: true},
	{name: "array line", raw: `[1,2,3]`, path: "", reason: "must be an object", inSchema: true},
	{name: "truncated", raw: `{"measurement_uid": "38af1db8-1421`, path: "", reason: "truncated", inSchema: true},
	{name: "trailing data", raw: `{"test_name":"speedtest"} {}`, path: "", reason: "trailing", inSchema: true},
	{name: "not utf-8", raw: "{\"test_name\":\"speed\xfftest\"}", path: "", reason: "UTF-8", inSchema: true},
	{name: "deep nesting", raw: strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000), path: "a", reason: "not a field", inSchema: true},
}

func TestDecodeRejects(t *testing.T) {
	good := validLine(t)
	for _, tc := range badCases {
		t.Run(tc.name, func(t *testing.T) {
			line := []byte(tc.raw)
			if tc.raw == "" {
				line = mutate(t, good, tc.fn)
			}
			_, err := schemas.DecodeRecord(line, now)
			var ve *schemas.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("got %v; want a *ValidationError", err)
			}
			for _, f := range ve.Fields {
				if f.Path == tc.path && strings.Contains(f.Reason, tc.reason) {
					return
				}
			}
			t.Fatalf("errors %v; want field %q with a reason containing %q", ve.Fields, tc.path, tc.reason)
		})
	}
}

func TestValidateGoValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name string
		fn   func(r *schemas.Record)
		path string
	}{
		{"NaN", func(r *schemas.Record) { r.TestKeys.(*schemas.Speedtest).Download.GoodputMbps = math.NaN() }, "test_keys.download.goodput_mbps"},
		{"Inf", func(r *schemas.Record) { r.DurationS = math.Inf(1) }, "duration_s"},
		{"NaN in array", func(r *schemas.Record) { r.TestKeys.(*schemas.Speedtest).ConnectMS[1] = math.NaN() }, "test_keys.connect_ms[1]"},
		{"nil keys", func(r *schemas.Record) { r.TestKeys = nil }, "test_keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := schemastest.Speedtest(rng, now, "8.8.8.8", 10)
			tc.fn(r)
			var ve *schemas.ValidationError
			if err := r.Validate(now); !errors.As(err, &ve) || ve.Fields[0].Path != tc.path {
				t.Fatalf("got %v; want an error on %s", err, tc.path)
			}
		})
	}
}

func TestErrorsAreBounded(t *testing.T) {
	var m map[string]any
	_ = json.Unmarshal(validLine(t), &m)
	a := make([]any, 64)
	for i := range a {
		a[i] = -1.0
	}
	get(m, "test_keys")["rtt_ms"] = a
	line, _ := json.Marshal(m)
	_, err := schemas.DecodeRecord(line, now)
	var ve *schemas.ValidationError
	if !errors.As(err, &ve) || len(ve.Fields) > 16 {
		t.Fatalf("got %v; want at most 16 field errors", err)
	}
}

// TestGeneratedUpToDate fails when the committed JSON Schemas or FIELDS.md
// differ from what the Go types generate.
func TestGeneratedUpToDate(t *testing.T) {
	files, err := schemas.Generated()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(name)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not what the Go types generate: run `go generate ./schemas` and commit", name)
		}
	}
	on, _ := filepath.Glob("jsonschema/*.json")
	if len(on) != len(files)-1 {
		t.Errorf("jsonschema/ holds %v; generated %d schemas: remove stale files", on, len(files)-1)
	}
}

func TestEveryFieldDocumented(t *testing.T) {
	for _, test := range schemas.Tests() {
		for _, f := range schemas.FieldDocs(test) {
			if len(f.Doc) < 10 {
				t.Errorf("%s: field %s has no doc tag", test.Name, f.Path)
			}
		}
	}
}

// TestJSONSchemaAgrees checks the published JSON Schema against the Go
// validator: the valid records pass both, and every bad record that the
// schema can express is refused by both.
func TestJSONSchemaAgrees(t *testing.T) {
	test, _ := schemas.Lookup(schemas.SpeedtestName)
	sch := compileSchema(t, test)
	check := func(line []byte) error { return validateSchema(sch, line) }
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 20; i++ {
		line := schemastest.Line(schemastest.Speedtest(rng, now, "2001:db8::1", float64(i)))
		if err := check(line); err != nil {
			t.Fatalf("valid record refused by the JSON Schema: %v", err)
		}
	}
	good := validLine(t)
	for _, tc := range badCases {
		if !tc.inSchema {
			continue
		}
		line := []byte(tc.raw)
		if tc.raw == "" {
			line = mutate(t, good, tc.fn)
		}
		if check(line) == nil {
			t.Errorf("%s: the Go validator refuses it, the JSON Schema accepts it", tc.name)
		}
	}
}

func TestSplitSQL(t *testing.T) {
	got, err := schemas.SplitSQL("CREATE t (a String COMMENT 'x; y') -- c; d\n; SELECT 1;\n-- only a comment\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"CREATE t (a String COMMENT 'x; y')", "SELECT 1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := schemas.SplitSQL("SELECT 'open"); err == nil {
		t.Fatal("unterminated quote accepted")
	}
}

func TestMigrationsNumbered(t *testing.T) {
	migs, err := schemas.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	// Numbers increase from 1. A gap is allowed: a number is reserved for
	// a branch that has not landed yet, and the migrator applies each
	// number once whatever the order they arrive in.
	prev := 0
	for _, m := range migs {
		if m.Version <= prev {
			t.Fatalf("migration %d follows %d: numbers must increase", m.Version, prev)
		}
		prev = m.Version
		for _, s := range m.Statements {
			s = quoted.ReplaceAllString(s, "''")
			for _, banned := range []string{"DateTime64", "LowCardinality", "Map(", "JSON", "IPv4", "IPv6", " TTL ", "CODEC", "WITH FILL", "IF NOT EXISTS " + "COLUMN", "OVER ("} {
				if strings.Contains(s, banned) {
					t.Errorf("migration %d uses %q, which ClickHouse 18.16 lacks", m.Version, banned)
				}
			}
		}
	}
}

var quoted = regexp.MustCompile(`'(?:[^'\\]|\\.)*'`)

// TestBitTorrentRecords: BitTorrent records of every outcome survive a
// round trip, pass the JSON Schema, and inconsistent outcomes are refused.
func TestBitTorrentRecords(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	test, _ := schemas.Lookup(schemas.BitTorrentName)
	sch := compileSchema(t, test)
	for _, outcome := range []string{schemas.OutcomeDifferentiation, schemas.OutcomeNone, schemas.OutcomeInconclusive} {
		rec := schemastest.BitTorrent(rng, now.Add(-time.Hour), "192.0.2.7", 20, outcome)
		line := bytes.TrimSpace(schemastest.Line(rec))
		got, err := schemas.DecodeRecord(line, now)
		if err != nil {
			t.Fatalf("%s: %v", outcome, err)
		}
		if !reflect.DeepEqual(got, rec) {
			t.Fatalf("%s: changed in a round trip", outcome)
		}
		if err := validateSchema(sch, line); err != nil {
			t.Fatalf("%s: refused by the JSON Schema: %v", outcome, err)
		}
	}
	good := bytes.TrimSpace(schemastest.Line(schemastest.BitTorrent(rng, now, "192.0.2.7", 20, schemas.OutcomeNone)))
	for _, tc := range bitTorrentBad {
		_, err := schemas.DecodeRecord(mutate(t, good, tc.fn), now)
		if err == nil || !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: got %v, want %s: ...%s...", tc.name, err, tc.path, tc.reason)
		}
	}
}

var bitTorrentBad = []badCase{
	{name: "outcome disagrees", fn: func(m map[string]any) { get(m, "test_keys")["outcome"] = "differentiation" }, path: "test_keys.outcome", reason: "directions give"},
	{name: "direction outcome disagrees", fn: func(m map[string]any) { get(m, "test_keys")["upload_outcome"] = "inconclusive" }, path: "test_keys.upload_outcome", reason: "comparisons give"},
	{name: "unknown kind", fn: func(m map[string]any) { get(m, "test_keys")["flows"].([]any)[2].(map[string]any)["kind"] = "http" }, path: "test_keys.flows[2].kind", reason: "one of"},
	{name: "index twice", fn: func(m map[string]any) { get(m, "test_keys")["flows"].([]any)[2].(map[string]any)["index"] = 1 }, path: "test_keys.flows[2].index", reason: "used twice"},
	{name: "p over 1", fn: func(m map[string]any) { get(m, "test_keys")["comparisons"].([]any)[0].(map[string]any)["ks_p"] = 1.5 }, path: "test_keys.comparisons[0].ks_p", reason: "at most 1"},
	{name: "speedtest keys", fn: func(m map[string]any) { get(m, "test_keys")["rtt_ms"] = []any{} }, path: "test_keys.rtt_ms", reason: "not a field"},
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(validLine(f))
	f.Add(ndt7Line(f, schemas.NDT7Name))
	f.Add(ndt7Line(f, schemas.NDT7BrowserName))
	bt := bytes.TrimSpace(schemastest.Line(schemastest.BitTorrent(rand.New(rand.NewPCG(1, 1)), now, "192.0.2.7", 20, schemas.OutcomeDifferentiation)))
	f.Add(bt)
	for _, tc := range bitTorrentBad {
		f.Add(mutate(f, bt, tc.fn))
	}
	for _, tc := range badCases {
		if tc.raw != "" {
			f.Add([]byte(tc.raw))
		} else {
			f.Add(mutate(f, validLine(f), tc.fn))
		}
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		// The fast and the generic decoders agree on what they accept.
		if utf8.Valid(line) {
			for _, test := range schemas.Tests() {
				fast, ferr := test.Decode(line)
				if ferr != nil || fast.TestName != test.Name {
					continue
				}
				slow, serr := schemas.DecodeGeneric(line)
				if serr != nil {
					t.Fatalf("fast decoder of %s accepts, generic refuses: %v", test.Name, serr)
				}
				if !reflect.DeepEqual(fast, slow) {
					t.Fatalf("decoders disagree:\nfast %+v\nslow %+v", fast, slow)
				}
			}
		}
		rec, err := schemas.DecodeRecord(line, now)
		if err != nil {
			var ve *schemas.ValidationError
			if !errors.As(err, &ve) || len(ve.Fields) == 0 {
				t.Fatalf("error %v is not a ValidationError with fields", err)
			}
			return
		}
		// Accepted: it must survive a round trip and still be valid.
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := schemas.DecodeRecord(b, now); err != nil {
			t.Fatalf("accepted record fails after a round trip: %v\n%s", err, b)
		}
	})
}
