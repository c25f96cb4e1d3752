package simulate

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/proto/ingest"
	"github.com/neubot/neubot/schemas"
)

// Submission limits.
const (
	DefaultBatch = 1000
	// MaxBatch is the collector's limit of lines per body.
	MaxBatch = ingest.MaxLines
	// senders is how many bodies are posted at once: the collector fsyncs
	// each body before answering, so a few in flight keep it busy; it
	// takes 2 at once from one address (spec/ingest.md).
	senders = 2
	// attempts is how many times a body is posted before giving up; the
	// waits between them double from 250 ms to at most 15 s (about a
	// minute in all) or follow the collector's Retry-After.
	attempts    = 9
	firstWait   = 250 * time.Millisecond
	maxWait     = 15 * time.Second
	httpTimeout = 2 * time.Minute
)

// RefusedError reports records that the collector refused (400): the other
// records of their body were accepted. Record is the 1-based position, in
// the order of Records, of the first refused one.
type RefusedError struct {
	Refused        int // in the body
	Record         int
	MeasurementUID string
	Field, Reason  string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("simulate: the collector refused %d records; the first is record %d (measurement_uid %s): %s: %s",
		e.Refused, e.Record, e.MeasurementUID, e.Field, e.Reason)
}

// body is one gzip'ed NDJSON body of records first+1 .. first+len(uids).
type body struct {
	data  []byte
	first int
	uids  []string
}

// Submit posts every record of the fleet to the collector at collectorURL
// (its base URL) as gzip'ed NDJSON bodies of batch records (DefaultBatch
// when batch <= 0, at most MaxBatch), a few bodies at a time. A body that
// meets a connection error or a 503 is posted again with backoff (records
// are idempotent by measurement_uid). progress, if not nil, is called in
// Submit's goroutine after each acknowledged body with the records
// acknowledged so far and the total. Submit returns the number of records
// the collector acknowledged, and the first error: a [*RefusedError] for a
// 400, which names the first refused record.
func (f *Fleet) Submit(ctx context.Context, collectorURL string, batch int, progress func(done, total int)) (int, error) {
	if batch <= 0 {
		batch = DefaultBatch
	}
	batch = min(batch, MaxBatch)
	total := f.Count()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	client := &http.Client{Timeout: httpTimeout}

	batches := make(chan chunk, senders)
	type result struct {
		acked int
		err   error
	}
	results := make(chan result, senders)
	var errMake error
	go func() { // generate the records, batch by batch
		defer close(batches)
		errMake = f.batches(ctx, batch, batches)
	}()
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for c := range batches {
				if ctx.Err() != nil {
					continue // drain: Submit is ending
				}
				b, err := encode(c)
				if err != nil {
					results <- result{0, err}
					cancel()
					continue
				}
				n, err := post(ctx, client, collectorURL, b, f.cfg.Logger)
				results <- result{n, err}
				if err != nil {
					cancel()
				}
			}
		})
	}
	go func() {
		wg.Wait()
		close(results)
	}()
	acked := 0
	var firstErr error
	for r := range results {
		acked += r.acked
		if r.err != nil && firstErr == nil {
			firstErr = r.err
		}
		if r.err == nil && progress != nil {
			progress(acked, total)
		}
	}
	if firstErr == nil && errMake != nil { // read after close(results): the generator has ended
		firstErr = errMake
	}
	if firstErr == nil && acked != total {
		firstErr = fmt.Errorf("simulate: %d of %d records acknowledged", acked, total)
	}
	return acked, firstErr
}

// chunk is records first+1 .. first+len(recs), in the order of Records.
type chunk struct {
	first int
	recs  []*schemas.Record
}

