package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	gojson "github.com/goccy/go-json"
)

// TestKeys is the test-specific part of a record. Each test defines one type
// that implements it, in its own file of this package, and registers it.
type TestKeys interface {
	// Check adds the problems that struct tags cannot express; paths are
	// relative to test_keys. Tag rules are checked before it is called.
	Check(c Checker)
	// Values appends the values of the test's own ClickHouse columns, in
	// the order of Test.Columns.
	Values(dst []any) []any
}

// Checker collects field errors from TestKeys.Check.
type Checker struct{ c *checker }

// Add records a problem of the field at path (relative to test_keys).
func (k Checker) Add(path, format string, args ...any) {
	k.c.add(join("test_keys", path), format, args...)
}

// Test describes one registered test: its name, the methodology versions
// this software accepts, its ClickHouse table and the shape of its keys.
type Test struct {
	Name     string
	Versions []string
	// Table is the ClickHouse table of the test's measurements; its
	// columns are EnvelopeColumns, then AnnotationColumns, then Columns.
	Table   string
	Columns []string
	// NewKeys returns a pointer to a zero value of the test's keys type.
	NewKeys func() TestKeys
	// Decode decodes a whole record of this test in one pass, strictly
	// (DecodeAs[K]); optional, a faster path than the generic one.
	Decode func(line []byte) (*Record, error)
}

var registry = map[string]*Test{}

// Register adds a test; it is called from the init of each test's file.
func Register(t *Test) {
	if _, dup := registry[t.Name]; dup {
		panic("schemas: test registered twice: " + t.Name)
	}
	registry[t.Name] = t
}

// register adds the test whose keys are of type K: its NewKeys and its
// Decode (DecodeAs[K]) are made from the type.
func register[K any, PK interface {
	*K
	TestKeys
}](name, table string, columns []string, versions ...string) {
	Register(&Test{
		Name:     name,
		Versions: versions,
		Table:    table,
		Columns:  columns,
		NewKeys:  func() TestKeys { return PK(new(K)) },
		Decode:   DecodeAs[K, PK],
	})
}

// Lookup returns the registered test called name.
func Lookup(name string) (*Test, bool) {
	t, ok := registry[name]
	return t, ok
}

