package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/spool"
	"github.com/neubot/neubot/schemas"
)

// The loader drains the spool into ClickHouse: one sealed segment at a time,
// batch inserts per test table, and the segment is deleted only after every
// insert of it succeeded. A segment inserted twice (a crash between insert
// and delete) is harmless: rows share their measurement_uid, and the loader
// does not insert a copy that would not win (see Dedup below).
//
// Faults are told apart (README, "Robustness"):
//
//   - A transient insert error (ClickHouse down, a timeout, too many parts)
//     retries the same segment with exponential backoff and jitter.
//   - An error that is permanent for a row (a value the table refuses) sends
//     that row, and only it, to deadletter.ndjson with the reason; the rest of
//     the segment is loaded. A server-side refusal of a block is bisected to
//     find its rows.
//   - A read error of the segment (a full file table, an I/O error) is
//     retried too; only damage on disk (spool.ErrCorrupt) quarantines it, and
//     a failed quarantine is retried with backoff as well.
//
// Each insert holds the rows of at most MaxPartitionsPerInsert months (the
// tables are partitioned by month): current ClickHouse releases refuse a
// block over max_partitions_per_insert_block (100 by default), and one such
// block would otherwise stall the loader for good.
//
// On a cluster (docs/cluster.md) the insert goes into the Distributed table
// synchronously (chdb.InsertSettings): it returns once each shard's rows are
// on a replica of that shard, so the segment is deleted only then. A retry
// of a segment whose insert failed half-way (a replica died) sends the same
// rows in the same order, so each shard gets the same block again and its
// ReplicatedMergeTree drops it as a duplicate (insert_deduplicate): no row
// is lost and none is stored twice.

const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
	// DefaultMaxPartitionsPerInsert is ClickHouse's default of
	// max_partitions_per_insert_block.
	DefaultMaxPartitionsPerInsert = 100
	// DefaultMaxStartAge is how old a start_time the collector accepts:
	// agents keep unsent results for months (laptops offline, data caps),
	// not for years. Older lines are refused at ingest (400, field
	// start_time).
	DefaultMaxStartAge = 400 * 24 * time.Hour
	// ClusterSetupTimeout bounds connecting to a cluster and migrating
	// it (30 s on a single server). Records wait in the spool meanwhile.
	ClusterSetupTimeout = 5 * time.Minute
)

