// Package atomicfile replaces files so that a reader sees the old bytes or
// the new ones, never a part, even across a crash: write a temporary file
// in the same directory, fsync it, rename it over the target, fsync the
// directory (so the rename itself survives a power cut).
package atomicfile

import (
	"os"
	"path/filepath"
)

// WriteFile atomically replaces path with data (mode 0600 from CreateTemp;
// the files written this way are read by their own program or served).
func WriteFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename: nothing there
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, making the entries created, renamed or
// removed in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
