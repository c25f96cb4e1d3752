package collector

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/spool"
	"github.com/neubot/neubot/schemas"
)

// The loader drains the spool into ClickHouse: one sealed segment at a time,
// one batch insert per test table, and the segment is deleted only after
// every insert of it succeeded. While ClickHouse is down it retries the same
// segment with exponential backoff. A segment inserted twice (a crash between
// insert and delete) is harmless: rows share their measurement_uid and
// ReplacingMergeTree collapses them.
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
)

// runLoader loads segments until ctx ends.
func (c *Collector) runLoader(ctx context.Context) {
	backoff := minBackoff
	for {
		seg, err := c.spool.Next(ctx)
		if err != nil {
			return
		}
		if err := c.loadSegment(ctx, seg); err != nil {
			if ctx.Err() != nil {
				return
			}
			var bad *badSegmentError
			if errors.As(err, &bad) {
				c.log.Error("segment cannot be loaded; moved to quarantine", "segment", seg.Path, "err", err)
				c.metrics.quarantined.Inc()
				if qerr := c.spool.Quarantine(seg); qerr != nil {
					c.log.Error("quarantine failed", "err", qerr)
				}
				continue
			}
			c.metrics.insertErrors.Inc()
			c.log.Warn("insert failed; will retry", "segment", filepath.Base(seg.Path), "records", seg.Records, "err", err, "retry_in", backoff)
			c.dropConn()
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff + rand.N(backoff/2+1)):
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff = minBackoff
		if err := c.spool.Remove(seg); err != nil {
			c.log.Error("cannot delete loaded segment", "segment", seg.Path, "err", err)
		}
	}
}

// badSegmentError marks a segment whose content is damaged: retrying would
// not help.
type badSegmentError struct{ err error }

func (e *badSegmentError) Error() string { return e.err.Error() }
func (e *badSegmentError) Unwrap() error { return e.err }

// conn returns the loader's ClickHouse connection, connecting (and applying
// the migrations) when there is none.
func (c *Collector) conn(ctx context.Context) (driver.Conn, error) {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.ch != nil {
		return c.ch, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := chdb.Setup(cctx, c.cfg.ClickHouse, c.log)
	if err != nil {
		return nil, err
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

// batchRows groups the rows of one segment by table.
type batchRows struct {
	test *schemas.Test
	rows [][]any
}

func (c *Collector) loadSegment(ctx context.Context, seg *spool.Segment) error {
	start := time.Now()
	tables := map[string]*batchRows{}
	var deadLetters [][]byte
	add := func(rec *schemas.Record, e spool.Entry) {
		test, _ := schemas.Lookup(rec.TestName)
		b := tables[test.Table]
		if b == nil {
			b = &batchRows{test: test}
			tables[test.Table] = b
		}
		b.rows = append(b.rows, rec.Row(c.annotation(rec, e), make([]any, 0, len(test.TableColumns()))))
	}
	if decoded := seg.Decoded(); decoded != nil {
		// Written by this process: the records were decoded on ingest;
		// only the receive time and peer are read back from disk.
		i := 0
		err := c.spool.Read(seg, func(e spool.Entry) error {
			if i >= len(decoded) {
				return errors.New("segment holds more records than were written")
			}
			add(decoded[i], e)
			i++
			return nil
		})
		if err != nil {
			return &badSegmentError{err}
		}
	} else {
		err := c.spool.Read(seg, func(e spool.Entry) error {
			// Validate as of the receive time: a replay must not reject
			// a record that was acceptable when it was acknowledged.
			rec, err := schemas.DecodeRecord(e.Record, e.Received)
			if err != nil {
				// Accepted once, refused now: only a stricter validator
				// after an upgrade does that. Keep it for an operator.
				deadLetters = append(deadLetters, e.Record)
				return nil
			}
			add(rec, e)
			return nil
		})
		if err != nil {
			return &badSegmentError{err}
		}
	}
	conn, err := c.conn(ctx)
	if err != nil {
		return err
	}
	ictx := ctx
	if set := chdb.InsertSettings(c.cfg.ClickHouse); set != nil {
		ictx = clickhouse.Context(ctx, clickhouse.WithSettings(set))
	}
	for table, b := range tables {
		if err := insert(ictx, conn, table, b); err != nil {
			return fmt.Errorf("insert into %s: %w", table, err)
		}
		c.metrics.inserted.WithLabelValues(b.test.Name).Add(float64(len(b.rows)))
	}
	if len(deadLetters) > 0 {
		if err := c.writeDeadLetters(seg, deadLetters); err != nil {
			return err
		}
	}
	c.metrics.insertSeconds.Observe(time.Since(start).Seconds())
	c.log.Debug("segment loaded", "segment", filepath.Base(seg.Path), "records", seg.Records, "took", time.Since(start))
	return nil
}

func insert(ctx context.Context, conn driver.Conn, table string, b *batchRows) error {
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+table+" ("+strings.Join(b.test.TableColumns(), ", ")+")")
	if err != nil {
		return err
	}
	defer batch.Close()
	for _, row := range b.rows {
		if err := batch.Append(row...); err != nil {
			return err
		}
	}
	return batch.Send()
}

// writeDeadLetters appends refused records to deadletter.ndjson in the
// spool directory, fsync'ed, so that nothing acknowledged is silently lost.
func (c *Collector) writeDeadLetters(seg *spool.Segment, recs [][]byte) error {
	f, err := os.OpenFile(filepath.Join(c.cfg.SpoolDir, "deadletter.ndjson"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, r := range recs {
		if _, err := f.Write(append(r, '\n')); err != nil {
			return err
		}
	}
	c.metrics.deadLetters.Add(float64(len(recs)))
	c.log.Error("records refused on load kept in deadletter.ndjson", "segment", filepath.Base(seg.Path), "records", len(recs))
	return f.Sync()
}