// batches sends the records in chunks of batch records.
func (f *Fleet) batches(ctx context.Context, batch int, out chan<- chunk) error {
	cur := chunk{recs: make([]*schemas.Record, 0, batch)}
	send := func() error {
		select {
		case out <- cur:
		case <-ctx.Done():
			return ctx.Err()
		}
		cur = chunk{first: cur.first + len(cur.recs), recs: make([]*schemas.Record, 0, batch)}
		return nil
	}
	err := f.Records(func(r *schemas.Record) error {
		cur.recs = append(cur.recs, r)
		if len(cur.recs) == batch {
			return send()
		}
		return nil
	})
	if err == nil && len(cur.recs) > 0 {
		err = send()
	}
	return err
}

// encode makes the gzip'ed NDJSON body of c.
func encode(c chunk) (body, error) {
	zw, err := ingest.NewGzipWriter(gzip.BestSpeed)
	if err != nil {
		return body{}, err
	}
	enc := json.NewEncoder(zw) // Encode ends each record with \n: one per line
	enc.SetEscapeHTML(false)
	b := body{first: c.first, uids: make([]string, len(c.recs))}
	for i, r := range c.recs {
		if err := enc.Encode(r); err != nil {
			return body{}, fmt.Errorf("simulate: encoding record %d: %w", c.first+i+1, err)
		}
		b.uids[i] = r.MeasurementUID
	}
	b.data, err = zw.Body()
	return b, err
}

// post posts one body to the collector at collectorURL, again after
// connection errors, 429s and 503s, and returns the number of its records
// acknowledged.
func post(ctx context.Context, client *http.Client, collectorURL string, b body, log *slog.Logger) (int, error) {
	wait := firstWait
	var last error
	for attempt := 1; attempt <= attempts; attempt++ {
		if attempt > 1 {
			log.Warn("simulate: posting again", "err", last, "attempt", attempt, "of", attempts, "in", wait)
			select {
			case <-ctx.Done():
				return 0, errors.Join(ctx.Err(), last)
			case <-time.After(wait):
			}
			wait = min(2*wait, maxWait)
		}
		req, err := ingest.NewRequest(ctx, collectorURL, b.data)
		if err != nil {
			return 0, fmt.Errorf("simulate: %w", err)
		}
		resp, err := httpx.Fetch(client, req, 1<<20)
		if resp == nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			last = fmt.Errorf("simulate: posting records %d..%d: %w", b.first+1, b.first+len(b.uids), err)
			continue
		}
		var ans ingest.Response
		_ = json.Unmarshal(resp.Body, &ans)
		switch resp.Status {
		case http.StatusAccepted:
			if ans.Accepted != len(b.uids) {
				return ans.Accepted, fmt.Errorf("simulate: the collector accepted %d of %d records %d..%d",
					ans.Accepted, len(b.uids), b.first+1, b.first+len(b.uids))
			}
			return ans.Accepted, nil
		case http.StatusBadRequest:
			e := &RefusedError{Refused: ans.RejectedCount, Reason: ans.Error}
			if len(ans.Rejected) > 0 {
				first := ans.Rejected[0]
				e.Field, e.Reason = first.Field, first.Reason
				if first.Line >= 1 && first.Line <= len(b.uids) {
					e.Record, e.MeasurementUID = b.first+first.Line, b.uids[first.Line-1]
				}
			}
			return ans.Accepted, e
		case http.StatusServiceUnavailable, http.StatusTooManyRequests:
			last = fmt.Errorf("simulate: the collector answered %s for records %d..%d: %s",
				resp.StatusLine(), b.first+1, b.first+len(b.uids), ans.Error)
			if s := resp.RetryAfter(); s > 0 {
				wait = min(time.Duration(s)*time.Second, maxWait)
			}
			continue
		}
		return 0, fmt.Errorf("simulate: the collector answered %s for records %d..%d: %s",
			resp.StatusLine(), b.first+1, b.first+len(b.uids), bytes.TrimSpace(resp.Body))
	}
	return 0, fmt.Errorf("%w (gave up after %d attempts)", last, attempts)
}
