package publish_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/publish"
	"github.com/neubot/neubot/publish/publishtest"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

// seedDay is what seed put into ClickHouse for one day.
type seedDay struct {
	published   map[string]bool // measurement_uids a real dump must hold
	unpublished map[string]bool // can_publish=false, synthetic, or another day
	clientAddrs []string        // full client addresses the records carried
}

// seed inserts, as the collector's loader does, a day of records: real
// published ones (some in two copies: the agent's and the server's), some
// with can_publish=false, synthetic ones, and some on the days around it.
func seed(t testing.TB, conn driver.Conn, day time.Time, n int, asn uint32) seedDay {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(asn), uint64(n)))
	s := seedDay{published: map[string]bool{}, unpublished: map[string]bool{}}
	test, _ := schemas.Lookup(schemas.SpeedtestName)
	batch, err := conn.PrepareBatch(context.Background(), "INSERT INTO speedtest ("+strings.Join(test.TableColumns(), ", ")+")")
	if err != nil {
		t.Fatal(err)
	}
	defer batch.Close()
	late := map[string]bool{} // arrive after their day closed
	add := func(r *schemas.Record, country string, verified bool) {
		ann := schemas.Annotation{Verified: verified, ServerKey: "test", Pseudonym: "p" + strings.ReplaceAll(r.AgentID, "-", "")[:15], ASN: asn, Org: fmt.Sprintf("Example ISP %d, Inc.", asn), Country: country,
			Prefix: "198.51.100.0/24", DB: "test-db", IngestedAt: r.StartTime.Add(10 * time.Minute)}
		if late[r.MeasurementUID] {
			ann.IngestedAt = r.StartTime.Truncate(24 * time.Hour).Add(24*time.Hour + schemas.ClosedAfter + time.Second)
		}
		if strings.Contains(r.Server.ClientAddress, ":") {
			ann.Prefix = "2001:db8:77::/48"
		}
		if err := batch.Append(r.Row(ann, nil)...); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		addr := fmt.Sprintf("198.51.100.%d", 1+i%250)
		if i%7 == 0 {
			addr = fmt.Sprintf("2001:db8:77::%x", 1+i)
		}
		s.clientAddrs = append(s.clientAddrs, addr)
		at := day.Add(time.Duration(rng.IntN(86400)) * time.Second)
		r := schemastest.Speedtest(rng, at, addr, []float64{2, 7, 20, 100, 1000}[i%5])
		switch {
		case i%10 == 1:
			r.Consent.CanPublish = false
			s.unpublished[r.MeasurementUID] = true
		case i%10 == 2:
			s.unpublished[r.MeasurementUID] = true // stays synthetic
		case i%10 == 5 && i%20 == 5:
			r.Synthetic = false
			late[r.MeasurementUID] = true // stored, never published
			s.unpublished[r.MeasurementUID] = true
		case i%10 == 3:
			r.Synthetic = false
			r.StartTime = day.Add(-time.Duration(1+rng.IntN(3600)) * time.Second) // the day before
			s.unpublished[r.MeasurementUID] = true
		default:
			r.Synthetic = false
			r.Server.Peer = i%10 == 6 // served by a volunteer's agent: unsigned, never published
			if r.Server.Peer {
				s.unpublished[r.MeasurementUID] = true
				add(r, "IT", false)
				continue
			}
			s.published[r.MeasurementUID] = true
			if i%10 == 4 {
				// The agent's own copy first (no server view, other numbers):
				// the server's copy must win.
				agentCopy := *r
				keys := *r.TestKeys.(*schemas.Speedtest)
				keys.ServerView = nil
				keys.Download.GoodputMbps = 0.5
				agentCopy.TestKeys = &keys
				add(&agentCopy, "IT", false)
			}
		}
		add(r, "IT", !s.unpublished[r.MeasurementUID])
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestExportRoundTrip: a day is exported, then read back with arrow-go; row
// count, checksums and every value equal the ClickHouse rows; the CSV.gz
// holds the same; a privacy scan of every output file finds no address and
// no synthetic or unpublishable row; exporting again changes nothing.
func TestExportRoundTrip(t *testing.T) {
	_, conn := localchtest.NewDatabase(t)
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	s := seed(t, conn, day, 3000, 64496)
	dir := t.TempDir()
	test, _ := schemas.Lookup(schemas.SpeedtestName)
	var progress []uint64
	now := time.Date(2026, 11, 23, 1, 0, 0, 0, time.UTC)
	cfg := publish.ExportConfig{Conn: conn, Dir: dir, ASNDB: "test-db", ASNDBLicence: "CC BY 4.0",
		Progress: func(n uint64) { progress = append(progress, n) }, Now: func() time.Time { return now }}
	m, err := publish.ExportDay(context.Background(), cfg, test, day)
	if err != nil {
		t.Fatal(err)
	}
	if m.Rows != uint64(len(s.published)) || len(progress) == 0 || progress[len(progress)-1] != m.Rows {
		t.Fatalf("rows %d, want %d (progress %v)", m.Rows, len(s.published), progress)
	}
	dayDir := filepath.Join(dir, "speedtest", "2026", "11", "20")
	for _, f := range m.Files {
		b, err := os.ReadFile(filepath.Join(dayDir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != f.SHA256 || int64(len(b)) != f.Bytes {
			t.Fatalf("%s: checksum or size differs from the manifest", f.Name)
		}
	}
	if m.ASNDatabase != "test-db" || m.SchemaVersion != schemas.SchemaVersion || m.Licence == "" || m.GeneratedAt != "2026-11-23T01:00:00Z" || len(m.MethodologyVersion) == 0 {
		t.Fatalf("manifest lacks fields: %+v", m)
	}

	// The ClickHouse rows the dump must equal, as JSON values per column.
	want := clickhouseRows(t, conn, `SELECT * FROM speedtest FINAL WHERE toDate(start_time) = '2026-11-20'
		AND consent_can_publish = 1 AND synthetic = 0 AND verified = 1 AND ingested_at < '2026-11-23 00:00:00' ORDER BY measurement_uid`)
	got := parquetRows(t, filepath.Join(dayDir, "speedtest-2026-11-20.parquet"))
	if len(got.rows) != len(want.rows) || len(want.rows) != len(s.published) {
		t.Fatalf("parquet %d rows, ClickHouse %d, published %d", len(got.rows), len(want.rows), len(s.published))
	}
	if !reflect.DeepEqual(got.names, want.names) {
		t.Fatalf("columns differ:\n%v\n%v", got.names, want.names)
	}
	for i := range want.rows {
		for j := range want.names {
			if got.rows[i][j] != want.rows[i][j] {
				t.Fatalf("row %d column %s: parquet %s, ClickHouse %s", i, want.names[j], got.rows[i][j], want.rows[i][j])
			}
		}
	}
	// The server's copies won over the agent's.
	mbps := indexOf(want.names, "download_mbps")
	for _, r := range got.rows {
		if r[mbps] == "0.5" {
			t.Fatal("an agent copy is in the dump")
		}
	}

	// The CSV holds the same rows and numbers.
	csvRows := readCSV(t, filepath.Join(dayDir, "speedtest-2026-11-20.csv.gz"))
	if len(csvRows) != len(want.rows)+1 || !reflect.DeepEqual(csvRows[0], want.names) {
		t.Fatalf("csv: %d lines, header %v", len(csvRows), csvRows[0])
	}
	for i, r := range csvRows[1:] {
		for _, name := range []string{"measurement_uid", "agent_pseudonym", "download_mbps", "upload_mbps", "rtt_median_ms", "client_prefix", "client_org", "download_samples_mbps", "sv_tcp_rtt_ms"} {
			j := indexOf(want.names, name)
			if !sameCSV(r[j], want.rows[i][j]) {
				t.Fatalf("csv row %d %s: %q, ClickHouse %s", i, name, r[j], want.rows[i][j])
			}
		}
	}

	// Nothing unpublishable, nothing synthetic, no address, anywhere.
	uid := indexOf(want.names, "measurement_uid")
	for _, r := range got.rows {
		id := strings.Trim(r[uid], `"`)
		if !s.published[id] || s.unpublished[id] {
			t.Fatalf("%s is in the dump", id)
		}
	}
	syn := indexOf(want.names, "synthetic")
	for _, r := range got.rows {
		if r[syn] != "0" {
			t.Fatal("a synthetic row is in the dump")
		}
	}
	privacyScan(t, dir, s.clientAddrs)
	// Rows that arrived after their day closed are stored, not published.
	var lateRows uint64
	if err := conn.QueryRow(context.Background(), `SELECT count() FROM speedtest FINAL WHERE synthetic = 0 AND consent_can_publish = 1
		AND toDate(start_time) = '2026-11-20' AND ingested_at >= '2026-11-23 00:00:00'`).Scan(&lateRows); err != nil || lateRows < 100 {
		t.Fatalf("late rows stored: %d, %v", lateRows, err)
	}

	// Again: same files, same manifest (generation time included), same index.
	before := snapshotTree(t, dir)
	now = now.Add(time.Hour) // a rewritten manifest or index would say so
	if _, err := publish.ExportDay(context.Background(), cfg, test, day); err != nil {
		t.Fatal(err)
	}
	if after := snapshotTree(t, dir); !reflect.DeepEqual(before, after) {
		t.Fatal("exporting the same day again changed the tree")
	}
	idx, err := publish.ReadIndex(dir)
	if err != nil || len(idx.Days) != 1 || idx.Days[0].Rows != m.Rows || len(idx.Days[0].Files) != 2 {
		t.Fatalf("index: %+v, %v", idx, err)
	}
	// A dump file deleted since is written again, the same bytes.
	csvPath := filepath.Join(dayDir, "speedtest-2026-11-20.csv.gz")
	if err := os.Remove(csvPath); err != nil {
		t.Fatal(err)
	}
	if _, err := publish.ExportDay(context.Background(), cfg, test, day); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(csvPath); err != nil || fmt.Sprintf("%x", sha256.Sum256(b)) != m.Files[1].SHA256 {
		t.Fatalf("the deleted CSV was not restored: %v", err)
	}
	// No temporary file is left behind.
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error {
		if strings.Contains(filepath.Base(p), ".tmp-") {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}

type table struct {
	names []string
	rows  [][]string
}

func indexOf(names []string, name string) int {
	for i, n := range names {
		if n == name {
			return i
		}
	}
	panic("no column " + name)
}

func jsonOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// clickhouseRows reads a query's rows as JSON text per value; UUIDs and
// times become what the dump holds (text, UTC seconds).
// dropPrivate removes the columns that are never published (the clear
// agent_id) from a table read with SELECT *.
func dropPrivate(in table) table {
	var keep []int
	out := table{}
	for i, n := range in.names {
		if !schemas.PrivateColumns[n] {
			keep = append(keep, i)
			out.names = append(out.names, n)
		}
	}
	for _, r := range in.rows {
		row := make([]string, len(keep))
		for k, i := range keep {
			row[k] = r[i]
		}
		out.rows = append(out.rows, row)
	}
	return out
}

func clickhouseRows(t *testing.T, conn driver.Conn, q string) (out table) {
	t.Helper()
	types, rows := localchtest.Rows(t, conn, q)
	for _, ct := range types {
		out.names = append(out.names, ct.Name())
	}
	defer func() { out = dropPrivate(out) }()
	for _, vals := range rows {
		row := make([]string, len(vals))
		for i, x := range vals {
			if tm, ok := x.(time.Time); ok {
				x = tm.UTC().Format(time.RFC3339)
			}
			if b, ok := x.([]uint8); ok { // an Array(UInt8), not bytes
				ns := make([]uint16, len(b))
				for k, v := range b {
					ns[k] = uint16(v)
				}
				x = ns
			}
			if s, ok := x.(fmt.Stringer); ok && types[i].DatabaseTypeName() == "UUID" {
				x = s.String()
			}
			row[i] = jsonOf(x)
		}
		out.rows = append(out.rows, row)
	}
	return out
}

// parquetRows reads a Parquet file with arrow-go, as JSON text per value.
func parquetRows(t *testing.T, path string) table {
	t.Helper()
	pf, err := file.NewParquetReader(openFile(t, path))
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	var out table
	for _, fld := range tbl.Schema().Fields() {
		out.names = append(out.names, fld.Name)
	}
	out.rows = make([][]string, tbl.NumRows())
	for i := range out.rows {
		out.rows[i] = make([]string, len(out.names))
	}
	for j := 0; j < int(tbl.NumCols()); j++ {
		row := 0
		for _, chunk := range tbl.Column(j).Data().Chunks() {
			for k := 0; k < chunk.Len(); k++ {
				var v any
				switch a := chunk.(type) {
				case *array.Timestamp:
					v = a.Value(k).ToTime(a.DataType().(*arrow.TimestampType).Unit).UTC().Format(time.RFC3339)
				default:
					v = a.GetOneForMarshal(k)
				}
				if chunk.IsNull(k) {
					v = nil
				}
				out.rows[row][j] = jsonOf(v)
				row++
			}
		}
	}
	return out
}

// openFile opens path for reading until the test ends.
func openFile(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	zr, err := gzip.NewReader(openFile(t, path))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(zr).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// sameCSV compares a CSV cell with a JSON value: strings unquoted, arrays
// and numbers as JSON, NULL as an empty cell.
func sameCSV(cell, js string) bool {
	if js == "null" {
		return cell == ""
	}
	if strings.HasPrefix(js, `"`) {
		var s string
		_ = json.Unmarshal([]byte(js), &s)
		return cell == s
	}
	var a, b any
	if json.Unmarshal([]byte(cell), &a) != nil || json.Unmarshal([]byte(js), &b) != nil {
		return false
	}
	return reflect.DeepEqual(a, b)
}

// privacyScan reads every file under dir (Parquet decoded with arrow-go,
// CSV.gz decompressed, JSON as is) and fails on anything that parses as an
// IPv4 or IPv6 address and is not the network part of a prefix ("/len"
// right after it); it first checks that it would find each of addrs.
func privacyScan(t *testing.T, dir string, addrs []string) {
	t.Helper()
	// The detector finds every address the records carried, were it there.
	for _, a := range addrs {
		if findAddress([]byte(`"`+a+`",`)) != a {
			t.Fatalf("the privacy scan would miss %s", a)
		}
	}
	scanned := 0
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		var text []byte
		switch {
		case strings.HasSuffix(p, ".parquet"):
			tb := parquetRows(t, p)
			text = []byte(strings.Join(tb.names, ",") + "\n")
			for _, r := range tb.rows {
				text = append(text, strings.Join(r, ",")+"\n"...)
			}
			raw, _ := os.ReadFile(p) // the footer's metadata, in the clear
			text = append(text, printableRuns(raw, 16)...)
		case strings.HasSuffix(p, ".gz"):
			f, _ := os.Open(p)
			zr, err := gzip.NewReader(f)
			if err != nil {
				return err
			}
			text, err = io.ReadAll(zr)
			f.Close()
			if err != nil {
				return err
			}
		default:
			text, err = os.ReadFile(p)
			if err != nil {
				return err
			}
		}
		scanned++
		if found := findAddress(text); found != "" {
			i := bytes.Index(text, []byte(found))
			t.Errorf("%s holds an address: %s (in %q)", p, found, text[max(0, i-40):min(len(text), i+40)])
		}
		if found := publishtest.FindErrorText(text); found != "" {
			t.Errorf("%s holds an error's text: %q", p, found)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned < 4 {
		t.Fatalf("privacy scan read %d files", scanned)
	}
}

// printableRuns is the runs of at least n printable ASCII bytes of b, one
// a line, as strings(1) shows a binary file: the text a reader of the file
// would find (metadata, descriptions), not bytes of compressed data that
// look like "::1" by chance.
func printableRuns(b []byte, n int) []byte { return publishtest.PrintableRuns(b, n) }

// findAddress returns the first IP address in text that is not a prefix.
func findAddress(text []byte) string { return publishtest.FindAddress(text) }

// snapshotTree maps every file under dir to its bytes and modification time.
func snapshotTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			sum := sha256.Sum256(b)
			out[p] = hex.EncodeToString(sum[:]) + " " + fi.ModTime().String()
		}
		return nil
	})
	return out
}

// TestFindAddress: the privacy scan's own detector finds addresses and
// leaves prefixes, times, versions and numbers alone.
func TestFindAddress(t *testing.T) {
	for text, want := range map[string]string{
		"x,198.51.100.7,y":                        "198.51.100.7",
		`"2001:db8::1"`:                           "2001:db8::1",
		"::ffff:10.0.0.1 z":                       "::ffff:10.0.0.1",
		"198.51.100.0/24,2001:db8:77::/48":        "",
		"2026-11-20T10:00:00Z,15:04:05,0.1.0-dev": "",
		"2.3.2026061719 1.5 [1,2.25]":             "",
		"write tcp 203.0.113.36:51234->x":         "203.0.113.36:51234",
	} {
		if got := findAddress([]byte(text)); got != want {
			t.Errorf("findAddress(%q) = %q, want %q", text, got, want)
		}
	}
	// Error text: Go's wording, not the failure vocabulary's words.
	for text, want := range map[string]string{
		"read tcp [::1]:80->[::1]:5: read: connection reset by peer": "read tcp",
		`"failure":"connection_reset","x":"i/o timeout"`:             "i/o timeout",
		"websocket: close 1006 (abnormal closure)":                   "websocket: c",
		`"failure":"connection_reset","flow_error":"timeout"`:        "",
		"see http://127.0.0.1/api and https://x/":                    "",
	} {
		if got := publishtest.FindErrorText([]byte(text)); got != want {
			t.Errorf("FindErrorText(%q) = %q, want %q", text, got, want)
		}
	}
}

// setFailures sets the failure fields of a record's test keys, whatever
// the test, by their JSON name.
func setFailures(r *schemas.Record, word string) {
	var set func(v reflect.Value)
	set = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				set(v.Elem())
			}
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				if strings.HasPrefix(v.Type().Field(i).Tag.Get("json"), "failure") && v.Field(i).Kind() == reflect.String {
					v.Field(i).SetString(word)
				} else if v.Type().Field(i).IsExported() {
					set(v.Field(i))
				}
			}
		}
	}
	set(reflect.ValueOf(r.TestKeys))
}

