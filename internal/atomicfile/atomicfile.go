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
	f, err := Create(path)
	if err != nil {
		return err
	}
	defer f.Discard()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Commit()
}

// File is a replacement of a file being written: Write streams into a
// temporary file in the same directory, Commit makes it the file, Discard
// (deferred) removes it unless it was committed.
type File struct {
	f     *os.File
	final string
	done  bool
}

// Create starts the replacement of path.
func Create(path string) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	return &File{f: f, final: path}, nil
}

// Write writes to the temporary file.
func (a *File) Write(p []byte) (int, error) { return a.f.Write(p) }

// Name is the path the file replaces.
func (a *File) Name() string { return a.final }

// Commit fsyncs the temporary file, renames it over the target and fsyncs
// the directory.
func (a *File) Commit() error {
	if err := a.f.Sync(); err != nil {
		return err
	}
	if err := a.f.Close(); err != nil {
		return err
	}
	if err := os.Rename(a.f.Name(), a.final); err != nil {
		return err
	}
	a.done = true
	return SyncDir(filepath.Dir(a.final))
}

// Discard removes the temporary file unless it was committed.
func (a *File) Discard() {
	if !a.done {
		a.f.Close()
		os.Remove(a.f.Name())
	}
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
