package publish_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/neubot/neubot/publish"
)

// TestSlowDownloadNotCut: a server whose responses have a 1 s deadline in
// all (as the platform's have 5 minutes) still delivers a dataset file to a
// client that takes 3 s to read it: dataset downloads have a deadline per
// write instead. The download, interrupted, resumes with Range and If-Range.
func TestSlowDownloadNotCut(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 8<<20)
	rand.Read(data)
	if err := os.MkdirAll(filepath.Join(dir, "speedtest"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "speedtest", "day.parquet"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: publish.New(publish.Config{DatasetsDir: dir}).Handler(), WriteTimeout: time.Second}
	go srv.Serve(l)
	defer srv.Close()
	url := "http://" + l.Addr().String() + "/datasets/speedtest/day.parquet"

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	start := time.Now()
	buf := make([]byte, 256<<10)
	for {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			if err != io.EOF {
				t.Fatalf("cut after %s and %d bytes: %v", time.Since(start), got.Len(), err)
			}
			break
		}
		time.Sleep(3 * time.Second / time.Duration(len(data)/len(buf)))
	}
	resp.Body.Close()
	if took := time.Since(start); !bytes.Equal(got.Bytes(), data) || took < 2*time.Second {
		t.Fatalf("%d of %d bytes in %s", got.Len(), len(data), took)
	}
	etag := resp.Header.Get("ETag")

	// Resume: the first 3 MB, then the rest by Range.
	resp, err = http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 3<<20)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", len(first)))
	req.Header.Set("If-Range", etag)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(append(first, rest...), data) {
		t.Fatalf("resume: %s, %d + %d bytes", resp.Status, len(first), len(rest))
	}
}
