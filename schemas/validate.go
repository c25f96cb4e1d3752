package schemas

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// FieldError says what is wrong with one field of a record. Path is the JSON
// path from the root of the record, dotted, with [i] for array elements, e.g.
// "test_keys.download.samples[3].mbps". An empty Path means the whole line.
type FieldError struct {
	Path   string `json:"field"`
	Reason string `json:"reason"`
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Reason
	}
	return e.Path + ": " + e.Reason
}

// ValidationError is the error of a record that failed validation; it holds
// every problem found, not only the first.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Error()
	}
	return "invalid record: " + strings.Join(parts, "; ")
}

// maxErrorsPerRecord bounds the list of problems reported for one record, so
// that a hostile record cannot make the answer larger than itself.
const maxErrorsPerRecord = 16

// rules are the constraints of one field, parsed from its `v` struct tag:
//
//	required    strings: non-empty; pointers: present; times: non-zero
//	uuid        a string holding a canonical UUID
//	min=X max=X bounds of a number (inclusive)
//	maxlen=N    strings: at most N bytes
//	maxitems=N  arrays: at most N elements
//	enum=a|b    strings: one of the listed values
//	ip          a string holding an IPv4 or IPv6 address (or empty)
//	safe        a name: ASCII letters, digits and . _ - + : / ( ) ~ @ and
//	            space, starting with a letter or a digit (SafePattern)
type rules struct {
	required bool
	uuid     bool
	ip       bool
	safe     bool
	min, max *float64
	maxLen   int
	maxItems int
	enum     []string
}

// SafePattern is the JSON Schema pattern of the safe rule: the names a
// record carries (software, versions, server identifiers) are published in
// CSV, where a leading = + - @ would make a spreadsheet run them as a
// formula, and in HTML; they need nothing else.
const SafePattern = "^([A-Za-z0-9][A-Za-z0-9._+:/()~@ -]*)?$"

func safeName(s string) bool {
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
		case i > 0 && strings.IndexByte("._+:/()~@ -", ch) >= 0:
		default:
			return false
		}
	}
	return true
}

func parseRules(tag string) (rules, error) {
	var r rules
	if tag == "" {
		return r, nil
	}
	for _, item := range strings.Split(tag, ",") {
		key, val, _ := strings.Cut(item, "=")
		switch key {
		case "required":
			r.required = true
		case "uuid":
			r.uuid = true
		case "ip":
			r.ip = true
		case "safe":
			r.safe = true
		case "min", "max":
			f, err := strconv.ParseFloat(val, 64)
			if err != nil {
				return r, fmt.Errorf("bad %s in tag %q: %w", key, tag, err)
			}
			if key == "min" {
				r.min = &f
			} else {
				r.max = &f
			}
		case "maxlen", "maxitems":
			n, err := strconv.Atoi(val)
			if err != nil {
				return r, fmt.Errorf("bad %s in tag %q: %w", key, tag, err)
			}
			if key == "maxlen" {
				r.maxLen = n
			} else {
				r.maxItems = n
			}
		case "enum":
			r.enum = strings.Split(val, "|")
		default:
			return r, fmt.Errorf("unknown rule %q in tag %q", key, tag)
		}
	}
	return r, nil
}

// field is one exported, JSON-visible field of a struct type.
type field struct {
	index    []int
	name     string // JSON name
	doc      string
	rules    rules
	optional bool // omitempty or a pointer
}

var fieldCache sync.Map // reflect.Type -> []field

// fieldsOf returns the JSON fields of struct type t, flattening embedded
// structs the way encoding/json does. It panics on a malformed tag: tags are
// code, and a test walks every registered type.
func fieldsOf(t reflect.Type) []field {
	if f, ok := fieldCache.Load(t); ok {
		return f.([]field)
	}
	var out []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			for _, inner := range fieldsOf(sf.Type) {
				inner.index = append([]int{i}, inner.index...)
				out = append(out, inner)
			}
			continue
		}
		if name == "" {
			name = sf.Name
		}
		r, err := parseRules(sf.Tag.Get("v"))
		if err != nil {
			panic(fmt.Sprintf("schemas: %s.%s: %v", t.Name(), sf.Name, err))
		}
		out = append(out, field{
			index:    []int{i},
			name:     name,
			doc:      sf.Tag.Get("doc"),
			rules:    r,
			optional: strings.Contains(opts, "omitempty") || sf.Type.Kind() == reflect.Pointer,
		})
	}
	fieldCache.Store(t, out)
	return out
}

