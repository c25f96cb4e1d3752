// Package spool is a write-ahead log of records on disk: appends are
// fsync'ed before they return (with group commit across concurrent
// callers), segments are sealed by size, count or age and handed in order to
// a loader, which removes each only after it was delivered. The collector
// spools what it acknowledged until ClickHouse has it; the test server spools
// what it must forward to the collector.
package spool

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/neubot/neubot/internal/atomicfile"
	"github.com/neubot/neubot/internal/clock"
	"github.com/neubot/neubot/schemas"
)

// The spool is a write-ahead log. Accepted records are
// appended to the active segment file and fsync'ed before the client gets
// its 202; the loader takes sealed segments in order, inserts them into
// ClickHouse and deletes each only after its insert succeeded. A crash loses
// nothing acknowledged: on open, every segment found on disk is sealed and
// replayed, and its torn tail (a frame that was never acknowledged) is cut.
//
// Segment file: a sequence of frames
//
//	uint32 little-endian  payload length
//	uint32 little-endian  CRC-32C of the payload
//	payload               entry: int64 LE receive time (Unix ns), uint8 peer
//	                      length, peer address, the record's JSON line
//
// Appends from concurrent requests are grouped: one writer goroutine writes
// whatever is waiting and syncs once for all of them (group commit).

const (
	segmentExt      = ".wal"
	frameHeaderSize = 8
	maxFrameSize    = 2 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrSpoolClosed is returned by Append after Close.
var ErrSpoolClosed = errors.New("spool closed")

// Entry is one spooled record with what the collector knew when it arrived.
type Entry struct {
	Received time.Time
	Peer     string // address of the HTTP client that submitted it
	Record   []byte // the JSON line as received (validated)
	// Decoded is the record as the ingest handler decoded it; kept in
	// memory with the segment so that the loader need not decode it again.
	// Never written to disk: after a restart the loader decodes Record.
	Decoded *schemas.Record
}

func (e *Entry) appendFrame(dst []byte) []byte {
	peer := e.Peer
	if len(peer) > 255 {
		peer = peer[:255]
	}
	n := 8 + 1 + len(peer) + len(e.Record)
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	dst = binary.LittleEndian.AppendUint32(dst, 0) // CRC, filled below
	dst = binary.LittleEndian.AppendUint64(dst, uint64(e.Received.UnixNano()))
	dst = append(dst, byte(len(peer)))
	dst = append(dst, peer...)
	dst = append(dst, e.Record...)
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+frameHeaderSize:], crcTable))
	return dst
}

func decodeEntry(p []byte) (Entry, error) {
	if len(p) < 9 || len(p) < 9+int(p[8]) {
		return Entry{}, errors.New("short entry")
	}
	pl := int(p[8])
	return Entry{
		Received: time.Unix(0, int64(binary.LittleEndian.Uint64(p))),
		Peer:     string(p[9 : 9+pl]),
		Record:   p[9+pl:],
	}, nil
}

// Options bound the segments: a segment is sealed, and so becomes
// available to the loader, when it reaches MaxBytes or MaxRecords or when its
// first record is older than MaxAge.
type Options struct {
	MaxBytes   int64
	MaxRecords int
	MaxAge     time.Duration
	Logger     *slog.Logger
	// NoSync skips fsync; only for measuring what fsync costs. Never in
	// production: acknowledged records could be lost in a power cut.
	NoSync bool
	// Faults, for tests: when set, these are called instead of os.Open (to
	// read a sealed segment), atomicfile.SyncDir (after a segment is
	// created) and os.Rename (to quarantine), so that a test can make them
	// fail as a full file table (EMFILE) or a sick disk would.
	OpenRead func(name string) (*os.File, error)
	SyncDir  func(dir string) error
	Rename   func(oldpath, newpath string) error
}