// Tests returns every registered test, sorted by name.
func Tests() []*Test {
	out := make([]*Test, 0, len(registry))
	for _, t := range registry {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Record is one measurement: the envelope and the test's keys.
type Record struct {
	Envelope
	TestKeys TestKeys `json:"test_keys" v:"required" doc:"The test's own results; their layout depends on test_name."`
}

// MaxRecordBytes bounds one encoded record (one NDJSON line).
const MaxRecordBytes = 1 << 20

// ErrDecode is wrapped by every error of DecodeRecord that is about the
// encoding (not JSON, not UTF-8, wrong types) rather than the values.
var ErrDecode = errors.New("cannot decode record")

// DecodeRecord parses one JSON record strictly (no unknown fields, no
// trailing data, valid UTF-8) and validates it against the rules of its test
// as of now. The error is a *ValidationError listing field paths and reasons.
func DecodeRecord(line []byte, now time.Time) (*Record, error) {
	if len(line) > MaxRecordBytes {
		return nil, invalid("", "record is %d bytes, more than the limit of %d", len(line), MaxRecordBytes)
	}
	if !utf8.Valid(line) {
		return nil, invalid("", "record is not valid UTF-8")
	}
	// Fast path: one decoding pass into the test's own type, chosen by a
	// peek at test_name and confirmed after decoding. Any doubt or error
	// falls through to the generic path, which also explains errors. A
	// fuzz test checks that the two paths agree.
	if test, ok := registry[peekTestName(line)]; ok && test.Decode != nil {
		if rec, err := test.Decode(line); err == nil && rec.TestName == test.Name {
			if err := rec.Validate(now); err != nil {
				return nil, err
			}
			return rec, nil
		}
	}
	rec, err := decodeGeneric(line)
	if err != nil {
		return nil, err
	}
	if err := rec.Validate(now); err != nil {
		return nil, err
	}
	return rec, nil
}

// decodeGeneric decodes in two passes with encoding/json: the envelope,
// then test_keys into the type of the test it names. Slower than a test's
// Decode, it reports errors with field paths.
func decodeGeneric(line []byte) (*Record, error) {
	var raw struct {
		Envelope
		TestKeys json.RawMessage `json:"test_keys"`
	}
	if err := strictUnmarshal(line, &raw); err != nil {
		return nil, decodeError("", line, err, reflect.TypeOf(Envelope{}))
	}
	test, ok := registry[raw.TestName]
	if !ok {
		if raw.TestName == "" {
			return nil, invalid("test_name", "is required")
		}
		return nil, invalid("test_name", "unknown test %.32q (known: %s)", raw.TestName, strings.Join(TestNames(), ", "))
	}
	if len(raw.TestKeys) == 0 || bytes.Equal(raw.TestKeys, []byte("null")) {
		return nil, invalid("test_keys", "is required")
	}
	keys := test.NewKeys()
	if err := strictUnmarshal(raw.TestKeys, keys); err != nil {
		return nil, decodeError("test_keys", raw.TestKeys, err, reflect.TypeOf(keys).Elem())
	}
	return &Record{Envelope: raw.Envelope, TestKeys: keys}, nil
}

// Validate checks every field of r; now is the reference for start_time.
func (r *Record) Validate(now time.Time) error {
	c := &checker{}
	c.walk(nil, reflect.ValueOf(&r.Envelope), rules{})
	r.Envelope.check(c, now)
	test, ok := registry[r.TestName]
	switch {
	case !ok:
		c.add("test_name", "unknown test %.32q", r.TestName)
	case !slices.Contains(test.Versions, r.TestVersion):
		c.add("test_version", "unknown version %.16q of %s (known: %s)", r.TestVersion, test.Name, strings.Join(test.Versions, ", "))
	}
	if r.TestKeys == nil {
		c.add("test_keys", "is required")
	} else {
		if ok && reflect.TypeOf(r.TestKeys) != reflect.TypeOf(test.NewKeys()) {
			c.add("test_keys", "has the layout of another test")
		}
		c.walk(&fpath{name: "test_keys"}, reflect.ValueOf(r.TestKeys), rules{})
		if !c.full() {
			r.TestKeys.Check(Checker{c})
		}
	}
	if len(c.errs) > 0 {
		return &ValidationError{Fields: c.errs}
	}
	return nil
}

// TestNames returns the names of the registered tests, in order.
func TestNames() []string {
	var names []string
	for _, t := range Tests() {
		names = append(names, t.Name)
	}
	return names
}

// PeerServerID is the server.id of every record of a peer test: peers' own
// IDs, which the rendezvous (proto/rendezvous) maps to their addresses, are
// never published.
const PeerServerID = "peer"

func invalid(path, format string, args ...any) error {
	return &ValidationError{Fields: []FieldError{{Path: path, Reason: fmt.Sprintf(format, args...)}}}
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errTrailing
	}
	return nil
}

var errTrailing = errors.New("trailing data after the JSON object")

// decodeError turns an encoding/json error into a field error with the most
// precise path the error allows.
func decodeError(prefix string, data []byte, err error, typ reflect.Type) error {
	var (
		typeErr   *json.UnmarshalTypeError
		syntaxErr *json.SyntaxError
		timeErr   *time.ParseError
	)
	path, reason := prefix, ""
	switch {
	case errors.As(err, &typeErr):
		if p := pathAt(data, typeErr.Offset); p != "" {
			path = join(prefix, p)
		} else if typeErr.Field != "" {
			path = join(prefix, typeErr.Field)
		}
		reason = fmt.Sprintf("must be %s, not a JSON %s", jsonKind(typeErr.Type), typeErr.Value)
		if r := intRange(typeErr.Type); r != "" && strings.HasPrefix(typeErr.Value, "number") {
			reason = "must be an integer " + r + ", not " + typeErr.Value
		}
	case errors.As(err, &syntaxErr):
		reason = fmt.Sprintf("malformed JSON at byte %d: %s", syntaxErr.Offset, strings.TrimPrefix(syntaxErr.Error(), "json: "))
	case errors.As(err, &timeErr):
		path = join(prefix, "start_time")
		reason = "must be an RFC 3339 time such as 2026-01-02T15:04:05Z"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		reason = "truncated JSON"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := unknownField(data, typ)
		if name == "" {
			name = strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		}
		if len(name) > 64 {
			name = name[:64] + "..."
		}
		return &ValidationError{Fields: []FieldError{{Path: join(prefix, name), Reason: "is not a field of this record (schema_version " + fmt.Sprint(SchemaVersion) + ")"}}}
	default:
		reason = strings.TrimPrefix(err.Error(), "json: ")
	}
	return fmt.Errorf("%w: %w", ErrDecode, &ValidationError{Fields: []FieldError{{Path: path, Reason: reason}}})
}

// intRange describes the values an integer type holds, e.g. "from 0 to 255".
func intRange(t reflect.Type) string {
	if t == nil {
		return ""
	}
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("from 0 to %d", uint64(1)<<t.Bits()-1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("from %d to %d", -(int64(1) << (t.Bits() - 1)), int64(1)<<(t.Bits()-1)-1)
	}
	return ""
}

func jsonKind(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.String:
		return "a string"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map, reflect.Pointer:
		return "an object"
	}
	return "a " + t.Kind().String()
}