// runLoader loads segments until ctx ends.
func (c *Collector) runLoader(ctx context.Context) {
	backoff := minBackoff
	wait := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff + rand.N(backoff/2+1)):
		}
		backoff = min(backoff*2, maxBackoff)
		return true
	}
	for {
		seg, err := c.spool.Next(ctx)
		if err != nil {
			return
		}
		err = c.loadSegment(ctx, seg)
		if err == nil {
			backoff = minBackoff
			if err := c.spool.Remove(seg); err != nil {
				c.log.Error("cannot delete loaded segment", "segment", seg.Path, "err", err)
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		var rerr *readError
		switch {
		case errors.Is(err, spool.ErrCorrupt):
			c.log.Error("segment is damaged on disk; moving it to quarantine", "segment", seg.Path, "err", err)
			if qerr := c.spool.Quarantine(seg); qerr != nil {
				c.metrics.loadEvents.WithLabelValues("quarantine_retry").Inc()
				c.log.Error("quarantine failed; will retry", "segment", seg.Path, "err", qerr, "retry_in", backoff)
				if !wait() {
					return
				}
				continue
			}
			c.metrics.quarantined.Inc()
			backoff = minBackoff
		case errors.As(err, &rerr):
			c.metrics.loadEvents.WithLabelValues("read_retry").Inc()
			c.log.Warn("cannot read segment; will retry (nothing is quarantined for a transient error)", "segment", filepath.Base(seg.Path), "records", seg.Records, "err", err, "retry_in", backoff)
			if !wait() {
				return
			}
		default:
			c.metrics.insertErrors.Inc()
			c.metrics.loadEvents.WithLabelValues("transient_insert_error").Inc()
			c.log.Warn("insert failed; will retry", "segment", filepath.Base(seg.Path), "records", seg.Records, "err", err, "retry_in", backoff)
			c.dropConn()
			if !wait() {
				return
			}
		}
	}
}

// readError is a failure to read a segment that is not damage on disk.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// conn returns the loader's ClickHouse connection, connecting (and applying
// the migrations) when there is none.
func (c *Collector) conn(ctx context.Context) (driver.Conn, error) {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.ch != nil {
		return c.ch, nil
	}
	// A bound, so that a server that hangs does not hold the loader
	// forever. On a cluster the migrations are distributed DDL, each
	// waiting for every replica: on a loaded machine one ALTER ... ON
	// CLUSTER took over 20 s, and a set-up cut short leaves its task in
	// the DDL queue, so that the next attempt waits behind it (CI saw a
	// collector start over for four minutes without applying migration 9).
	budget := 30 * time.Second
	if c.cfg.ClickHouse.Cluster != "" {
		budget = ClusterSetupTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	conn, err := chdb.Setup(cctx, c.cfg.ClickHouse, c.log)
	if err != nil {
		return nil, err
	}
	// Current releases enforce max_partitions_per_insert_block; 18.16 has
	// no such setting. Where it exists, the loader sets it to its own
	// bound, so that the server checks the split too.
	var n uint64
	if err := conn.QueryRow(cctx, "SELECT count() FROM system.settings WHERE name = 'max_partitions_per_insert_block'").Scan(&n); err == nil {
		c.hasPartitionLimit = n > 0
	}
	c.ch = conn
	return conn, nil
}

func (c *Collector) dropConn() {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.ch != nil {
		c.ch.Close()
		c.ch = nil
	}
}

// loadRow is one row to insert, with what the loader needs to place it.
type loadRow struct {
	idx     int // position of its record in the segment
	uid     string
	start   time.Time
	month   int // partition: YYYYMM of start_time
	version uint64
	values  []any
}

// batchRows groups the rows of one segment by table.
type batchRows struct {
	test *schemas.Test
	rows []loadRow
}

// deadLetter is a record the loader cannot load, with the reason.
type deadLetter struct {
	idx    int    // position in the segment
	record []byte // filled from the segment when written
	reason string
}

func (c *Collector) loadSegment(ctx context.Context, seg *spool.Segment) error {
	start := time.Now()
	tables := map[string]*batchRows{}
	var dead []deadLetter
	i := 0
	add := func(rec *schemas.Record, e spool.Entry) {
		test, _ := schemas.Lookup(rec.TestName)
		b := tables[test.Table]
		if b == nil {
			b = &batchRows{test: test}
			tables[test.Table] = b
		}
		ann := c.annotation(rec, e)
		st := rec.StartTime.UTC()
		b.rows = append(b.rows, loadRow{
			idx: i, uid: rec.MeasurementUID, start: st, month: st.Year()*100 + int(st.Month()),
			version: schemas.CopyVersion(ann.Verified, ann.IngestedAt),
			values:  rec.Row(ann, make([]any, 0, len(test.TableColumns()))),
		})
	}
	decoded := seg.Decoded()
	err := c.spool.Read(seg, func(e spool.Entry) error {
		defer func() { i++ }()
		if decoded != nil {
			// Written by this process: the records were decoded on
			// ingest; only the receive time and peer are read back.
			if i >= len(decoded) {
				return fmt.Errorf("%w: segment holds more records than were written", spool.ErrCorrupt)
			}
			add(decoded[i], e)
			return nil
		}
		// Validate as of the receive time: a replay must not reject a
		// record that was acceptable when it was acknowledged.
		rec, err := schemas.DecodeRecord(e.Record, e.Received)
		if err != nil {
			// Accepted once, refused now: only a stricter validator
			// after an upgrade does that. Keep it for an operator.
			dead = append(dead, deadLetter{idx: i, reason: "refused on load by this version's validation: " + err.Error()})
			return nil
		}
		add(rec, e)
		return nil
	})
	if err != nil {
		if errors.Is(err, spool.ErrCorrupt) {
			return err
		}
		return &readError{err}
	}
	conn, err := c.conn(ctx)
	if err != nil {
		return err
	}
	ictx := ctx
	set := chdb.InsertSettings(c.cfg.ClickHouse)
	if c.hasPartitionLimit {
		if set == nil {
			set = clickhouse.Settings{}
		}
		set["max_partitions_per_insert_block"] = c.cfg.MaxPartitionsPerInsert
	}
	if set != nil {
		ictx = clickhouse.Context(ctx, clickhouse.WithSettings(set))
	}
	names := make([]string, 0, len(tables))
	for t := range tables {
		names = append(names, t)
	}
	sort.Strings(names) // the same order on a retry (see insert_deduplicate above)
	for _, table := range names {
		b := tables[table]
		rows, err := c.dedup(ctx, conn, table, b.rows)
		if err != nil {
			return fmt.Errorf("dedup against %s: %w", table, err)
		}
		for _, chunk := range splitByPartition(rows, c.cfg.MaxPartitionsPerInsert) {
			if n := partitions(chunk); n > c.cfg.MaxPartitionsPerInsert {
				return fmt.Errorf("insert into %s: %d partitions in one block, over the limit of %d (a bug of the split)", table, n, c.cfg.MaxPartitionsPerInsert)
			}
			d, err := c.insertRows(ictx, conn, table, b.test, chunk)
			dead = append(dead, d...)
			if err != nil {
				return fmt.Errorf("insert into %s: %w", table, err)
			}
			c.metrics.inserted.WithLabelValues(b.test.Name).Add(float64(len(chunk) - len(d)))
			c.metrics.inserts.Inc()
		}
	}
	if len(dead) > 0 {
		if err := c.writeDeadLetters(seg, dead); err != nil {
			return &readError{fmt.Errorf("dead letters: %w", err)}
		}
	}
	c.metrics.insertSeconds.Observe(time.Since(start).Seconds())
	c.log.Debug("segment loaded", "segment", filepath.Base(seg.Path), "records", seg.Records, "took", time.Since(start))
	return nil
}

// splitByPartition cuts rows into groups that each hold at most max
// months, in a fixed order (months ascending, rows in segment order).
func splitByPartition(rows []loadRow, max int) [][]loadRow {
	if partitions(rows) <= max {
		return [][]loadRow{rows}
	}
	byMonth := map[int][]loadRow{}
	var months []int
	for _, r := range rows {
		if _, ok := byMonth[r.month]; !ok {
			months = append(months, r.month)
		}
		byMonth[r.month] = append(byMonth[r.month], r)
	}
	sort.Ints(months)
	var out [][]loadRow
	for i := 0; i < len(months); i += max {
		var chunk []loadRow
		for _, m := range months[i:min(i+max, len(months))] {
			chunk = append(chunk, byMonth[m]...)
		}
		out = append(out, chunk)
	}
	return out
}

func partitions(rows []loadRow) int {
	seen := map[int]bool{}
	for _, r := range rows {
		seen[r.month] = true
	}
	return len(seen)
}

// insertRows inserts rows, sending each row a block refuses for good to
// the returned dead letters. err is a transient error: retry the segment.
func (c *Collector) insertRows(ctx context.Context, conn driver.Conn, table string, test *schemas.Test, rows []loadRow) (dead []deadLetter, err error) {
	for len(rows) > 0 {
		bad, err := insertBlock(ctx, conn, table, test, rows)
		if bad >= 0 {
			// A value the client library cannot put in its column:
			// permanent for that row; the block is redone without it.
			c.permanent(table, rows[bad], err)
			dead = append(dead, deadLetter{idx: rows[bad].idx, reason: err.Error()})
			rows = append(rows[:bad:bad], rows[bad+1:]...)
			continue
		}
		if err == nil {
			return dead, nil
		}
		if !permanentInsertError(err) {
			return dead, err
		}
		if len(rows) == 1 {
			c.permanent(table, rows[0], err)
			return append(dead, deadLetter{idx: rows[0].idx, reason: err.Error()}), nil
		}
		// The server refused the block for its content: find the rows.
		h := len(rows) / 2
		for _, part := range [][]loadRow{rows[:h], rows[h:]} {
			d, err := c.insertRows(ctx, conn, table, test, part)
			dead = append(dead, d...)
			if err != nil {
				return dead, err
			}
		}
		return dead, nil
	}
	return dead, nil
}

func (c *Collector) permanent(table string, r loadRow, err error) {
	c.metrics.loadEvents.WithLabelValues("permanent_row_error").Inc()
	c.log.Error("row refused by ClickHouse for good; kept in deadletter.ndjson", "table", table, "measurement_uid", r.uid, "err", err)
}

// insertBlock inserts rows as one block. bad is the index of a row that
// the client library could not append (its error is err), or -1.
func insertBlock(ctx context.Context, conn driver.Conn, table string, test *schemas.Test, rows []loadRow) (bad int, err error) {
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+table+" ("+strings.Join(test.TableColumns(), ", ")+")")
	if err != nil {
		return -1, err
	}
	defer batch.Close()
	for i, row := range rows {
		if err := batch.Append(row.values...); err != nil {
			if ctx.Err() != nil {
				return -1, err
			}
			return i, err
		}
	}
	return -1, batch.Send()
}

// permanentInsertError reports whether ClickHouse refused a block for its
// content (a value out of range, a type it cannot convert, too many
// partitions in one block) rather than for its own state (down, busy, too
// many parts waiting for merges): the former does not heal by retrying.
func permanentInsertError(err error) bool {
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return false
	}
	switch ex.Code {
	case 6, 26, 27, 38, 41, 53, 69, 70, 72, 117, 131, 190, 321, 349, 469:
		// CANNOT_PARSE_TEXT, CANNOT_PARSE_QUOTED_STRING,
		// CANNOT_PARSE_INPUT_ASSERTION_FAILED, CANNOT_PARSE_DATE,
		// CANNOT_PARSE_DATETIME, TYPE_MISMATCH, ARGUMENT_OUT_OF_BOUND,
		// CANNOT_CONVERT_TYPE, CANNOT_PARSE_NUMBER, INCORRECT_DATA,
		// TOO_LARGE_STRING_SIZE, SIZES_OF_ARRAYS_DOESNT_MATCH,
		// VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE,
		// CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN, VIOLATED_CONSTRAINT
		return true
	case 252: // TOO_MANY_PARTS: also "too many partitions for single INSERT block"
		return strings.Contains(ex.Message, "partitions for single INSERT")
	}
	return false
}

