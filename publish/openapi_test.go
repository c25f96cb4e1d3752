package publish_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/proto/publicapi"
	"github.com/neubot/neubot/publish"
)

type openapiDoc struct {
	Paths map[string]map[string]struct {
		Parameters []struct {
			Name string `json:"name"`
		} `json:"parameters"`
	} `json:"paths"`
	Components struct {
		Schemas map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"schemas"`
	} `json:"components"`
}

// TestOpenAPIMatchesRoutes: every API route of the router is in the OpenAPI
// document with its method, the document lists no route that is not, each
// route takes exactly the parameters documented (an unknown one is a 400
// that lists those the handler takes), and the documented answers have the
// fields of the Go types the handlers encode.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc openapiDoc
	if err := json.Unmarshal(publish.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	routed := map[string]bool{}
	api := publish.New(publish.Config{IPDB: collectortest.IPDB(t), Rate: 1000, Burst: 1000})
	h := api.Handler()
	for _, route := range api.Routes() {
		if method, path, _ := strings.Cut(route, " "); strings.HasPrefix(path, "/api/") {
			routed[method+" "+path] = true
		}
	}
	var missing, extra []string
	for k := range routed {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !routed[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 || len(routed) < 8 {
		t.Fatalf("routes not in openapi.json: %v; documented but not routed: %v (routes: %d)", missing, extra, len(routed))
	}

	// Parameters: ask each route with an unknown one.
	srv := httptest.NewServer(h)
	defer srv.Close()
	for path, ops := range doc.Paths {
		var want []string
		for _, p := range ops["get"].Parameters {
			want = append(want, p.Name)
		}
		sort.Strings(want)
		resp, err := http.Get(srv.URL + path + "?not_a_parameter=1")
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error, Field string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if len(want) == 0 {
			if resp.StatusCode == http.StatusBadRequest && e.Field == "not_a_parameter" {
				t.Errorf("%s takes parameters the document does not list: %s", path, e.Error)
			}
			continue
		}
		_, list, ok := strings.Cut(e.Error, "this endpoint takes ")
		if resp.StatusCode != http.StatusBadRequest || e.Field != "not_a_parameter" || !ok {
			t.Errorf("%s with an unknown parameter: %d %+v", path, resp.StatusCode, e)
			continue
		}
		got := strings.Split(strings.TrimSuffix(list, ")"), ", ")
		sort.Strings(got)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s takes %v; the document lists %v", path, got, want)
		}
	}

	// Answers: the fields of each documented schema are the Go type's.
	for name, v := range map[string]any{
		"Whoami": publicapi.Whoami{}, "Day": publish.Day{}, "Distribution": publish.Distribution{}, "ISP": publish.ISP{},
		"Bucket": publish.Bucket{}, "Histogram": publish.Histogram{}, "Hour": publish.Hour{}, "Hourly": publish.Hourly{},
		"Dataset": publish.Dataset{}, "DatasetFile": publish.DatasetFile{}, "Verdicts": publish.Verdicts{}, "VerdictSummary": publish.VerdictSummary{},
		"Table": publish.TableJSON{}, "TableRow": publish.TableRowJSON{}, "Figure": publish.FigureJSON{},
	} {
		var fields, props []string
		for _, f := range reflect.VisibleFields(reflect.TypeOf(v)) {
			if !f.Anonymous { // an embedded struct's fields are the answer's own
				fields = append(fields, strings.Split(f.Tag.Get("json"), ",")[0])
			}
		}
		for p := range doc.Components.Schemas[name].Properties {
			props = append(props, p)
		}
		sort.Strings(fields)
		sort.Strings(props)
		if !reflect.DeepEqual(fields, props) {
			t.Errorf("schema %s documents %v; the Go type has %v", name, props, fields)
		}
	}
}