// unknownField returns the path of the first member of data (a JSON
// object) that is not a field of struct type t, looking into nested objects
// and arrays of objects; "" when there is none.
func unknownField(data []byte, t reflect.Type) string {
	var v any
	if json.Unmarshal(data, &v) != nil {
		return ""
	}
	return unknownIn(v, t, "")
}

func unknownIn(v any, t reflect.Type, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch x := v.(type) {
	case map[string]any:
		if t.Kind() != reflect.Struct || t == timeType {
			return ""
		}
		known := map[string]reflect.Type{}
		for _, f := range fieldsOf(t) {
			known[f.name] = t.FieldByIndex(f.index).Type
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ft, ok := known[k]
			if !ok {
				// encoding/json matches names case-insensitively.
				for name, typ := range known {
					if strings.EqualFold(name, k) {
						ft, ok = typ, true
					}
				}
			}
			if !ok {
				return join(path, k)
			}
			if p := unknownIn(x[k], ft, join(path, k)); p != "" {
				return p
			}
		}
	case []any:
		if t.Kind() != reflect.Slice {
			return ""
		}
		for i, e := range x {
			if p := unknownIn(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	}
	return ""
}

// peekTestName finds the value of test_name in a record without decoding
// it: a hint for the fast path, which checks it after decoding.
func peekTestName(line []byte) string {
	const key = `"test_name":"`
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return ""
	}
	rest := line[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || j > 32 {
		return ""
	}
	return string(rest[:j])
}

// DecodeAs decodes a record whose keys are of type K in one pass; tests
// register it as their Decode, e.g. DecodeAs[Speedtest].
func DecodeAs[K any, PK interface {
	*K
	TestKeys
}](line []byte) (*Record, error) {
	var raw struct {
		Envelope
		TestKeys PK `json:"test_keys"`
	}
	dec := gojson.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	if off := dec.InputOffset(); off < 0 || off > int64(len(line)) || len(bytes.TrimSpace(line[off:])) != 0 {
		return nil, errTrailing
	}
	if raw.TestKeys == nil {
		return nil, errors.New("no test_keys")
	}
	return &Record{Envelope: raw.Envelope, TestKeys: raw.TestKeys}, nil
}

// pathAt returns the JSON path (a.b[2].c) of the value at byte offset end
// of data, the offset encoding/json reports in type errors; "" when it
// cannot tell. data is syntactically valid up to there.
func pathAt(data []byte, end int64) string {
	type frame struct {
		array bool
		key   string // object: the key of the current member
		index int    // array: the index of the current element
	}
	var stack []frame
	render := func() string {
		var b strings.Builder
		for _, f := range stack {
			if f.array {
				fmt.Fprintf(&b, "[%d]", f.index)
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.key)
		}
		return b.String()
	}
	afterValue := func() {
		if n := len(stack) - 1; n >= 0 && stack[n].array {
			stack[n].index++
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		n := len(stack) - 1
		if n >= 0 && !stack[n].array && !dec.More() {
			// End of an object: consume '}' below.
		} else if n >= 0 && !stack[n].array {
			tok, err := dec.Token() // a key
			if err != nil {
				return ""
			}
			stack[n].key, _ = tok.(string)
		}
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if dec.InputOffset() >= end {
				return render()
			}
			stack = append(stack, frame{array: tok == json.Delim('[')})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if dec.InputOffset() >= end {
				return render()
			}
			afterValue()
		default:
			if dec.InputOffset() >= end {
				return render()
			}
			afterValue()
		}
	}
}
