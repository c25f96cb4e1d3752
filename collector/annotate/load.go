package annotate

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// EnvDir names the environment variable that overrides [DefaultDir].
const EnvDir = "NEUBOT_IPDB"

// RelDir is where scripts/setup installs the databases, relative to the
// repository root.
const RelDir = ".deps/ipdb/node_modules/@ip-location-db"

// setupHint ends every error caused by a missing database.
const setupHint = "run scripts/setup to install it"

// Paths of the data files and package manifests inside the Open folder.
const (
	asnPkg     = "asn"
	ccPkg      = "geo-whois-asn-country"
	asn4File   = asnPkg + "/asn-ipv4.csv"
	asn6File   = asnPkg + "/asn-ipv6.csv"
	cc4File    = ccPkg + "/geo-whois-asn-country-ipv4.csv"
	cc6File    = ccPkg + "/geo-whois-asn-country-ipv6.csv"
	asnPkgJSON = asnPkg + "/package.json"
	ccPkgJSON  = ccPkg + "/package.json"
)

// ErrMalformed is wrapped by every error about a malformed CSV row.
var ErrMalformed = errors.New("malformed row")

// RowError reports a malformed row: File is the path (for [Open]) or the
// conventional file name (for [FromRanges]), Line is 1-based. Err wraps
// [ErrMalformed].
type RowError struct {
	File string
	Line int
	Err  error
}

func (e *RowError) Error() string {
	return fmt.Sprintf("annotate: %s:%d: %v", e.File, e.Line, e.Err)
}

func (e *RowError) Unwrap() error { return e.Err }

func rowErr(file string, line int, format string, args ...any) error {
	return &RowError{File: file, Line: line, Err: fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)}
}

// DefaultDir returns $NEUBOT_IPDB if set, otherwise the first
// .deps/ipdb/node_modules/@ip-location-db folder found walking up from the
// working directory, so that tests of any package and programs run from
// anywhere in the repository find the databases installed by scripts/setup.
func DefaultDir() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("annotate: looking for %s: %w", RelDir, err)
	}
	for d := wd; ; {
		cand := filepath.Join(d, filepath.FromSlash(RelDir))
		if fi, err := os.Stat(cand); err == nil && fi.IsDir() {
			return cand, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	return "", fmt.Errorf("annotate: IP database %s not found in %s or its parents and $%s is not set; %s: %w",
		RelDir, wd, EnvDir, setupHint, fs.ErrNotExist)
}

// Open loads the databases from dir, the @ip-location-db folder holding
// asn/ and geo-whois-asn-country/ (see [DefaultDir]). Malformed rows yield a
// [*RowError] naming the file and line; missing files yield an error that
// wraps [fs.ErrNotExist] and says to run scripts/setup. Every file must hold
// at least one row.
func Open(dir string) (*DB, error) {
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("annotate: IP database folder: %w; %s", err, setupHint)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("annotate: IP database folder %s is not a directory; %s", dir, setupHint)
	}
	v1, err := readVersion(filepath.Join(dir, filepath.FromSlash(asnPkgJSON)))
	if err != nil {
		return nil, err
	}
	v2, err := readVersion(filepath.Join(dir, filepath.FromSlash(ccPkgJSON)))
	if err != nil {
		return nil, err
	}
	var in [4]input
	for i, name := range [4]string{asn4File, asn6File, cc4File, cc6File} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("annotate: %w; %s", err, setupHint)
		}
		defer f.Close()
		in[i] = input{name: p, r: f}
	}
	db, err := build(in, v1+" "+v2)
	if err != nil {
		return nil, err
	}
	for i, n := range [4]int{len(db.asn4.lo), len(db.asn6.lo), len(db.cc4.lo), len(db.cc6.lo)} {
		if n == 0 {
			return nil, fmt.Errorf("annotate: %s holds no rows; %s again", in[i].name, setupHint)
		}
	}
	return db, nil
}

// readVersion returns "name@version" from an npm package.json.
func readVersion(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("annotate: %w; %s", err, setupHint)
	}
	var pkg struct{ Name, Version string }
	if err := json.Unmarshal(data, &pkg); err != nil {
		return "", fmt.Errorf("annotate: %s: %w", path, err)
	}
	if pkg.Name == "" || pkg.Version == "" {
		return "", fmt.Errorf("annotate: %s: missing name or version", path)
	}
	return pkg.Name + "@" + pkg.Version, nil
}

// FromRanges builds a [DB] from the four CSV streams, in the formats of
// asn/asn-ipv4.csv, asn/asn-ipv6.csv, geo-whois-asn-country-ipv4.csv and
// geo-whois-asn-country-ipv6.csv. A nil reader stands for an empty file.
// Rows need not be sorted. version is returned by [DB.Version].
func FromRanges(asn4, asn6, cc4, cc6 io.Reader, version string) (*DB, error) {
	return build([4]input{
		{path.Base(asn4File), asn4},
		{path.Base(asn6File), asn6},
		{path.Base(cc4File), cc4},
		{path.Base(cc6File), cc6},
	}, version)
}

