package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/internal/spool"
	"github.com/neubot/neubot/schemas"
)

// Forwarder delivers authoritative records to the collector in batches,
// through a write-ahead spool that survives restarts: Enqueue returns once
// the record is on disk, and a segment is removed only after the collector
// acknowledged it (202) or refused its lines for good (400).
type Forwarder struct {
	CollectorURL string // base URL; records go to CollectorURL + Path
	Client       *http.Client
	Logger       *slog.Logger
	// OnEvent counts what happened ("forwarded", "retry", "refused", and
	// "withheld" when Allow said no).
	OnEvent func(event string, records int)
	// Allow, when set, is asked before each delivery; while it says no,
	// records wait in the spool (an agent whose volunteer revoked consent).
	Allow func() bool
	// Delivered, when set, is called with the records the collector took.
	Delivered func(records [][]byte)
	// Key, when set, is the test server's enrolled identity: it signs
	// every record (in batches, spec/trust.md) and every request.
	Key *identity.Key

	sp  *spool.Spool
	dir string
}

// OpenForwarder opens (recovering) the spool in dir.
func OpenForwarder(dir, collectorURL string, log *slog.Logger) (*Forwarder, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sp, err := spool.Open(dir, spool.Options{MaxRecords: 500, MaxBytes: 8 << 20, MaxAge: 2 * time.Second, Logger: log})
	if err != nil {
		return nil, err
	}
	return &Forwarder{
		CollectorURL: collectorURL,
		Client:       &http.Client{Timeout: time.Minute},
		Logger:       log,
		OnEvent:      func(string, int) {},
		sp:           sp,
		dir:          dir,
	}, nil
}

// Enqueue spools rec durably for delivery.
func (f *Forwarder) Enqueue(ctx context.Context, rec *schemas.Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return f.sp.Append(ctx, []spool.Entry{{Received: time.Now(), Record: b}})
}

// Pending returns the number of records not yet delivered.
func (f *Forwarder) Pending() int {
	_, n, _ := f.sp.Stats()
	return n
}

// Run delivers until ctx ends.
func (f *Forwarder) Run(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for {
		seg, err := f.sp.Next(ctx)
		if err != nil {
			return
		}
		if f.Allow != nil && !f.Allow() {
			f.OnEvent("withheld", seg.Records)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		err = f.deliver(ctx, seg)
		if err == nil {
			backoff = 200 * time.Millisecond
			if err := f.sp.Remove(seg); err != nil {
				f.Logger.Error("forwarder: cannot remove a delivered segment", "err", err)
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		f.OnEvent("retry", seg.Records)
		f.Logger.Warn("forwarder: delivery failed; will retry", "err", err, "records", seg.Records, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff + rand.N(backoff/2+1)):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// Flush seals what is waiting so that Run can deliver it.
func (f *Forwarder) Flush(ctx context.Context) { f.sp.Flush(ctx) }

// Drain seals what is waiting and waits until Run delivered it (or kept
// what the collector refused), or ctx ends; it reports whether nothing is
// left. Run must be running.
func (f *Forwarder) Drain(ctx context.Context) bool {
	f.sp.Flush(ctx)
	return f.sp.WaitLoaded(ctx)
}

// Close closes the spool; undelivered records stay for the next start.
func (f *Forwarder) Close() error { return f.sp.Close() }

func (f *Forwarder) deliver(ctx context.Context, seg *spool.Segment) error {
	var records [][]byte
	if err := f.sp.Read(seg, func(e spool.Entry) error {
		records = append(records, bytes.Clone(e.Record))
		return nil
	}); err != nil {
		return err
	}
	if f.Key != nil {
		signed, err := f.Key.SignRecords(records)
		if err != nil {
			return err
		}
		records = signed
	}
	w, err := NewGzipWriter(gzip.DefaultCompression)
	if err != nil {
		return err
	}
	for _, r := range records {
		w.Write(r)
		w.Write([]byte{'\n'})
	}
	body, err := w.Body()
	if err != nil {
		return err
	}
	req, err := NewRequest(ctx, f.CollectorURL, body)
	if err != nil {
		return err
	}
	if f.Key != nil {
		// The records carry their own signatures; the request's, over
		// an empty body, exempts it from the per-address limits.
		f.Key.SignRequest(req, nil, time.Now())
	}
	a, err := httpx.Fetch(f.Client, req, 1<<20)
	if a == nil {
		return err
	}
	answer := a.Body
	switch a.Status {
	case http.StatusAccepted:
		f.OnEvent("forwarded", seg.Records)
		if f.Delivered != nil {
			f.Delivered(records)
		}
		return nil
	case http.StatusBadRequest:
		// Some lines were refused for good: keep them for an operator,
		// the others were accepted.
		f.OnEvent("refused", seg.Records)
		f.Logger.Error("forwarder: the collector refused records; kept in refused.ndjson", "answer", string(answer))
		return f.keepRefused(seg, answer)
	}
	return fmt.Errorf("collector answered %s: %s", a.StatusLine(), bytes.TrimSpace(answer))
}

// keepRefused appends the segment's records and the collector's answer to
// refused.ndjson, so that nothing is dropped silently.
func (f *Forwarder) keepRefused(seg *spool.Segment, answer []byte) error {
	out, err := os.OpenFile(filepath.Join(f.dir, "refused.ndjson"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	defer out.Close()
	w := bufio.NewWriter(out)
	fmt.Fprintf(w, "# collector answer: %s\n", bytes.TrimSpace(answer))
	if err := f.sp.Read(seg, func(e spool.Entry) error {
		w.Write(e.Record)
		return w.WriteByte('\n')
	}); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return errors.Join(err, errors.New("refused records not synced"))
	}
	return nil
}