// TestExportEveryTest: every registered test's day exports, and reads back
// from Parquet and CSV.gz equal to its ClickHouse rows, every column, with
// no address in any file.
func TestExportEveryTest(t *testing.T) {
	_, conn := localchtest.NewDatabase(t)
	day := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(5, 5))
	var addrs []string
	for _, test := range schemas.Tests() {
		gen := schemastest.Generators[test.Name]
		if gen == nil {
			t.Errorf("no record generator for test %s: add one to schemastest.Generators", test.Name)
			continue
		}
		var recs []*schemas.Record
		for i := 0; i < 300; i++ {
			addr := fmt.Sprintf("203.0.113.%d", 1+i%200)
			addrs = append(addrs, addr)
			r := gen(rng, day.Add(time.Duration(rng.IntN(86400))*time.Second), addr, []float64{2, 20, 200}[i%3])
			r.Synthetic = i%4 == 0
			if i%5 == 0 {
				// What a transfer broken by the network leaves in a record.
				setFailures(r, schemas.FailureOf(fmt.Errorf("write tcp %s:443->%s:51234: %w", "192.0.2.1", addr, syscall.EPIPE)))
			}
			recs = append(recs, r)
		}
		localchtest.InsertRecords(t, conn, recs, func(r *schemas.Record) schemas.Annotation {
			return schemas.Annotation{Verified: true, ServerKey: "test", ASN: 64500, Org: "Example, \"Quoted\" Org", Country: "FR", Prefix: "203.0.113.0/24", DB: "test-db", IngestedAt: r.StartTime.Add(time.Minute)}
		})
		m, err := publish.ExportDay(context.Background(), publish.ExportConfig{Conn: conn, Dir: dir, ASNDB: "test-db"}, test, day)
		if err != nil {
			t.Fatalf("%s: %v", test.Name, err)
		}
		want := clickhouseRows(t, conn, "SELECT * FROM "+test.Table+" FINAL WHERE consent_can_publish = 1 AND synthetic = 0 AND ingested_at < '2026-11-24 00:00:00' ORDER BY measurement_uid")
		dayDir := filepath.Join(dir, publish.DayDir(test.Name, day))
		got := parquetRows(t, filepath.Join(dayDir, test.Name+"-2026-11-21.parquet"))
		if len(want.rows) != int(m.Rows) || len(want.rows) < 200 || len(got.rows) != len(want.rows) || !reflect.DeepEqual(got.names, want.names) {
			t.Fatalf("%s: Parquet (%d rows) differs from ClickHouse (%d rows)", test.Name, len(got.rows), len(want.rows))
		}
		for i := range want.rows {
			for j := range want.names {
				if got.rows[i][j] != want.rows[i][j] {
					t.Fatalf("%s: row %d column %s: Parquet %s, ClickHouse %s", test.Name, i, want.names[j], got.rows[i][j], want.rows[i][j])
				}
			}
		}
		csvRows := readCSV(t, filepath.Join(dayDir, test.Name+"-2026-11-21.csv.gz"))
		for i, r := range csvRows[1:] {
			for j := range r {
				if !sameCSV(r[j], want.rows[i][j]) {
					t.Fatalf("%s: CSV row %d %s = %q, ClickHouse %s", test.Name, i, want.names[j], r[j], want.rows[i][j])
				}
			}
		}
		t.Logf("%s: %d rows, %d columns round-trip through Parquet and CSV.gz", test.Name, m.Rows, len(want.names))
	}
	privacyScan(t, dir, addrs)
}