type input struct {
	name string
	r    io.Reader
}

// build parses the ASN files and the country files concurrently.
func build(in [4]input, version string) (*DB, error) {
	db := &DB{version: version}
	var wg sync.WaitGroup
	var asnErr, ccErr error
	wg.Go(func() { asnErr = db.loadASN(in[0], in[1]) })
	wg.Go(func() { ccErr = db.loadCountries(in[2], in[3]) })
	wg.Wait()
	if err := errors.Join(asnErr, ccErr); err != nil {
		return nil, err
	}
	return db, nil
}

// loadASN fills db.asn4, db.asn6 and db.recs.
func (db *DB) loadASN(in4, in6 input) error {
	ids := make(map[asRecord]uint32, 1<<14)
	orgs := make(map[string]string, 1<<14)
	value := func(file string, line int, rec []string) (uint32, error) {
		if len(rec) != 4 {
			return 0, rowErr(file, line, "want 4 fields (start_ip,end_ip,asn,org), have %d", len(rec))
		}
		n, err := strconv.ParseUint(rec[2], 10, 32)
		if err != nil {
			return 0, rowErr(file, line, "bad ASN %q", rec[2])
		}
		org := rec[3]
		if o, ok := orgs[org]; ok {
			org = o
		} else {
			if !utf8.ValidString(org) {
				org = strings.ToValidUTF8(org, "\uFFFD")
			}
			org = strings.Clone(org) // do not pin csv's line buffer
			orgs[org] = org
		}
		r := asRecord{asn: uint32(n), org: org}
		id, ok := ids[r]
		if !ok {
			id = uint32(len(db.recs))
			ids[r] = id
			db.recs = append(db.recs, r)
		}
		return id, nil
	}
	s4, err := readSpans(in4, parse4, value)
	if err != nil {
		return err
	}
	db.asn4 = makeTable4(s4)
	s6, err := readSpans(in6, parse6, value)
	if err != nil {
		return err
	}
	db.asn6 = makeTable6(s6)
	db.recs = slices.Clip(db.recs)
	return nil
}

// loadCountries fills db.cc4, db.cc6 and db.countries.
func (db *DB) loadCountries(in4, in6 input) error {
	ids := make(map[[2]byte]uint32)
	value := func(file string, line int, rec []string) (uint32, error) {
		if len(rec) != 3 {
			return 0, rowErr(file, line, "want 3 fields (start_ip,end_ip,country_code), have %d", len(rec))
		}
		c := rec[2]
		if len(c) != 2 || !isLetter(c[0]) || !isLetter(c[1]) {
			return 0, rowErr(file, line, "bad country code %q", c)
		}
		k := [2]byte{c[0] &^ 0x20, c[1] &^ 0x20} // ASCII upper case
		id, ok := ids[k]
		if !ok {
			id = uint32(len(db.countries))
			ids[k] = id
			db.countries = append(db.countries, string(k[:]))
		}
		return id, nil
	}
	s4, err := readSpans(in4, parse4, value)
	if err != nil {
		return err
	}
	s6, err := readSpans(in6, parse6, value)
	if err != nil {
		return err
	}
	db.cc4 = narrow4(makeTable4(s4))
	db.cc6 = narrow6(makeTable6(s6))
	return nil
}

func isLetter(c byte) bool { return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' }

// narrow4 and narrow6 store country indexes (< 676) in 16 bits.
func narrow4(t table4[uint32]) table4[uint16] {
	v := make([]uint16, len(t.val))
	for i, x := range t.val {
		v[i] = uint16(x)
	}
	return table4[uint16]{lo: t.lo, hi: t.hi, val: v, idx: t.idx}
}

func narrow6(t table6[uint32]) table6[uint16] {
	v := make([]uint16, len(t.val))
	for i, x := range t.val {
		v[i] = uint16(x)
	}
	return table6[uint16]{lo: t.lo, hi: t.hi, val: v}
}

// key is an address as an integer: k4 for IPv4, u128 for IPv6.
type key[K any] interface {
	comparable
	less(K) bool
	inc() K // x+1, never called on the maximum
	dec() K // x-1, never called on zero
}

type k4 uint32

func (a k4) less(b k4) bool { return a < b }
func (a k4) inc() k4        { return a + 1 }
func (a k4) dec() k4        { return a - 1 }

func (a u128) inc() u128 {
	if a.lo == ^uint64(0) {
		return u128{a.hi + 1, 0}
	}
	return u128{a.hi, a.lo + 1}
}

func (a u128) dec() u128 {
	if a.lo == 0 {
		return u128{a.hi - 1, ^uint64(0)}
	}
	return u128{a.hi, a.lo - 1}
}

func parse4(s string) (k4, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, false
	}
	return k4(u32From(a)), true
}

