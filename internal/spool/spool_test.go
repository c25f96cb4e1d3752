package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

func entries(n int, tag string) []Entry {
	out := make([]Entry, n)
	for i := range out {
		out[i] = Entry{Received: time.Unix(1700000000, int64(i)), Peer: "192.0.2.1", Record: []byte(fmt.Sprintf(`{"n":"%s-%d"}`, tag, i))}
	}
	return out
}

func readAll(t *testing.T, s *Spool) []string {
	t.Helper()
	var got []string
	for s.Pending() {
		seg, err := s.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Read(seg, func(e Entry) error {
			if e.Peer != "192.0.2.1" {
				t.Fatalf("peer %q", e.Peer)
			}
			got = append(got, string(e.Record))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(seg); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// TestSpoolRecoversTornTail: a crash mid-write leaves a partial frame; it was
// never acknowledged, so recovery cuts it and keeps everything before it.
func TestSpoolRecoversTornTail(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := s.Append(context.Background(), entries(10, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	before, _ := os.Stat(segs[0])
	f, _ := os.OpenFile(segs[0], os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{200, 0, 0, 0, 1, 2, 3, 4, '{', '"'}) // a frame cut short
	f.Close()

	s, err = Open(dir, Options{MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	after, _ := os.Stat(segs[0])
	if after.Size() != before.Size() {
		t.Fatalf("torn tail not cut: %d bytes, want %d", after.Size(), before.Size())
	}
	got := readAll(t, s)
	if len(got) != 30 || got[0] != `{"n":"0-0"}` || got[29] != `{"n":"2-9"}` {
		t.Fatalf("recovered %d records: %v", len(got), got)
	}
}

// TestSpoolCorruptSegment: damage inside a segment is never a silent skip.
// Recovery cuts at the damage but keeps a copy of what it cut; a sealed
// segment that fails its checksums is an error for the loader, which then
// moves it to quarantine.
func TestSpoolCorruptSegment(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, Options{MaxAge: time.Hour})
	s.Append(context.Background(), entries(5, "a"))
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	b, _ := os.ReadFile(segs[0])
	b[frameHeaderSize+3] ^= 0xff // inside the first payload
	os.WriteFile(segs[0], b, 0o640)

	s, _ = Open(dir, Options{MaxAge: time.Hour})
	defer s.Close()
	kept, _ := filepath.Glob(filepath.Join(dir, "quarantine", "*.tail-at-0"))
	if len(kept) != 1 {
		t.Fatalf("the cut bytes were not kept: %v", kept)
	}
	if k, _ := os.ReadFile(kept[0]); len(k) != len(b) {
		t.Fatalf("kept %d bytes of %d", len(k), len(b))
	}

	// A sealed segment damaged after recovery.
	seg := &Segment{Path: filepath.Join(dir, "damaged.wal")}
	os.WriteFile(seg.Path, b, 0o640)
	if err := s.Read(seg, func(Entry) error { return nil }); err == nil {
		t.Fatal("a corrupt segment was read without error")
	}
	if err := s.Quarantine(seg); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "quarantine", "damaged.wal")); err != nil {
		t.Fatal("segment not kept in quarantine")
	}
}

// TestSpoolGroupCommit: concurrent appends are all durable and ordered per
// request, and sealing by size hands segments to the reader in order.
func TestSpoolGroupCommit(t *testing.T) {
	s, err := Open(t.TempDir(), Options{MaxRecords: 100, MaxAge: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for c := 0; c < 16; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if err := s.Append(context.Background(), entries(7, fmt.Sprintf("%d.%d", c, i))); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	time.Sleep(100 * time.Millisecond) // let the age seal the last segment
	if _, n, _ := s.Stats(); n != 16*20*7 {
		t.Fatalf("spool holds %d records, want %d", n, 16*20*7)
	}
	got := readAll(t, s)
	if len(got) != 16*20*7 {
		t.Fatalf("read %d records, want %d", len(got), 16*20*7)
	}
	seen := map[string]bool{}
	for _, g := range got {
		if seen[g] {
			t.Fatalf("record %s twice", g)
		}
		seen[g] = true
	}
}

// TestReadOnlyAcknowledged: bytes past a sealed segment's acknowledged
// length (what a failed write left when its truncate failed too) are not
// read, so they cannot make the segment look corrupt; an open error is not
// ErrCorrupt, while a checksum failure is.
func TestReadOnlyAcknowledged(t *testing.T) {
	dir := t.TempDir()
	var failOpen bool
	s, err := Open(dir, Options{MaxAge: 100 * time.Millisecond, OpenRead: func(name string) (*os.File, error) {
		if failOpen {
			return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EMFILE}
		}
		return os.Open(name)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		if err := s.Append(context.Background(), []Entry{{Received: time.Now(), Peer: "192.0.2.1", Record: []byte(fmt.Sprintf(`{"n":%d}`, i))}}); err != nil {
			t.Fatal(err)
		}
	}
	s.Flush(context.Background())
	seg, err := s.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(seg.Path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{200, 0, 0, 0, 1, 2}) // a torn frame, never acknowledged
	f.Close()
	var got []string
	if err := s.Read(seg, func(e Entry) error { got = append(got, string(e.Record)); return nil }); err != nil || len(got) != 3 {
		t.Fatalf("read %v: %v", got, err)
	}
	failOpen = true
	if err := s.Read(seg, func(Entry) error { return nil }); err == nil || errors.Is(err, ErrCorrupt) || !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("open failure: %v", err)
	}
	failOpen = false
	b, _ := os.ReadFile(seg.Path)
	b[frameHeaderSize+2] ^= 0xff // flip a byte of the first frame
	os.WriteFile(seg.Path, b, 0o640)
	if err := s.Read(seg, func(Entry) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged frame: %v", err)
	}
}
