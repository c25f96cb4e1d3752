package publish

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/google/uuid"
	"github.com/klauspost/compress/gzip"
	"golang.org/x/sync/errgroup"

	"github.com/neubot/neubot/internal/atomicfile"
	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/internal/version"
	"github.com/neubot/neubot/schemas"
)

// DataLicence is the licence of the published measurements.
const DataLicence = "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)"

// Dumps are written in record batches of batchRows rows and Parquet row
// groups of at most rowGroupRows rows (about 30-60 MB of compressed data:
// large enough for fast scans, small enough to keep the writer's memory
// bounded and to let readers skip by statistics).
const (
	batchRows    = 64 * 1024
	rowGroupRows = 512 * 1024
)

// ExportConfig configures the dump writer.
type ExportConfig struct {
	Conn driver.Conn
	// Dir is the root of the datasets tree:
	// <Dir>/<test>/<YYYY>/<MM>/<DD>/<test>-<YYYY-MM-DD>.{parquet,csv.gz}
	// plus manifest.json there and <Dir>/index.json.
	Dir string
	// ASNDB and ASNDBLicence describe the IP-to-ASN data, for the manifest:
	// ASNDB is used when the day has no rows naming theirs.
	ASNDB, ASNDBLicence string
	// Synthetic exports the simulated rows instead of the real ones, for the
	// demo: the manifest says so. A real dump never holds a synthetic row.
	Synthetic bool
	// Progress, when set, is called with the rows written so far in the
	// current day, at most every batch.
	Progress func(rows uint64)
	// Key, the collector's identity, signs each day's manifest
	// (identity.ManifestSigName beside it; spec/trust.md). Nil: the
	// manifests are not signed (and a signature left by an earlier export
	// of a day whose manifest changes is removed).
	Key *identity.Key
	// Now, when set, is the clock of the generation times (nil: the wall
	// clock); tests move it.
	Now func() time.Time
}

func (cfg *ExportConfig) now() time.Time {
	if cfg.Now != nil {
		return cfg.Now()
	}
	return time.Now()
}