// DeadLetter is one line of deadletter.ndjson in the spool directory: a
// record that was acknowledged but cannot be loaded, kept for an operator.
type DeadLetter struct {
	Reason   string          `json:"reason"`
	Segment  string          `json:"segment"`
	Received time.Time       `json:"received"`
	Record   json.RawMessage `json:"record"`
}

// writeDeadLetters appends the dead records, read again from the segment
// (copied out of the spool's reused buffer), to deadletter.ndjson, with
// their reasons, fsync'ed: nothing acknowledged is silently lost.
func (c *Collector) writeDeadLetters(seg *spool.Segment, dead []deadLetter) error {
	byIdx := map[int]int{}
	for k, d := range dead {
		byIdx[d.idx] = k
	}
	recv := make([]time.Time, len(dead))
	i := 0
	if err := c.spool.Read(seg, func(e spool.Entry) error {
		if k, ok := byIdx[i]; ok {
			dead[k].record = append([]byte(nil), e.Record...)
			recv[k] = e.Received
		}
		i++
		return nil
	}); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(c.cfg.SpoolDir, "deadletter.ndjson"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	defer f.Close()
	var buf []byte
	for k, d := range dead {
		line, err := json.Marshal(DeadLetter{Reason: d.reason, Segment: filepath.Base(seg.Path), Received: recv[k].UTC(), Record: d.record})
		if err != nil {
			return err
		}
		buf = append(append(buf, line...), '\n')
	}
	if _, err := f.Write(buf); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	c.metrics.deadLetters.Add(float64(len(dead)))
	c.log.Error("records that cannot be loaded kept in deadletter.ndjson", "segment", filepath.Base(seg.Path), "records", len(dead), "first_reason", dead[0].reason)
	return nil
}

// dedup drops the rows that would not win over a copy of the same
// measurement already stored or earlier in the segment: the earliest
// authoritative copy wins (schemas.CopyVersion), so a late copy never
// changes a published row. A row with a higher version (the server's copy
// after the agent's own) is inserted, and ReplacingMergeTree(authority)
// then keeps it under FINAL, as analytics and the API read.
func (c *Collector) dedup(ctx context.Context, conn driver.Conn, table string, rows []loadRow) ([]loadRow, error) {
	best := map[string]int{} // uid -> index in rows of its best copy
	keep := make([]bool, len(rows))
	for i, r := range rows {
		j, ok := best[r.uid]
		switch {
		case !ok:
			best[r.uid], keep[i] = i, true
		case r.version > rows[j].version:
			keep[j], keep[i], best[r.uid] = false, true, i
		}
	}
	stored := map[string]uint64{}
	// One query per up to 20,000 copies: its cost is reading the uid
	// column of the days involved, whatever the number of uids asked.
	const chunk = 20000
	uids := make([]int, 0, len(best))
	for _, i := range best {
		uids = append(uids, i)
	}
	sort.Ints(uids)
	for lo := 0; lo < len(uids); lo += chunk {
		part := uids[lo:min(lo+chunk, len(uids))]
		var sb strings.Builder
		first, last := rows[part[0]].start, rows[part[0]].start
		for k, i := range part {
			if k > 0 {
				sb.WriteString(", ")
			}
			// Validated UUIDs: nothing to escape.
			sb.WriteString("'" + rows[i].uid + "'")
			first, last = minTime(first, rows[i].start), maxTime(last, rows[i].start)
		}
		q := fmt.Sprintf("SELECT toString(measurement_uid), max(copy_version) FROM %s WHERE toDate(start_time) >= toDate(?) AND toDate(start_time) <= toDate(?) AND measurement_uid IN (%s) GROUP BY measurement_uid", table, sb.String())
		qctx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_query_size": 4 << 20}))
		res, err := conn.Query(qctx, q, first, last)
		if err != nil {
			return nil, err
		}
		for res.Next() {
			var uid string
			var v uint64
			if err := res.Scan(&uid, &v); err != nil {
				res.Close()
				return nil, err
			}
			stored[uid] = v
		}
		err = res.Err()
		res.Close()
		if err != nil {
			return nil, err
		}
	}
	out := rows[:0:0]
	for i, r := range rows {
		if v, ok := stored[r.uid]; (ok && v >= r.version) || !keep[i] {
			c.metrics.loadEvents.WithLabelValues("superseded_copy").Inc()
			c.log.Debug("copy not loaded: an earlier or more authoritative one is stored", "table", table, "measurement_uid", r.uid)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
