package schemas_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

func ndt7Line(t testing.TB, name string) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(9, 9))
	return bytes.TrimSpace(schemastest.Line(schemastest.NDT7(rng, name, now.Add(-time.Hour), "151.5.10.20", 50)))
}

var ndt7BadCases = []badCase{
	{name: "measured nowhere", fn: func(m map[string]any) { get(m, "test_keys", "upload")["measured_at"] = "nobody" }, path: "test_keys.upload.measured_at", reason: "one of", inSchema: true},
	{name: "failure as an error's text", fn: func(m map[string]any) {
		get(m, "test_keys", "download")["failure"] = "write tcp 192.0.2.1:443->198.51.100.9:51234: broken pipe"
	}, path: "test_keys.download.failure", reason: "one of", inSchema: true},
	{name: "negative goodput", fn: func(m map[string]any) { get(m, "test_keys", "server_view", "upload")["goodput_mbps"] = -1 }, path: "test_keys.server_view.upload.goodput_mbps", reason: "negative", inSchema: true},
	{name: "speedtest layout", fn: func(m map[string]any) { get(m, "test_keys")["rtt_ms"] = []any{1.0} }, path: "test_keys.rtt_ms", reason: "not a field", inSchema: true},
	{name: "no subtest", fn: func(m map[string]any) {
		delete(get(m, "test_keys"), "download")
		delete(get(m, "test_keys"), "upload")
	}, path: "test_keys.download", reason: "at least one subtest"},
	{name: "samples go back", fn: func(m map[string]any) {
		get(m, "test_keys", "upload")["samples"].([]any)[5].(map[string]any)["t_s"] = 0.1
	}, path: "test_keys.upload.samples", reason: "decrease"},
}

func TestNDT7(t *testing.T) {
	for _, name := range []string{schemas.NDT7Name, schemas.NDT7BrowserName} {
		t.Run(name, func(t *testing.T) {
			test, ok := schemas.Lookup(name)
			if !ok {
				t.Fatal("not registered")
			}
			rng := rand.New(rand.NewPCG(1, 2))
			rec := schemastest.NDT7(rng, name, now.Add(-time.Hour), "2001:db8::1", 30)
			got, err := schemas.DecodeRecord(bytes.TrimSpace(schemastest.Line(rec)), now)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, rec) {
				t.Fatalf("changed in a round trip:\n got %+v\nwant %+v", got, rec)
			}
			if n, want := len(rec.TestKeys.Values(nil)), len(test.Columns); n != want {
				t.Fatalf("Values gives %d values for %d columns", n, want)
			}
			// A copy made by the client alone (no server view, one
			// subtest) is valid too, and not authoritative.
			keys := rec.TestKeys.(*schemas.NDT7)
			keys.ServerView, keys.Upload = nil, nil
			if err := rec.Validate(now); err != nil {
				t.Fatal(err)
			}
			if keys.Authoritative() || len(keys.Values(nil)) != len(test.Columns) {
				t.Fatal("the client's copy is authoritative or has the wrong number of values")
			}
			sch := compileSchema(t, test)
			good := ndt7Line(t, name)
			if err := validateSchema(sch, good); err != nil {
				t.Fatalf("valid record refused by the JSON Schema: %v", err)
			}
			for _, tc := range ndt7BadCases {
				line := mutate(t, good, tc.fn)
				_, err := schemas.DecodeRecord(line, now)
				var ve *schemas.ValidationError
				if !errors.As(err, &ve) || !hasField(ve, tc.path, tc.reason) {
					t.Errorf("%s: got %v; want field %q with %q", tc.name, err, tc.path, tc.reason)
				}
				if tc.inSchema && validateSchema(sch, line) == nil {
					t.Errorf("%s: the Go validator refuses it, the JSON Schema accepts it", tc.name)
				}
			}
		})
	}
}

func hasField(ve *schemas.ValidationError, path, reason string) bool {
	for _, f := range ve.Fields {
		if f.Path == path && strings.Contains(f.Reason, reason) {
			return true
		}
	}
	return false
}

func compileSchema(t *testing.T, test *schemas.Test) *jsonschema.Schema {
	t.Helper()
	doc, err := schemas.JSONSchema(test)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(test.Name+".json", parsed); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(test.Name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func validateSchema(sch *jsonschema.Schema, line []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
	if err != nil {
		return err
	}
	return sch.Validate(v)
}
