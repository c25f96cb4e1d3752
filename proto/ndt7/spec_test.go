package ndt7_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	spec "github.com/neubot/neubot/proto/ndt7"
)

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSpecExample decodes the specification's own measurement message and
// checks every member landed where the specification says.
func TestSpecExample(t *testing.T) {
	m, err := spec.DecodeMeasurement(read(t, "spec-example.json"))
	if err != nil {
		t.Fatal(err)
	}
	start, _ := time.Parse(time.RFC3339Nano, "2019-07-16T15:26:05.987748459-04:00")
	v := int64(1234)
	p := &v
	want := &spec.Measurement{
		AppInfo:        &spec.AppInfo{ElapsedTime: 1234, NumBytes: 1234},
		ConnectionInfo: &spec.ConnectionInfo{Client: "1.2.3.4:5678", Server: "[::1]:2345", UUID: "<platform-specific-string>", StartTime: start},
		Origin:         "server",
		Test:           "download",
		TCPInfo: &spec.TCPInfo{BusyTime: p, BytesAcked: p, BytesReceived: p, BytesSent: p, BytesRetrans: p,
			ElapsedTime: p, MinRTT: p, RTT: p, RTTVar: p, RWndLimited: p, SndBufLimited: p},
	}
	if !m.ConnectionInfo.StartTime.Equal(start) {
		t.Fatalf("StartTime %v, want %v", m.ConnectionInfo.StartTime, start)
	}
	m.ConnectionInfo.StartTime = start
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", m, want)
	}
	// What we send is what the specification shows: the same member
	// names, so an encoding of the decoded example decodes to it again.
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var generic, specGeneric map[string]any
	_ = json.Unmarshal(b, &generic)
	_ = json.Unmarshal(read(t, "spec-example.json"), &specGeneric)
	if !reflect.DeepEqual(keys(generic), keys(specGeneric)) {
		t.Fatalf("members %v, the specification's %v", keys(generic), keys(specGeneric))
	}
	for _, part := range []string{"AppInfo", "ConnectionInfo", "TCPInfo"} {
		if !reflect.DeepEqual(keys(generic[part].(map[string]any)), keys(specGeneric[part].(map[string]any))) {
			t.Errorf("%s members %v, the specification's %v", part, keys(generic[part].(map[string]any)), keys(specGeneric[part].(map[string]any)))
		}
	}
	rec := m.TCPInfo.Record()
	if rec.RTTMS != 1.234 || rec.BusyS != 0.001234 || rec.BytesAcked != 1234 {
		t.Fatalf("record units: %+v", rec)
	}
}

func keys(m map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

// TestSpecExampleVerbatim: the example as printed is not JSON (trailing
// commas, a missing comma); the decoder says so rather than guessing.
func TestSpecExampleVerbatim(t *testing.T) {
	if _, err := spec.DecodeMeasurement(read(t, "spec-example-verbatim.txt")); !errors.Is(err, spec.ErrMessage) {
		t.Fatalf("got %v; want ErrMessage", err)
	}
}

func TestGolden(t *testing.T) {
	for _, dir := range []string{"good", "bad"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		if len(files) == 0 {
			t.Fatalf("no files in testdata/%s", dir)
		}
		for _, f := range files {
			t.Run(dir+"/"+filepath.Base(f), func(t *testing.T) {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				_, err = spec.DecodeMeasurement(b)
				if dir == "good" && err != nil {
					t.Fatalf("refused: %v", err)
				}
				if dir == "bad" && !errors.Is(err, spec.ErrMessage) {
					t.Fatalf("got %v; want ErrMessage", err)
				}
			})
		}
	}
	if _, err := spec.DecodeMeasurement(make([]byte, spec.MaxTextMessageSize+1)); err == nil {
		t.Fatal("an over-long message was accepted")
	}
}

// TestNextMessageSize runs the specification's appendix loop and ours side
// by side.
func TestNextMessageSize(t *testing.T) {
	size, total := spec.InitialMessageSize, int64(0)
	ref, refTotal := spec.InitialMessageSize, int64(0)
	for i := 0; i < 10000; i++ {
		total += int64(size)
		size = spec.NextMessageSize(size, total)
		// The appendix, with our cap instead of 1<<24.
		refTotal += int64(ref)
		if !(ref >= spec.MaxScaledMessageSize || int64(ref) >= refTotal/16) {
			ref *= 2
		}
		if size != ref {
			t.Fatalf("step %d: %d, the appendix says %d", i, size, ref)
		}
	}
	if size != spec.MaxScaledMessageSize {
		t.Fatalf("size %d after 10000 messages; want the cap %d", size, spec.MaxScaledMessageSize)
	}
}

// FuzzDecodeMeasurement: the decoder never panics, and what it accepts
// survives an encoding round trip unchanged and within bounds.
func FuzzDecodeMeasurement(f *testing.F) {
	for _, pat := range []string{"*.json", "*.txt", "good/*.json", "bad/*.json"} {
		files, _ := filepath.Glob(filepath.Join("testdata", pat))
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := spec.DecodeMeasurement(b)
		if err != nil {
			if !errors.Is(err, spec.ErrMessage) {
				t.Fatalf("error %v does not wrap ErrMessage", err)
			}
			return
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		again, err := spec.DecodeMeasurement(out)
		if err != nil {
			t.Fatalf("accepted message fails after a round trip: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normal(m), normal(again)) {
			t.Fatalf("round trip changed the message:\n%+v\n%+v", m, again)
		}
		if r := m.TCPInfo.Record(); r != nil && (r.RTTMS < 0 || r.BusyS < 0) {
			t.Fatalf("negative value in the record: %+v", r)
		}
	})
}

// normal drops what a round trip may legitimately change: the time
// zone's representation.
func normal(m *spec.Measurement) *spec.Measurement {
	c := *m
	if m.ConnectionInfo != nil {
		ci := *m.ConnectionInfo
		ci.StartTime = ci.StartTime.UTC()
		c.ConnectionInfo = &ci
	}
	return &c
}