// checker accumulates field errors while walking a value.
type checker struct {
	errs []FieldError
}

func (c *checker) add(path, format string, args ...any) {
	if len(c.errs) >= maxErrorsPerRecord {
		return
	}
	c.errs = append(c.errs, FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
}

func (c *checker) addAt(path *fpath, format string, args ...any) {
	if len(c.errs) < maxErrorsPerRecord {
		c.add(path.String(), format, args...)
	}
}

func (c *checker) full() bool { return len(c.errs) >= maxErrorsPerRecord }

var timeType = reflect.TypeOf(time.Time{})

// fpath is a field path built while walking a record; it is turned into a
// string only when a problem is found, so valid records cost no strings.
type fpath struct {
	parent *fpath
	name   string // "" for an array element
	index  int
}

func (p *fpath) String() string {
	if p == nil {
		return ""
	}
	s := p.parent.String()
	if p.name == "" {
		return s + "[" + strconv.Itoa(p.index) + "]"
	}
	return join(s, p.name)
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// walk checks v (found at path) against r and recurses into structs, slices
// and pointers. Floats are always checked for NaN and infinities, strings
// always for valid UTF-8.
func (c *checker) walk(path *fpath, v reflect.Value, r rules) {
	if c.full() {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			if r.required {
				c.addAt(path, "is required")
			}
			return
		}
		c.walk(path, v.Elem(), r)
	case reflect.Struct:
		if v.Type() == timeType {
			if r.required && v.Interface().(time.Time).IsZero() {
				c.addAt(path, "is required")
			}
			return
		}
		for _, f := range fieldsOf(v.Type()) {
			c.walk(&fpath{parent: path, name: f.name}, v.FieldByIndex(f.index), f.rules)
		}
	case reflect.Slice:
		if r.maxItems > 0 && v.Len() > r.maxItems {
			c.addAt(path, "has %d items, more than the limit of %d", v.Len(), r.maxItems)
			return
		}
		if r.required && v.Len() == 0 {
			c.addAt(path, "must not be empty")
		}
		elem := rules{min: r.min, max: r.max, maxLen: r.maxLen, enum: r.enum, uuid: r.uuid, ip: r.ip, safe: r.safe}
		for i := 0; i < v.Len() && !c.full(); i++ {
			c.walk(&fpath{parent: path, index: i}, v.Index(i), elem)
		}
	case reflect.Float32, reflect.Float64:
		c.number(path, v.Float(), r)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		c.number(path, float64(v.Int()), r)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		c.number(path, float64(v.Uint()), r)
	case reflect.String:
		c.str(path, v.String(), r)
	}
}

func (c *checker) number(path *fpath, f float64, r rules) {
	switch {
	case math.IsNaN(f):
		c.addAt(path, "must be a number, not NaN")
	case math.IsInf(f, 0):
		c.addAt(path, "must be finite")
	case r.min != nil && f < *r.min:
		if *r.min == 0 {
			c.addAt(path, "must not be negative (got %g)", f)
		} else {
			c.addAt(path, "must be at least %g (got %g)", *r.min, f)
		}
	case r.max != nil && f > *r.max:
		c.addAt(path, "must be at most %g (got %g)", *r.max, f)
	}
}

func (c *checker) str(path *fpath, s string, r rules) {
	switch {
	case !utf8.ValidString(s):
		c.addAt(path, "must be valid UTF-8")
	case r.maxLen > 0 && len(s) > r.maxLen:
		c.addAt(path, "is %d bytes long, more than the limit of %d", len(s), r.maxLen)
	case r.required && s == "":
		c.addAt(path, "is required")
	case s == "":
		// Optional and empty: nothing more to check.
	case r.uuid:
		if u, err := uuid.Parse(s); err != nil || len(s) != 36 || u.String() != s {
			c.addAt(path, "must be a lower-case UUID like 123e4567-e89b-12d3-a456-426614174000")
		}
	case r.ip:
		if !validIP(s) {
			c.addAt(path, "must be an IPv4 or IPv6 address")
		}
	case r.safe && !safeName(s):
		c.addAt(path, "must hold only ASCII letters, digits and . _ - + : / ( ) ~ @ or space, and start with a letter or a digit")
	case len(r.enum) > 0:
		for _, e := range r.enum {
			if s == e {
				return
			}
		}
		c.addAt(path, "must be one of %s (got %q)", strings.Join(r.enum, ", "), s)
	}
}