func parse6(s string) (u128, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Zone() != "" {
		return u128{}, false
	}
	return u128From(a), true
}

// span is the range [lo, hi] with value val.
type span[K any] struct {
	lo, hi K
	val    uint32
}

// readSpans parses one CSV stream into sorted, disjoint spans.
func readSpans[K key[K]](in input, parse func(string) (K, bool),
	value func(file string, line int, rec []string) (uint32, error)) ([]span[K], error) {
	if in.r == nil {
		return nil, nil
	}
	family := "IPv4"
	if _, ok := any(*new(K)).(u128); ok {
		family = "IPv6"
	}
	cr := csv.NewReader(bufio.NewReaderSize(in.r, 1<<16))
	cr.FieldsPerRecord = -1 // checked by value, with a clearer message
	cr.ReuseRecord = true
	var spans []span[K]
	sorted := true
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, rowErr(in.name, pe.Line, "%w", pe.Err)
			}
			return nil, fmt.Errorf("annotate: reading %s: %w", in.name, err)
		}
		line, _ := cr.FieldPos(0)
		val, err := value(in.name, line, rec)
		if err != nil {
			return nil, err
		}
		lo, ok := parse(rec[0])
		if !ok {
			return nil, rowErr(in.name, line, "bad start address %q: not %s", rec[0], family)
		}
		hi, ok := parse(rec[1])
		if !ok {
			return nil, rowErr(in.name, line, "bad end address %q: not %s", rec[1], family)
		}
		if hi.less(lo) {
			return nil, rowErr(in.name, line, "end address %s is before start address %s", rec[1], rec[0])
		}
		if n := len(spans); n > 0 && spanBefore(span[K]{lo: lo, hi: hi}, spans[n-1]) {
			sorted = false
		}
		if len(spans) == cap(spans) { // double: append grows large slices by 1.25x
			spans = slices.Grow(spans, max(len(spans), 1<<12))
		}
		spans = append(spans, span[K]{lo: lo, hi: hi, val: val})
	}
	if !sorted {
		slices.SortStableFunc(spans, func(a, b span[K]) int {
			switch {
			case spanBefore(a, b):
				return -1
			case spanBefore(b, a):
				return 1
			}
			return 0
		})
	}
	return flatten(spans), nil
}

// spanBefore orders spans by start, wider first on equal starts.
func spanBefore[K key[K]](a, b span[K]) bool {
	if a.lo != b.lo {
		return a.lo.less(b.lo)
	}
	return b.hi.less(a.hi)
}

// flatten turns spans sorted by spanBefore (possibly overlapping) into
// disjoint sorted spans, "painting" each span over those before it, and
// merges adjacent spans with equal values.
func flatten[K key[K]](in []span[K]) []span[K] {
	out := make([]span[K], 0, len(in))
	var tail []span[K]
	for _, r := range in {
		n := len(out)
		if n == 0 || out[n-1].hi.less(r.lo) { // disjoint: the common case
			if n > 0 && out[n-1].val == r.val && out[n-1].hi.inc() == r.lo {
				out[n-1].hi = r.hi
			} else {
				out = append(out, r)
			}
			continue
		}
		// r overlaps out[j:], where j is the first span ending at or after
		// r.lo. Only out[j] can start before r.lo, because r starts at or
		// after every span painted so far and out is disjoint.
		j, _ := slices.BinarySearchFunc(out, r.lo, func(s span[K], x K) int {
			if s.hi.less(x) {
				return -1
			}
			return 1
		})
		tail = append(tail[:0], out[j:]...)
		out = out[:j]
		if t := tail[0]; t.lo.less(r.lo) {
			out = append(out, span[K]{lo: t.lo, hi: r.lo.dec(), val: t.val})
		}
		out = append(out, r)
		for _, t := range tail {
			if r.hi.less(t.hi) { // the part of t after r survives
				lo := t.lo
				if !r.hi.less(lo) {
					lo = r.hi.inc()
				}
				out = append(out, span[K]{lo: lo, hi: t.hi, val: t.val})
			}
		}
	}
	return out
}

// makeTable4 and makeTable6 copy spans into exactly sized column arrays.
func makeTable4(s []span[k4]) table4[uint32] {
	t := table4[uint32]{lo: make([]uint32, len(s)), hi: make([]uint32, len(s)), val: make([]uint32, len(s))}
	for i, x := range s {
		t.lo[i], t.hi[i], t.val[i] = uint32(x.lo), uint32(x.hi), x.val
	}
	t.index()
	return t
}

func makeTable6(s []span[u128]) table6[uint32] {
	t := table6[uint32]{lo: make([]u128, len(s)), hi: make([]u128, len(s)), val: make([]uint32, len(s))}
	for i, x := range s {
		t.lo[i], t.hi[i], t.val[i] = x.lo, x.hi, x.val
	}
	return t
}
