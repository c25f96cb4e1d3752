package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// JSONSchemaID is the base of the $id of the published JSON Schemas.
const JSONSchemaID = "https://neubot.org/schemas/"

// JSONSchema returns the JSON Schema (draft 2020-12) of test's records,
// derived from the Go types and their tags: the same tags the validator
// uses, so the document and the validator agree by construction. The
// committed copies under jsonschema/ are checked against it by a test.
func JSONSchema(test *Test) ([]byte, error) {
	keys := reflect.TypeOf(test.NewKeys()).Elem()
	root := objectSchema(reflect.TypeOf(Envelope{}))
	props := root["properties"].(ordered)
	props = append(props, kv{"test_keys", withDoc(objectSchema(keys),
		fmt.Sprintf("The results of the %s test.", test.Name))})
	root["properties"] = props
	root["required"] = append(root["required"].([]string), "test_keys")
	doc := ordered{
		{"$schema", "https://json-schema.org/draft/2020-12/schema"},
		{"$id", fmt.Sprintf("%s%s.v%d.json", JSONSchemaID, test.Name, SchemaVersion)},
		{"title", fmt.Sprintf("Neubot %s record, schema version %d", test.Name, SchemaVersion)},
		{"description", fmt.Sprintf("One %s measurement as the agent and the test server submit it to the collector "+
			"(one JSON object per line of NDJSON). test_name is %q; known test_version values: %s.",
			test.Name, test.Name, strings.Join(test.Versions, ", "))},
	}
	for _, k := range []string{"type", "additionalProperties", "required", "properties"} {
		doc = append(doc, kv{k, root[k]})
	}
	// Pin test_name and test_version to this test.
	for i, p := range props {
		switch p.k {
		case "test_name":
			props[i].v = withDoc(obj{"const": test.Name}, docOf(p.v))
		case "test_version":
			props[i].v = withDoc(obj{"enum": test.Versions}, docOf(p.v))
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// obj is an unordered JSON object; ordered keeps its keys in order.
type obj map[string]any

type kv struct {
	k string
	v any
}

type ordered []kv

func (o ordered) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(e.k)
		b.Write(k)
		b.WriteByte(':')
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(e.v); err != nil {
			return nil, err
		}
		b.Truncate(b.Len() - 1) // Encode's newline
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func docOf(v any) string {
	if o, ok := v.(obj); ok {
		s, _ := o["description"].(string)
		return s
	}
	return ""
}

func withDoc(o obj, doc string) obj {
	if doc != "" {
		o["description"] = doc
	}
	return o
}

func objectSchema(t reflect.Type) obj {
	var props ordered
	required := []string{} // never null: the meta-schema wants an array
	for _, f := range fieldsOf(t) {
		ft := t.FieldByIndex(f.index).Type
		props = append(props, kv{f.name, withDoc(typeSchema(ft, f.rules), f.doc)})
		if !f.optional {
			required = append(required, f.name)
		}
	}
	return obj{"type": "object", "additionalProperties": false, "required": required, "properties": props}
}

func typeSchema(t reflect.Type, r rules) obj {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == timeType {
		return obj{"type": "string", "format": "date-time"}
	}
	switch t.Kind() {
	case reflect.Struct:
		return objectSchema(t)
	case reflect.Slice:
		s := obj{"type": "array", "items": typeSchema(t.Elem(), rules{min: r.min, max: r.max, maxLen: r.maxLen, enum: r.enum, uuid: r.uuid, ip: r.ip, safe: r.safe})}
		if r.maxItems > 0 {
			s["maxItems"] = r.maxItems
		}
		return s
	case reflect.Bool:
		return obj{"type": "boolean"}
	case reflect.String:
		s := obj{"type": "string"}
		if r.maxLen > 0 {
			s["maxLength"] = r.maxLen
		}
		if r.required {
			s["minLength"] = 1
		}
		if r.uuid {
			s["format"] = "uuid"
			s["pattern"] = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
		}
		if r.safe {
			s["pattern"] = SafePattern
		}
		if r.ip {
			s["anyOf"] = []obj{{"format": "ipv4"}, {"format": "ipv6"}}
		}
		if len(r.enum) > 0 {
			s["enum"] = r.enum
		}
		return s
	case reflect.Float32, reflect.Float64:
		return bounds(obj{"type": "number"}, r)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return bounds(obj{"type": "integer"}, r)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var maxU float64
		switch t.Bits() {
		case 8:
			maxU = 255
		case 16:
			maxU = 65535
		case 32:
			maxU = 4294967295
		}
		zero := 0.0
		if r.min == nil {
			r.min = &zero
		}
		if r.max == nil && maxU > 0 {
			r.max = &maxU
		}
		return bounds(obj{"type": "integer"}, r)
	}
	panic("schemas: no JSON Schema for kind " + t.Kind().String())
}

func bounds(s obj, r rules) obj {
	if r.min != nil {
		s["minimum"] = *r.min
	}
	if r.max != nil {
		s["maximum"] = *r.max
	}
	return s
}

// FieldDoc is one documented field, for FIELDS.md.
type FieldDoc struct {
	Path, Type, Doc string
}

// FieldDocs lists every field of test's records with its JSON type and
// documentation, depth first.
func FieldDocs(test *Test) []FieldDoc {
	var out []FieldDoc
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for _, f := range fieldsOf(t) {
			ft := t.FieldByIndex(f.index).Type
			path := join(prefix, f.name)
			doc := f.doc
			if f.rules.safe {
				doc += " A name: ASCII letters, digits and . _ - + : / ( ) ~ @ or space, starting with a letter or a digit (no spreadsheet formula can start it)."
			}
			out = append(out, FieldDoc{Path: path, Type: jsonTypeName(ft), Doc: doc})
			for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
				if ft.Kind() == reflect.Slice {
					path += "[]"
				}
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != timeType {
				walk(path, ft)
			}
		}
	}
	walk("", reflect.TypeOf(Envelope{}))
	out = append(out, FieldDoc{Path: "test_keys", Type: "object", Doc: fmt.Sprintf("The results of the %s test.", test.Name)})
	walk("test_keys", reflect.TypeOf(test.NewKeys()).Elem())
	return out
}

func jsonTypeName(t reflect.Type) string {
	opt := ""
	if t.Kind() == reflect.Pointer {
		t, opt = t.Elem(), " (optional)"
	}
	if t == timeType {
		return "string (RFC 3339 time)" + opt
	}
	switch t.Kind() {
	case reflect.Slice:
		return "array of " + jsonTypeName(t.Elem()) + opt
	case reflect.Struct:
		return "object" + opt
	case reflect.Bool:
		return "boolean" + opt
	case reflect.String:
		return "string" + opt
	case reflect.Float32, reflect.Float64:
		return "number" + opt
	}
	return "integer" + opt
}
