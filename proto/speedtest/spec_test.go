package speedtest

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseUploadReport(t *testing.T) {
	r, err := ParseUploadReport([]byte(`{"t_s":1.25,"bytes":1000}` + "\n"))
	if err != nil || r.TS != 1.25 || r.Bytes != 1000 {
		t.Fatalf("got %+v, %v", r, err)
	}
	for _, bad := range []string{`{"t_s":-1,"bytes":1}`, `{"t_s":1,"bytes":-1}`, `{"t_s":1,"bytes":1,"x":2}`, `{"t_s":1,"bytes":1}{}`,
		`[]`, `{"t_s":"1"}`, `{"t_s":1,"bytes":` + strings.Repeat("1", 300) + `}`} {
		if _, err := ParseUploadReport([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func FuzzParseUploadReport(f *testing.F) {
	f.Add([]byte(`{"t_s":1.25,"bytes":1000}` + "\n"))
	f.Add([]byte(`{"t_s":0,"bytes":0}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseUploadReport(line)
		if err != nil {
			return
		}
		if r.TS < 0 || r.Bytes < 0 || len(line) > MaxReportLine {
			t.Fatalf("accepted %q as %+v", line, r)
		}
		b, _ := json.Marshal(r)
		if r2, err := ParseUploadReport(b); err != nil || r2 != r {
			t.Fatalf("round trip of %+v: %+v, %v", r, r2, err)
		}
	})
}