// File is one data file in a manifest.
type File struct {
	Name   string `json:"name"`
	Format string `json:"format"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// ManifestColumn documents one column of the dump.
type ManifestColumn struct {
	Name        string `json:"name"`
	Type        string `json:"clickhouse_type"`
	Description string `json:"description"`
}

// Manifest describes one day of one test, next to its files.
type Manifest struct {
	Test               string           `json:"test"`
	Day                string           `json:"day"`
	Rows               uint64           `json:"rows"`
	Files              []File           `json:"files"`
	SchemaVersion      int              `json:"schema_version"`
	MethodologyVersion []string         `json:"methodology_versions"`
	Licence            string           `json:"licence"`
	ASNDatabase        string           `json:"asn_database"`
	ASNDatabaseLicence string           `json:"asn_database_licence"`
	Synthetic          bool             `json:"synthetic"`
	Selection          string           `json:"selection"`
	Generator          string           `json:"generator"`
	GeneratedAt        string           `json:"generated_at"`
	Columns            []ManifestColumn `json:"columns"`
}

// Index lists every exported day, newest first.
type Index struct {
	GeneratedAt string       `json:"generated_at"`
	Licence     string       `json:"licence"`
	Days        []IndexEntry `json:"days"`
}

// IndexEntry is one day of one test in the index.
type IndexEntry struct {
	Test     string `json:"test"`
	Day      string `json:"day"`
	Rows     uint64 `json:"rows"`
	Manifest string `json:"manifest"`
	Files    []File `json:"files"`
}

// finalSettings adds to s what a query with FINAL and a WHERE needs: no
// PREWHERE, which ClickHouse 18.16 moves conditions into even with FINAL,
// filtering the copies of a measurement before they are merged.
func finalSettings(s clickhouse.Settings) clickhouse.Settings {
	s["optimize_move_to_prewhere"] = 0
	return s
}

// DayDir is the directory of a day of a test, relative to the root.
func DayDir(test string, day time.Time) string {
	return filepath.Join(test, day.Format("2006"), day.Format("01"), day.Format("02"))
}

// selection is the WHERE clause of what a dump publishes.
func selection(synthetic bool) string {
	syn := 0
	if synthetic {
		syn = 1
	}
	return fmt.Sprintf("consent_can_publish = 1 AND synthetic = %d AND %s AND %s", syn, schemas.OnTimeSQL, schemas.PublishedSQL)
}

// publicColumns reads the columns of a test's table. Every column is public
// but schemas.PrivateColumns (the clear agent_id; its monthly pseudonym is
// published): the schema keeps only truncated prefixes, never a full
// address (a test of the schemas and the privacy scans check it).
func publicColumns(ctx context.Context, conn driver.Conn, table string) ([]*column, error) {
	defs, err := columnDefs(ctx, conn, table)
	if err != nil {
		return nil, err
	}
	return newColumns(defs)
}

// columnDef is a column of a table as system.columns describes it.
type columnDef struct{ name, typ, doc string }

// columnDefs reads the published columns of a table, in order: all but
// schemas.PrivateColumns.
func columnDefs(ctx context.Context, conn driver.Conn, table string) ([]columnDef, error) {
	all, err := chdb.Select(ctx, conn, func(rows driver.Rows, d *columnDef) error {
		return rows.Scan(&d.name, &d.typ, &d.doc)
	}, `SELECT name, type, comment FROM system.columns WHERE database = currentDatabase() AND table = ?`, table)
	if err != nil {
		return nil, err
	}
	var defs []columnDef
	for _, d := range all {
		if !schemas.PrivateColumns[d.name] { // never published, in no output
			defs = append(defs, d)
		}
	}
	if len(defs) == 0 {
		return nil, fmt.Errorf("table %s has no columns (migrations not applied?)", table)
	}
	return defs, nil
}

// newColumns makes the columns of defs, each with its scan destination.
func newColumns(defs []columnDef) ([]*column, error) {
	cols := make([]*column, len(defs))
	for i, d := range defs {
		c, err := newColumn(d.name, d.typ, d.doc)
		if err != nil {
			return nil, err
		}
		cols[i] = c
	}
	return cols, nil
}

// utcDay selects a UTC day whatever the server's time zone: start_time in
// [day, day + 24 h) as Unix seconds, the two arguments.
const utcDay = "start_time >= toDateTime(?) AND start_time < toDateTime(?)"

// Count is the number of rows a dump of the day would hold, before merging
// copies of one measurement (so at least the dump's rows): cheap, for
// progress bars.
func Count(ctx context.Context, conn driver.Conn, test *schemas.Test, day time.Time, synthetic bool) (uint64, error) {
	var n uint64
	err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s WHERE %s AND %s", test.Table, utcDay, selection(synthetic)), day.Unix(), day.AddDate(0, 0, 1).Unix()).Scan(&n)
	return n, err
}

// ExportDay writes the dump of one UTC day of one test: Parquet, CSV.gz and
// the manifest, each atomically (temporary file, fsync, rename), then
// updates the index. Rows are in (start day, measurement_uid) order, so the
// files of a day that has not changed are the same bytes: exporting it again
// keeps the existing manifest, generation time included.
func ExportDay(ctx context.Context, cfg ExportConfig, test *schemas.Test, day time.Time) (*Manifest, error) {
	day = time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC)
	ds := day.Format(time.DateOnly)
	cols, err := publicColumns(ctx, cfg.Conn, test.Table)
	if err != nil {
		return nil, fmt.Errorf("publish: %s: %w", test.Name, err)
	}
	dir := filepath.Join(cfg.Dir, DayDir(test.Name, day))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base := fmt.Sprintf("%s-%s", test.Name, ds)
	pqTmp, err := newHashedFile(filepath.Join(dir, base+".parquet"))
	if err != nil {
		return nil, err
	}
	defer pqTmp.Discard()
	csvTmp, err := newHashedFile(filepath.Join(dir, base+".csv.gz"))
	if err != nil {
		return nil, err
	}
	defer csvTmp.Discard()

	m := &Manifest{
		Test: test.Name, Day: ds, SchemaVersion: schemas.SchemaVersion, MethodologyVersion: test.Versions,
		Licence: DataLicence, ASNDatabase: cfg.ASNDB, ASNDatabaseLicence: cfg.ASNDBLicence, Synthetic: cfg.Synthetic,
		Selection: selection(cfg.Synthetic), Generator: "neubot-server " + version.Version,
	}
	for _, c := range cols {
		m.Columns = append(m.Columns, ManifestColumn{Name: c.name, Type: c.chType, Description: c.doc})
	}
	// The IP databases that annotated the day's rows, as the rows say (the
	// one loaded now may be newer): the manifest names the data's origin,
	// and an unchanged day stays the same bytes after a database update.
	var dbs string
	if err := cfg.Conn.QueryRow(ctx, fmt.Sprintf("SELECT arrayStringConcat(arraySort(groupUniqArray(annotation_db)), ' + ') FROM %s WHERE %s AND %s",
		test.Table, utcDay, m.Selection), day.Unix(), day.AddDate(0, 0, 1).Unix()).Scan(&dbs); err != nil {
		return nil, fmt.Errorf("publish: %s %s: %w", test.Name, ds, err)
	}
	if dbs != "" {
		m.ASNDatabase = dbs
	}
	rows, err := writeDay(ctx, cfg, test, cols, ds, pqTmp, csvTmp, m)
	if err != nil {
		return nil, fmt.Errorf("publish: export %s %s: %w", test.Name, ds, err)
	}
	m.Rows = rows
	for _, f := range []*hashedFile{pqTmp, csvTmp} {
		m.Files = append(m.Files, File{Name: filepath.Base(f.Name()), Format: formatOf(f.Name()), Bytes: f.n, SHA256: hex.EncodeToString(f.sum.Sum(nil))})
	}

	// Idempotence: the same files as the current manifest's keep it as is.
	manifestPath := filepath.Join(dir, "manifest.json")
	if old, err := readManifest(manifestPath); err == nil && sameFiles(old.Files, m.Files) && old.Rows == m.Rows && intact(dir, old.Files) {
		if err := signManifest(dir, cfg.Key, false); err != nil {
			return nil, err
		}
		if err := updateIndex(cfg.Dir, old, cfg.now()); err != nil {
			return nil, err
		}
		return old, nil
	}
	for _, f := range []*hashedFile{pqTmp, csvTmp} {
		if err := f.Commit(); err != nil {
			return nil, err
		}
	}
	m.GeneratedAt = cfg.now().UTC().Format(time.RFC3339)
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(manifestPath, append(b, '\n')); err != nil {
		return nil, err
	}
	if err := signManifest(dir, cfg.Key, true); err != nil {
		return nil, err
	}
	if err := updateIndex(cfg.Dir, m, cfg.now()); err != nil {
		return nil, err
	}
	return m, nil
}

// signManifest writes the signature of dir's manifest.json with key,
// unless a valid one by key is there already; with no key it removes the
// signature of a manifest just rewritten (changed, it would not verify).
func signManifest(dir string, key *identity.Key, rewritten bool) error {
	sigPath := filepath.Join(dir, identity.ManifestSigName)
	if key == nil {
		if rewritten {
			if err := os.Remove(sigPath); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	}
	manifest, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(sigPath); err == nil && identity.VerifyManifest(key.PublicKey(), manifest, old) == nil {
		return nil
	}
	return atomicfile.WriteFile(sigPath, key.SignManifest(manifest))
}

// VerifyDay checks a downloaded day in dir against the collector's public
// key: the signature of manifest.json (identity.ManifestSigName), then
// each data file the manifest names, by size and SHA-256. It returns the
// manifest once everything matches, else the first mismatch.
func VerifyDay(dir string, collectorKey ed25519.PublicKey) (*Manifest, error) {
	manifest, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, err
	}
	sig, err := os.ReadFile(filepath.Join(dir, identity.ManifestSigName))
	if err != nil {
		return nil, fmt.Errorf("the day is not signed: %w", err)
	}
	if err := identity.VerifyManifest(collectorKey, manifest, sig); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "manifest.json"), err)
	}
	m := new(Manifest)
	if err := json.Unmarshal(manifest, m); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	if len(m.Files) == 0 {
		return nil, errors.New("manifest.json names no file")
	}
	for _, f := range m.Files {
		if f.Name != filepath.Base(f.Name) || strings.HasPrefix(f.Name, ".") {
			return nil, fmt.Errorf("manifest.json names the file %q outside its directory", f.Name)
		}
		fh, err := os.Open(filepath.Join(dir, f.Name))
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		n, err := io.Copy(h, fh)
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		if n != f.Bytes {
			return nil, fmt.Errorf("%s: %d bytes, the signed manifest says %d", f.Name, n, f.Bytes)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
			return nil, fmt.Errorf("%s: SHA-256 %s, the signed manifest says %s", f.Name, got, f.SHA256)
		}
	}
	return m, nil
}

// intact tells whether the files on disk are those of the manifest (a
// file deleted or damaged since is written again).
func intact(dir string, files []File) bool {
	for _, f := range files {
		fh, err := os.Open(filepath.Join(dir, f.Name))
		if err != nil {
			return false
		}
		h := sha256.New()
		n, err := io.Copy(h, fh)
		fh.Close()
		if err != nil || n != f.Bytes || hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
			return false
		}
	}
	return true
}

func formatOf(name string) string {
	if strings.HasSuffix(name, ".parquet") {
		return "parquet"
	}
	return "csv.gz"
}

// writeDay streams the day's rows from ClickHouse into both files.
func writeDay(ctx context.Context, cfg ExportConfig, test *schemas.Test, cols []*column, ds string, pqOut, csvOut io.Writer, m *Manifest) (uint64, error) {
	fields := make([]arrow.Field, len(cols))
	names := make([]string, len(cols))
	for i, c := range cols {
		fields[i], names[i] = c.field, c.name
	}
	meta := arrow.NewMetadata(
		[]string{"neubot.test", "neubot.day", "neubot.schema_version", "neubot.methodology_versions", "neubot.licence", "neubot.asn_database", "neubot.selection"},
		[]string{m.Test, m.Day, fmt.Sprint(m.SchemaVersion), strings.Join(m.MethodologyVersion, ","), m.Licence, m.ASNDatabase, m.Selection})
	schema := arrow.NewSchema(fields, &meta)
	props := parquet.NewWriterProperties(
		parquet.WithCompression(compress.Codecs.Zstd),
		parquet.WithCompressionLevel(3),
		parquet.WithMaxRowGroupLength(rowGroupRows),
		parquet.WithDictionaryDefault(true),
		parquet.WithStats(true),
		parquet.WithCreatedBy("neubot-server "+version.Version),
	)
	pw, err := pqarrow.NewFileWriter(schema, pqOut, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		return 0, err
	}
	zw, err := gzip.NewWriterLevel(csvOut, gzip.DefaultCompression)
	if err != nil {
		return 0, err
	}
	// The CSV header, then one line per row.
	line := []byte{}
	for i, n := range names {
		if i > 0 {
			line = append(line, ',')
		}
		line = append(line, n...)
	}
	line = append(line, '\n')
	if _, err := zw.Write(line); err != nil {
		return 0, err
	}

	// A pipeline on three goroutines: this one scans rows and builds Arrow
	// record batches and CSV text; one writer compresses the batches into
	// Parquet, the other the text into gzip (and each hashes its file).
	// Compression runs while ClickHouse sends the next rows.
	g, gctx := errgroup.WithContext(ctx)
	recs := make(chan arrow.RecordBatch, 2)
	texts := make(chan []byte, 4)
	g.Go(func() error {
		for rec := range recs {
			err := pw.WriteBuffered(rec)
			rec.Release()
			if err != nil {
				for r := range recs {
					r.Release()
				}
				return err
			}
		}
		return pw.Close()
	})
	g.Go(func() error {
		for b := range texts {
			if _, err := zw.Write(b); err != nil {
				for range texts {
				}
				return err
			}
		}
		return zw.Close()
	})
	n, err := scanDay(gctx, cfg, test, cols, ds, m.Selection, schema, recs, texts)
	close(recs)
	close(texts)
	if werr := g.Wait(); werr != nil {
		err = werr // the cause: the scan stopped because a writer failed
	}
	if err == nil && cfg.Progress != nil {
		cfg.Progress(n)
	}
	return n, err
}

// scanDay reads the day's rows and sends them on as record batches and CSV
// text, batchRows rows at a time.
func scanDay(ctx context.Context, cfg ExportConfig, test *schemas.Test, cols []*column, ds, sel string, schema *arrow.Schema, recs chan<- arrow.RecordBatch, texts chan<- []byte) (uint64, error) {
	names := make([]string, len(cols))
	dests := make([]any, len(cols))
	for i, c := range cols {
		names[i], dests[i] = c.name, c.dest
	}
	rb := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer rb.Release()
	var text []byte
	flush := func() error {
		rec := rb.NewRecordBatch()
		if rec.NumRows() == 0 {
			rec.Release()
			return nil
		}
		select {
		case recs <- rec:
		case <-ctx.Done():
			rec.Release()
			return ctx.Err()
		}
		select {
		case texts <- text:
		case <-ctx.Done():
			return ctx.Err()
		}
		text = make([]byte, 0, cap(text))
		return nil
	}

	// FINAL merges the copies of one measurement. With one thread it reads
	// the day's partition through one merging stream, in sorting-key order
	// (toDate(start_time), measurement_uid), so the files of an unchanged
	// day are the same bytes at every export. An ORDER BY would restate it
	// at the price of sorting the whole day (minutes for ten million rows);
	// instead the order is checked below as the rows arrive.
	//
	// On a cluster (docs/cluster.md) the table is Distributed: each shard
	// sends its rows in that order, but the streams of the shards arrive
	// interleaved. There ORDER BY says it, each shard sorts its part
	// (spilling to disk beyond 1 GiB) and the server that received the
	// query merges the sorted streams.
	settings := finalSettings(clickhouse.Settings{"max_execution_time": 3600, "max_threads": 1})
	q := fmt.Sprintf("SELECT %s FROM %s FINAL WHERE %s AND %s",
		strings.Join(names, ", "), test.Table, utcDay, sel)
	var engine string
	if err := cfg.Conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = ?", test.Table).Scan(&engine); err != nil {
		return 0, fmt.Errorf("engine of %s: %w", test.Table, err)
	}
	if engine == "Distributed" {
		q += " ORDER BY toDate(start_time, 'UTC'), measurement_uid"
		settings["max_bytes_before_external_sort"] = 1 << 30
	}
	qctx := clickhouse.Context(ctx, clickhouse.WithSettings(settings))
	d, err := time.Parse(time.DateOnly, ds)
	if err != nil {
		return 0, err
	}
	rows, err := cfg.Conn.Query(qctx, q, d.Unix(), d.AddDate(0, 0, 1).Unix())
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var n uint64
	var field []byte
	order := newKeyOrder(cols)
	for rows.Next() {
		if err := rows.Scan(dests...); err != nil {
			return n, err
		}
		if err := order.next(); err != nil {
			return n, err
		}
		for i, c := range cols {
			c.appendTo(rb.Field(i))
			if i > 0 {
				text = append(text, ',')
			}
			field = c.csv(field[:0])
			text = appendCSVField(text, field, c.text)
		}
		text = append(text, '\n')
		n++
		if n%batchRows == 0 {
			if err := flush(); err != nil {
				return n, err
			}
			if cfg.Progress != nil {
				cfg.Progress(n)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return n, err
	}
	return n, flush()
}

// keyOrder checks that rows arrive in the table's sorting-key order. The
// order of UUIDs differs between ClickHouse versions (18.16 compares the
// second half first; later ones compare bytes in order), so the rows must be
// sorted under one of the two, the same one throughout.
type keyOrder struct {
	start             *time.Time
	uid               *uuid.UUID
	prevDay           int64
	prevUID           uuid.UUID
	first             bool
	halvesOK, bytesOK bool
}

func newKeyOrder(cols []*column) *keyOrder {
	k := &keyOrder{first: true, halvesOK: true, bytesOK: true}
	for _, c := range cols {
		switch c.name {
		case "start_time":
			k.start = c.dest.(*time.Time)
		case "measurement_uid":
			k.uid = c.dest.(*uuid.UUID)
		}
	}
	return k
}

func (k *keyOrder) next() error {
	if k.start == nil || k.uid == nil {
		return errors.New("the table has no start_time or measurement_uid column")
	}
	day := k.start.Unix() / 86400
	if !k.first {
		if day < k.prevDay {
			k.halvesOK, k.bytesOK = false, false
		} else if day == k.prevDay {
			c := bytes.Compare(k.uid[8:], k.prevUID[8:])
			if c == 0 {
				c = bytes.Compare(k.uid[:8], k.prevUID[:8])
			}
			k.halvesOK = k.halvesOK && c > 0
			k.bytesOK = k.bytesOK && bytes.Compare(k.uid[:], k.prevUID[:]) > 0
		}
		if !k.halvesOK && !k.bytesOK {
			return fmt.Errorf("ClickHouse sent the rows out of the sorting key's order (at %s): the dump would not be reproducible", k.uid)
		}
	}
	k.first, k.prevDay, k.prevUID = false, day, *k.uid
	return nil
}

// hashedFile is a dump file written atomically (internal/atomicfile), its
// bytes counted and hashed on the way.
type hashedFile struct {
	*atomicfile.File
	sum hash.Hash
	n   int64
}

func newHashedFile(final string) (*hashedFile, error) {
	f, err := atomicfile.Create(final)
	if err != nil {
		return nil, err
	}
	return &hashedFile{File: f, sum: sha256.New()}, nil
}

func (h *hashedFile) Write(p []byte) (int, error) {
	n, err := h.File.Write(p)
	h.sum.Write(p[:n])
	h.n += int64(n)
	return n, err
}

func readManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := new(Manifest)
	return m, json.Unmarshal(b, m)
}

func sameFiles(a, b []File) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ReadIndex reads the index of a datasets tree; a tree with no index yet
// has an empty one.
func ReadIndex(root string) (*Index, error) {
	b, err := os.ReadFile(filepath.Join(root, "index.json"))
	if errors.Is(err, os.ErrNotExist) {
		return &Index{Licence: DataLicence, Days: []IndexEntry{}}, nil
	}
	if err != nil {
		return nil, err
	}
	idx := new(Index)
	if err := json.Unmarshal(b, idx); err != nil {
		return nil, fmt.Errorf("publish: %s: %w", filepath.Join(root, "index.json"), err)
	}
	return idx, nil
}

// indexMu serialises updates of an index within a process (the export
// scheduler and an export run by hand in the same process); exports of one
// tree from two processes at once are not supported.
var indexMu sync.Mutex

// updateIndex puts a day's manifest into the index (replacing the entry of
// the same test and day), newest day first.
func updateIndex(root string, m *Manifest, now time.Time) error {
	indexMu.Lock()
	defer indexMu.Unlock()
	idx, err := ReadIndex(root)
	if err != nil {
		return err
	}
	day, _ := time.Parse(time.DateOnly, m.Day)
	e := IndexEntry{Test: m.Test, Day: m.Day, Rows: m.Rows, Manifest: filepath.ToSlash(filepath.Join(DayDir(m.Test, day), "manifest.json"))}
	for _, f := range m.Files {
		f.Name = filepath.ToSlash(filepath.Join(DayDir(m.Test, day), f.Name))
		e.Files = append(e.Files, f)
	}
	kept := idx.Days[:0]
	for _, d := range idx.Days {
		if d.Test == m.Test && d.Day == m.Day {
			if sameEntry(d, e) {
				return nil // nothing changed: leave the index as it is
			}
			continue
		}
		kept = append(kept, d)
	}
	idx.Days = append(kept, e)
	sort.Slice(idx.Days, func(i, j int) bool {
		if idx.Days[i].Day != idx.Days[j].Day {
			return idx.Days[i].Day > idx.Days[j].Day
		}
		return idx.Days[i].Test < idx.Days[j].Test
	})
	idx.Licence = DataLicence
	idx.GeneratedAt = now.UTC().Format(time.RFC3339)
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(root, "index.json"), append(b, '\n'))
}

func sameEntry(a, b IndexEntry) bool {
	return a.Test == b.Test && a.Day == b.Day && a.Rows == b.Rows && a.Manifest == b.Manifest && sameFiles(a.Files, b.Files)
}

// ExportPending exports, for every registered test, the days up to through
// (inclusive) that have publishable rows and are not in the index yet,
// oldest first, at most maxDays of them; it returns the days exported.
// The scheduler calls it daily with through = the last closed day (see
// ClosedAfter): a dump is made once its day can no longer change.
func ExportPending(ctx context.Context, cfg ExportConfig, through time.Time, maxDays int) ([]*Manifest, error) {
	idx, err := ReadIndex(cfg.Dir)
	if err != nil {
		return nil, err
	}
	done := map[string]bool{}
	for _, e := range idx.Days {
		done[e.Test+" "+e.Day] = true
	}
	var out []*Manifest
	for _, test := range schemas.Tests() {
		rows, err := cfg.Conn.Query(ctx, fmt.Sprintf("SELECT DISTINCT toString(toDate(start_time, 'UTC')) AS d FROM %s WHERE %s AND toDate(start_time, 'UTC') <= toDate(?) ORDER BY d",
			test.Table, selection(cfg.Synthetic)), through.Format(time.DateOnly))
		if err != nil {
			return out, err
		}
		var days []string
		for rows.Next() {
			var d string
			if err := rows.Scan(&d); err != nil {
				rows.Close()
				return out, err
			}
			if !done[test.Name+" "+d] {
				days = append(days, d)
			}
		}
		rows.Close()
		for _, d := range days {
			if len(out) >= maxDays {
				return out, nil
			}
			day, _ := time.Parse(time.DateOnly, d)
			m, err := ExportDay(ctx, cfg, test, day)
			if err != nil {
				return out, err
			}
			out = append(out, m)
		}
	}
	return out, nil
}