func (o *Options) defaults() {
	if o.MaxBytes == 0 {
		o.MaxBytes = 64 << 20
	}
	if o.MaxRecords == 0 {
		o.MaxRecords = 100_000
	}
	if o.MaxAge == 0 {
		o.MaxAge = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.OpenRead == nil {
		o.OpenRead = os.Open
	}
	if o.SyncDir == nil {
		o.SyncDir = atomicfile.SyncDir
	}
	if o.Rename == nil {
		o.Rename = os.Rename
	}
}

// ErrCorrupt marks a segment whose acknowledged bytes fail their checksum
// or end in the middle of a frame: damage on disk, which no retry mends.
// Any other error of Read (a full file table, an I/O error) is transient.
var ErrCorrupt = errors.New("spool: segment is corrupt")

// Segment is a sealed segment, ready to load.
type Segment struct {
	Seq     uint64
	Path    string
	Bytes   int64
	Records int
	First   time.Time // receive time of its first record

	// decoded holds the records decoded on ingest, in order, while the
	// segment was written in this process and the memory budget allowed.
	decoded []*schemas.Record
	noCache bool
}

// Decoded returns the segment's records as decoded on ingest, or nil when
// they must be read back from disk (after a restart, or over budget).
func (seg *Segment) Decoded() []*schemas.Record {
	if seg.noCache || len(seg.decoded) != seg.Records {
		return nil
	}
	return seg.decoded
}

// maxCachedRecords bounds the decoded records kept in memory across all
// segments, e.g. while ClickHouse is down and segments pile up.
const maxCachedRecords = 50_000

// Spool is the write-ahead spool of one collector. Its directory must not be
// shared with another running collector.
type Spool struct {
	dir  string
	opts Options
	reqs chan *appendReq
	quit chan struct{}
	wg   sync.WaitGroup

	appendMu     sync.RWMutex
	appendClosed bool

	mu       sync.Mutex
	cond     *sync.Cond
	sealed   []*Segment // in order; the loader takes sealed[0]
	active   *Segment   // owned by the writer goroutine; read under mu for stats
	closed   bool
	file     *os.File
	nextSeq  uint64
	sealWant bool
	cached   int // decoded records held by sealed segments
}

type appendReq struct {
	entries []Entry
	done    chan error
}

// OpenSpool opens (creating if needed) the spool in dir, recovers the
// segments a previous run left and starts the writer.
func Open(dir string, opts Options) (*Spool, error) {
	opts.defaults()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{dir: dir, opts: opts, reqs: make(chan *appendReq, 256), quit: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	if err := s.recover(); err != nil {
		return nil, err
	}
	if err := s.openActive(); err != nil {
		return nil, err
	}
	s.wg.Add(2)
	go s.writer()
	go s.ager()
	return s, nil
}

// recover seals every segment left on disk, cutting a torn tail.
func (s *Spool) recover() error {
	names, err := filepath.Glob(filepath.Join(s.dir, "*"+segmentExt))
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, path := range names {
		seq, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(path), segmentExt), 16, 64)
		if err != nil {
			s.opts.Logger.Warn("spool: ignoring unexpected file", "path", path)
			continue
		}
		seg, err := scanSegment(path, seq, true, s.opts.Logger)
		if err != nil {
			return fmt.Errorf("spool: recover %s: %w", path, err)
		}
		if seq >= s.nextSeq {
			s.nextSeq = seq + 1
		}
		if seg.Records == 0 {
			_ = os.Remove(path)
			continue
		}
		s.opts.Logger.Info("spool: recovered segment", "path", path, "records", seg.Records, "bytes", seg.Bytes)
		s.sealed = append(s.sealed, seg)
	}
	return nil
}

// scanSegment counts the valid frames of a segment. With repair, a torn or
// corrupt tail is cut off: frames are fsync'ed before they are acknowledged,
// so a torn last write was never acknowledged. What is cut is first copied
// to quarantine/, since damage in the middle of a file (bit rot) would also
// end the scan there: nothing is deleted that could have been acknowledged.
func scanSegment(path string, seq uint64, repair bool, log *slog.Logger) (*Segment, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	seg := &Segment{Seq: seq, Path: path}
	r := bufio.NewReaderSize(f, 1<<20)
	var good int64
	err = readFrames(r, func(p []byte) error {
		if seg.Records == 0 {
			if e, err := decodeEntry(p); err == nil {
				seg.First = e.Received
			}
		}
		seg.Records++
		good += int64(frameHeaderSize + len(p))
		return nil
	})
	if err != nil && !errors.Is(err, errTorn) {
		return nil, err
	}
	if errors.Is(err, errTorn) && repair {
		if err := saveTail(f, path, good); err != nil {
			return nil, err
		}
		log.Warn("spool: cut a torn or damaged tail; a copy is in quarantine/", "path", path, "kept_bytes", good)
		if err := f.Truncate(good); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
	}
	seg.Bytes = good
	return seg, nil
}

