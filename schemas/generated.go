package schemas

import (
	"fmt"
	"sort"
	"strings"
)

// Generated returns the documents derived from the Go types, keyed by their
// path relative to this package's folder: one JSON Schema per test under
// jsonschema/ and FIELDS.md. `go generate ./schemas` writes them; a test
// fails while the committed files differ.
func Generated() (map[string][]byte, error) {
	out := map[string][]byte{}
	var md strings.Builder
	fmt.Fprintf(&md, "# Neubot record fields (schema version %d)\n\n", SchemaVersion)
	md.WriteString("Generated from the Go types in this folder by `go generate ./schemas`; do not edit.\n")
	md.WriteString("Records are submitted as NDJSON to the collector's `POST /api/v1/measurements`.\n")
	md.WriteString("Fields are added, never renamed or removed. The client address is used for annotation and never stored or published.\n")
	md.WriteString("\n## What is published\n\n")
	md.WriteString("Every column of a test's ClickHouse table (its fields below, flattened, plus the collector's annotation columns " +
		"`" + strings.Join(AnnotationColumns, "`, `") + "`) is published in the daily dumps and by `GET /api/v1/measurements`, except " +
		"`" + strings.Join(sortedKeys(PrivateColumns), "`, `") + "`, which never leaves ClickHouse: `agent_pseudonym` (a monthly HMAC of it, spec/trust.md) is published instead. " +
		"`server.client_address` and `server_signature` are never stored in a column. Only rows that satisfy `" + PublishedSQL + "` are published " +
		"(real outputs also need `synthetic = 0`, `consent_can_publish = 1` and arrival before the day closed); figures also need `" + FiguresSQL + "` " +
		fmt.Sprintf("and count at most %d tests of one agent a day.\n", MaxTestsPerAgentDay))
	for _, t := range Tests() {
		js, err := JSONSchema(t)
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("jsonschema/%s.v%d.json", t.Name, SchemaVersion)
		out[name] = js
		fmt.Fprintf(&md, "\n## %s (test_version %s)\n\nJSON Schema: [%s](%s). ClickHouse table: `%s`.\n\n",
			t.Name, strings.Join(t.Versions, ", "), name, name, t.Table)
		md.WriteString("| field | type | meaning |\n|---|---|---|\n")
		for _, f := range FieldDocs(t) {
			fmt.Fprintf(&md, "| `%s` | %s | %s |\n", f.Path, f.Type, strings.ReplaceAll(f.Doc, "|", "\\|"))
		}
	}
	out["FIELDS.md"] = []byte(md.String())
	return out, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
