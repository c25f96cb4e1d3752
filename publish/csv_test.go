package publish

import (
	"encoding/csv"
	"strings"
	"testing"
)

// TestCSVNeutralisesFormulas: a text cell that starts with = + - @ (a
// spreadsheet formula) is written with a leading apostrophe, in the dumps',
// the API's and the charts' CSV alike; numbers are left as they are, and
// the result still parses as the same number of fields.
func TestCSVNeutralisesFormulas(t *testing.T) {
	cases := []struct {
		in   string
		text bool
		want string
	}{
		{`=HYPERLINK("http://x","y")`, true, `"'=HYPERLINK(""http://x"",""y"")"`},
		{"+1", true, `"'+1"`},
		{"-cmd", true, `"'-cmd"`},
		{"@SUM(A1)", true, `"'@SUM(A1)"`},
		{"neubot", true, "neubot"},
		{"a,b", true, `"a,b"`},
		{"-3.5", false, "-3.5"},
		{"", true, ""},
	}
	var line []string
	for _, c := range cases {
		got := string(appendCSVField(nil, []byte(c.in), c.text))
		if got != c.want {
			t.Errorf("%q: got %s, want %s", c.in, got, c.want)
		}
		line = append(line, got)
	}
	rec, err := csv.NewReader(strings.NewReader(strings.Join(line, ",") + "\n")).Read()
	if err != nil || len(rec) != len(cases) {
		t.Fatalf("not valid CSV: %v %q", err, rec)
	}
	if rec[0] != `'=HYPERLINK("http://x","y")` {
		t.Fatalf("read back %q", rec[0])
	}
	ch := &chart{XName: "isp", X: []string{"=1+1", "ok"}, Series: []series{{Name: "@x", Values: []float64{-1, 2}}}}
	got := string(ch.csv())
	if !strings.Contains(got, "'=1+1") || !strings.Contains(got, "'@x") || !strings.Contains(got, ",-1\n") {
		t.Fatalf("chart CSV:\n%s", got)
	}
}