var errTorn = errors.New("torn or corrupt frame")

// saveTail copies the bytes of f from offset off to the spool's quarantine
// folder, fsync'ed, before they are cut.
func saveTail(f *os.File, path string, off int64) error {
	qdir := filepath.Join(filepath.Dir(path), "quarantine")
	if err := os.MkdirAll(qdir, 0o750); err != nil {
		return err
	}
	out, err := os.Create(filepath.Join(qdir, fmt.Sprintf("%s.tail-at-%d", filepath.Base(path), off)))
	if err != nil {
		return err
	}
	defer out.Close()
	if _, err := io.Copy(out, io.NewSectionReader(f, off, 1<<62)); err != nil {
		return err
	}
	return out.Sync()
}

// readFrames calls fn with each valid frame's payload until EOF. It returns
// errTorn at the first frame that is incomplete or fails its checksum.
func readFrames(r *bufio.Reader, fn func([]byte) error) error {
	var hdr [frameHeaderSize]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			switch err {
			case io.EOF:
				return nil
			case io.ErrUnexpectedEOF:
				return errTorn
			}
			return err // an I/O error, not damage
		}
		n := binary.LittleEndian.Uint32(hdr[:])
		if n > maxFrameSize {
			return errTorn
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return errTorn
			}
			return err
		}
		if crc32.Checksum(buf, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
			return errTorn
		}
		if err := fn(buf); err != nil {
			return err
		}
	}
}

func (s *Spool) openActive() error {
	path := filepath.Join(s.dir, fmt.Sprintf("%016x%s", s.nextSeq, segmentExt))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if !s.opts.NoSync {
		if err := s.opts.SyncDir(s.dir); err != nil {
			// The file exists now: the next attempt takes the next
			// number, or every later one would fail on O_EXCL and ingest
			// would stall until a restart. The empty file is removed (a
			// leftover one is skipped on recovery anyway).
			f.Close()
			_ = os.Remove(path)
			s.mu.Lock()
			s.nextSeq++
			s.mu.Unlock()
			s.opts.Logger.Error("spool: cannot sync the directory after creating a segment; will retry with the next one", "path", path, "err", err)
			return fmt.Errorf("spool: sync directory: %w", err)
		}
	}
	s.mu.Lock()
	s.file = f
	s.active = &Segment{Seq: s.nextSeq, Path: path}
	s.nextSeq++
	s.mu.Unlock()
	return nil
}

// Append writes entries durably: when it returns nil they are on disk.
func (s *Spool) Append(ctx context.Context, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	req := &appendReq{entries: entries, done: make(chan error, 1)}
	// The read lock keeps Close from stopping the writer between our check
	// and our send, so every queued request is served.
	s.appendMu.RLock()
	if s.appendClosed {
		s.appendMu.RUnlock()
		return ErrSpoolClosed
	}
	select {
	case s.reqs <- req:
		s.appendMu.RUnlock()
	case <-ctx.Done():
		s.appendMu.RUnlock()
		return ctx.Err()
	}
	// Once queued, the write happens; wait for it even if ctx ends, so
	// that the caller never acknowledges, or retries, a half-known state.
	return <-req.done
}

