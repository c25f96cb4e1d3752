// Package publishtest holds the privacy scan of published outputs, shared
// by the tests of publish and of the platform (cmd/neubot-server): what
// must never appear in a dump, an API answer or a dashboard page is an IP
// address other than the published /24 and /48 prefixes, a clear agent_id
// or the free text of an error (spec/trust.md, "Privacy").
package publishtest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// FindAddress returns the first IP address in text that is not a prefix
// (an address with a port, as in an error's text, counts).
func FindAddress(text []byte) string {
	isAddrChar := func(r rune) bool {
		return r == '.' || r == ':' || r == '/' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'f') || (r >= 'A' && r <= 'F')
	}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		for _, tok := range strings.FieldsFunc(sc.Text(), func(r rune) bool { return !isAddrChar(r) }) {
			if strings.Contains(tok, "/") {
				continue // a prefix: its network part is public data
			}
			tok = strings.TrimRight(tok, ".:")
			if a, err := netip.ParseAddr(tok); err == nil && (a.Is4() || strings.Count(tok, ":") >= 2) {
				return tok
			}
			if _, err := netip.ParseAddrPort(tok); err == nil {
				return tok // address:port, as in an error's text
			}
		}
	}
	return ""
}

// errorText matches what Go's and the operating system's error messages
// say, which the failure vocabulary (schemas/failure.go) replaces.
var errorText = regexp.MustCompile(`(?i)\b(?:(?:read|write|dial|accept) (?:tcp|udp)[46]?\b|connection reset by peer|broken pipe|i/o timeout|use of closed network connection|context deadline exceeded|context canceled|no route to host|connection refused|network is unreachable|unexpected EOF|tls: [a-z]|x509: |websocket: [a-z]|http: [a-z]|net/http: )`)

// FindErrorText returns the first piece of an error message's free text in
// text, or "".
func FindErrorText(text []byte) string {
	return string(errorText.Find(text))
}

// Scan reports, for one published output, an address, a clear agent ID
// (with or without its dashes) or error text it holds; nil when clean.
func Scan(text []byte, agentIDs []string) []string {
	var out []string
	if a := FindAddress(text); a != "" {
		out = append(out, "the address "+a)
	}
	if e := FindErrorText(text); e != "" {
		out = append(out, fmt.Sprintf("error text %q", e))
	}
	for _, id := range agentIDs {
		if id == "" {
			continue
		}
		if bytes.Contains(text, []byte(id)) || bytes.Contains(text, []byte(strings.ReplaceAll(id, "-", ""))) {
			out = append(out, "the clear agent_id "+id)
		}
	}
	return out
}

// FileText is what a published file says: a Parquet file's column names
// and every value (plus the printable runs of its bytes, for the metadata
// in the clear), a .gz file's decompressed bytes, any other file as is.
func FileText(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasSuffix(path, ".parquet"):
		text, err := parquetText(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return append(text, PrintableRuns(raw, 16)...), nil
	case strings.HasSuffix(path, ".gz"):
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return io.ReadAll(zr)
	}
	return raw, nil
}

// parquetText reads a Parquet file into text: the column names on the
// first line, then one line per row of comma-separated values.
func parquetText(raw []byte) ([]byte, error) {
	pf, err := file.NewParquetReader(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		return nil, err
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		return nil, err
	}
	defer tbl.Release()
	var names []string
	for _, fld := range tbl.Schema().Fields() {
		names = append(names, fld.Name)
	}
	rows := make([][]string, tbl.NumRows())
	for i := range rows {
		rows[i] = make([]string, len(names))
	}
	for j := 0; j < int(tbl.NumCols()); j++ {
		row := 0
		for _, chunk := range tbl.Column(j).Data().Chunks() {
			for k := 0; k < chunk.Len(); k++ {
				rows[row][j] = chunk.ValueStr(k)
				row++
			}
		}
	}
	out := []byte(strings.Join(names, ",") + "\n")
	for _, r := range rows {
		out = append(out, strings.Join(r, ",")+"\n"...)
	}
	return out, nil
}

// PrintableRuns returns the runs of at least n printable ASCII bytes of b,
// one per line (as strings(1) does).
func PrintableRuns(b []byte, n int) []byte {
	var out []byte
	start := -1
	for i := 0; i <= len(b); i++ {
		if i < len(b) && b[i] >= 0x20 && b[i] < 0x7f {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 && i-start >= n {
			out = append(append(out, b[start:i]...), '\n')
		}
		start = -1
	}
	return out
}

// ScanTree scans every file under dir; it returns the files scanned and
// one line per problem found.
func ScanTree(dir string, agentIDs []string) (files int, problems []string, err error) {
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		text, err := FileText(p)
		if err != nil {
			return err
		}
		files++
		for _, pr := range Scan(text, agentIDs) {
			problems = append(problems, p+" holds "+pr)
		}
		return nil
	})
	return files, problems, err
}
