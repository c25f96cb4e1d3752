package metrics

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	page := `# HELP a_total x
# TYPE a_total counter
a_total 3
a_total_other 100
b_total{code="400"} 2
b_total{code="500"} 5
c 1e+06
d_total{path="/a b}"} 2 1700000000000
d_total{path="x\"y"} 3
e 4 1700000000000
`
	for _, tc := range []struct {
		series string
		want   float64
		found  bool
	}{
		{"a_total", 3, true},
		{"b_total", 7, true},
		{`b_total{code="500"}`, 5, true},
		{`b_total{code="404"}`, 0, false},
		{"c", 1e6, true},
		{"a", 0, false},
		{"d_total", 5, true},
		{`d_total{path="/a b}"}`, 2, true},
		{"e", 4, true},
	} {
		v, found, err := Find(strings.NewReader(page), tc.series)
		if err != nil || v != tc.want || found != tc.found {
			t.Errorf("%s: %v %v %v, want %v %v", tc.series, v, found, err, tc.want, tc.found)
		}
	}
	if _, _, err := Find(strings.NewReader("a_total x\n"), "a_total"); err == nil {
		t.Error("a value that is no number was read")
	}
}

func TestScrape(t *testing.T) {
	r := New()
	r.Counter("neubot_test_total", "x").Add(4)
	mux := http.NewServeMux()
	mux.Handle("/metrics", r.Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	if v, found, err := Scrape(srv.URL, "neubot_test_total"); err != nil || !found || v != 4 {
		t.Fatalf("%v %v %v", v, found, err)
	}
	if _, found, err := Scrape(srv.URL, "neubot_absent"); err != nil || found {
		t.Fatalf("absent series: %v %v", found, err)
	}
}