// writer is the only goroutine that writes to the active segment.
func (s *Spool) writer() {
	defer s.wg.Done()
	var buf []byte
	for {
		var batch []*appendReq
		select {
		case req := <-s.reqs:
			batch = append(batch, req)
		case <-s.quit:
			// Serve what was queued before Close, then stop.
			for {
				select {
				case req := <-s.reqs:
					batch = append(batch, req)
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				s.write(batch, buf)
			}
			return
		case <-time.After(s.opts.MaxAge / 4):
			s.mu.Lock()
			want := s.sealWant
			s.mu.Unlock()
			if want {
				s.seal()
			}
			continue
		}
	drain:
		for len(batch) < 1024 {
			select {
			case req := <-s.reqs:
				batch = append(batch, req)
			default:
				break drain
			}
		}
		buf = s.write(batch, buf)
		s.mu.Lock()
		a := s.active
		full := a.Bytes >= s.opts.MaxBytes || a.Records >= s.opts.MaxRecords
		want := s.sealWant
		s.mu.Unlock()
		if full || want {
			s.seal()
		}
	}
}

// write appends the batch, syncs once and answers every request.
func (s *Spool) write(batch []*appendReq, buf []byte) []byte {
	buf = buf[:0]
	records := 0
	for _, req := range batch {
		for i := range req.entries {
			buf = req.entries[i].appendFrame(buf)
		}
		records += len(req.entries)
	}
	_, err := s.file.Write(buf)
	if err == nil && !s.opts.NoSync {
		err = s.file.Sync()
	}
	if err != nil {
		// Nothing of this batch is acknowledged. Cut what it may have
		// written, so that the segment ends on a whole frame and the
		// records already acknowledged in it stay readable.
		err = fmt.Errorf("spool: write: %w", err)
		s.opts.Logger.Error("spool write failed", "err", err)
		s.mu.Lock()
		good := s.active.Bytes
		s.mu.Unlock()
		if terr := s.file.Truncate(good); terr != nil {
			s.opts.Logger.Error("spool: cannot cut a failed write; starting a new segment", "err", terr)
			s.mu.Lock()
			s.sealWant = true
			s.mu.Unlock()
		}
	} else {
		s.mu.Lock()
		a := s.active
		if a.Records == 0 {
			a.First = batch[0].entries[0].Received
		}
		if !a.noCache {
			for _, req := range batch {
				for i := range req.entries {
					if d := req.entries[i].Decoded; d != nil {
						a.decoded = append(a.decoded, d)
					} else {
						a.noCache, a.decoded = true, nil
					}
				}
			}
		}
		a.Records += records
		s.active.Bytes += int64(len(buf))
		s.mu.Unlock()
	}
	for _, req := range batch {
		req.done <- err
	}
	if cap(buf) > 8<<20 {
		buf = nil // do not keep a huge buffer around
	}
	return buf
}

// seal closes the active segment, hands it to the loader and opens a new one.
func (s *Spool) seal() {
	s.mu.Lock()
	a := s.active
	if a.Records == 0 {
		s.sealWant = false
		s.cond.Broadcast()
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	if err := s.file.Close(); err != nil {
		s.opts.Logger.Error("spool: close segment", "err", err)
	}
	if err := s.openActive(); err != nil {
		// Keep going on the old file is impossible (closed); retry later.
		s.opts.Logger.Error("spool: cannot open a new segment", "err", err)
		s.mu.Lock()
		s.sealWant = true
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	// Cleared only now, with the segment in sealed: Flush waits for this.
	s.sealWant = false
	if s.cached+len(a.decoded) > maxCachedRecords {
		a.noCache, a.decoded = true, nil
	}
	s.cached += len(a.decoded)
	s.sealed = append(s.sealed, a)
	s.cond.Broadcast()
	s.mu.Unlock()
}

// ager asks for a seal when the active segment's first record is too old.
func (s *Spool) ager() {
	defer s.wg.Done()
	clock.Every(s.quit, s.opts.MaxAge/4, func() bool {
		s.mu.Lock()
		if s.active != nil && s.active.Records > 0 && time.Since(s.active.First) >= s.opts.MaxAge {
			s.sealWant = true
		}
		s.mu.Unlock()
		return true
	})
}

// Flush asks the writer to seal the active segment now (e.g. on shutdown)
// and waits until it did or ctx ends.
func (s *Spool) Flush(ctx context.Context) {
	s.mu.Lock()
	s.sealWant = true
	s.mu.Unlock()
	s.waitFor(ctx, func() bool { return !s.sealWant || s.active.Records == 0 })
}

// WaitLoaded waits until no sealed segment is left to load (every one was
// removed or quarantined), the spool closed or ctx ended; it reports
// whether none is left. After Flush, nothing acknowledged is then pending.
func (s *Spool) WaitLoaded(ctx context.Context) bool {
	return s.waitFor(ctx, func() bool { return len(s.sealed) == 0 })
}

// waitFor waits, on the spool's condition, until done (called under mu)
// holds, the spool closed or ctx ended, and returns done().
func (s *Spool) waitFor(ctx context.Context, done func() bool) bool {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for !done() && !s.closed && ctx.Err() == nil {
		s.cond.Wait()
	}
	return done()
}

// Next waits for the oldest sealed segment and returns it without removing
// it; call Remove after it was loaded.
func (s *Spool) Next(ctx context.Context) (*Segment, error) {
	if !s.waitFor(ctx, func() bool { return len(s.sealed) > 0 }) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, ErrSpoolClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sealed[0], nil
}

// Pending reports whether a sealed segment waits to be loaded.
func (s *Spool) Pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sealed) > 0
}

// Read calls fn with every entry of a sealed segment, in order. It reads
// only the segment's acknowledged bytes: a tail that a failed write left
// behind (and a failed truncate could not cut) is not part of it. The
// Entry's Record points into a buffer that the next entry reuses: fn must
// copy what it keeps. An error wrapping ErrCorrupt means damage on disk;
// any other error is worth retrying.
func (s *Spool) Read(seg *Segment, fn func(Entry) error) error {
	f, err := s.opts.OpenRead(seg.Path)
	if err != nil {
		return fmt.Errorf("spool: open %s: %w", seg.Path, err)
	}
	defer f.Close()
	var r io.Reader = f
	if seg.Bytes > 0 {
		r = io.LimitReader(f, seg.Bytes)
	}
	n := 0
	err = readFrames(bufio.NewReaderSize(r, 1<<20), func(p []byte) error {
		e, err := decodeEntry(p)
		if err != nil {
			return fmt.Errorf("%w: %v", errTorn, err)
		}
		n++
		return fn(e)
	})
	if errors.Is(err, errTorn) {
		return fmt.Errorf("%w: %s after %d records: %v", ErrCorrupt, seg.Path, n, err)
	}
	if err == nil && seg.Records > 0 && n != seg.Records {
		return fmt.Errorf("%w: %s holds %d records, %d were acknowledged", ErrCorrupt, seg.Path, n, seg.Records)
	}
	return err
}

// Remove deletes a loaded segment; it must be the one Next returned.
func (s *Spool) Remove(seg *Segment) error {
	s.mu.Lock()
	if len(s.sealed) == 0 || s.sealed[0] != seg {
		s.mu.Unlock()
		return fmt.Errorf("spool: remove %s: not the oldest sealed segment", seg.Path)
	}
	s.sealed = s.sealed[1:]
	s.cached -= len(seg.decoded)
	seg.decoded = nil
	s.cond.Broadcast()
	s.mu.Unlock()
	if err := os.Remove(seg.Path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// Quarantine moves a segment that cannot be loaded out of the way, keeping
// it on disk for an operator: nothing is deleted that was not loaded.
func (s *Spool) Quarantine(seg *Segment) error {
	if err := os.MkdirAll(filepath.Join(s.dir, "quarantine"), 0o750); err != nil {
		return err
	}
	if err := s.opts.Rename(seg.Path, filepath.Join(s.dir, "quarantine", filepath.Base(seg.Path))); err != nil {
		return err
	}
	s.mu.Lock()
	if len(s.sealed) > 0 && s.sealed[0] == seg {
		s.sealed = s.sealed[1:]
		s.cached -= len(seg.decoded)
		seg.decoded = nil
		s.cond.Broadcast()
	}
	s.mu.Unlock()
	return nil
}

// Stats returns the depth of the spool (sealed and active segments) and the
// receive time of its oldest record (zero when empty).
func (s *Spool) Stats() (bytes int64, records int, oldest time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seg := range s.sealed {
		bytes += seg.Bytes
		records += seg.Records
		if oldest.IsZero() || (!seg.First.IsZero() && seg.First.Before(oldest)) {
			oldest = seg.First
		}
	}
	if a := s.active; a != nil && a.Records > 0 {
		bytes += a.Bytes
		records += a.Records
		if oldest.IsZero() || a.First.Before(oldest) {
			oldest = a.First
		}
	}
	return
}

// Close stops the writer after it served every queued append. Segments stay
// on disk; the next OpenSpool replays them.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
	s.appendMu.Lock()
	s.appendClosed = true
	s.appendMu.Unlock()
	close(s.quit)
	s.wg.Wait()
	return s.file.Close()
}
