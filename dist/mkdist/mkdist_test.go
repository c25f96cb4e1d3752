package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReproducible builds the linux/amd64 binary and .deb of this tree
// twice, into two directories, and compares their SHA-256: the same commit
// must give the same bytes. It also reads the package back with dpkg-deb.
func TestReproducible(t *testing.T) {
	root, err := gitOut(".", "rev-parse", "--show-toplevel")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Root: root, Targets: []string{"linux/amd64"}}
	if err := cfg.Describe(); err != nil {
		t.Fatal(err)
	}
	var runs [2][]Artifact
	for i := range runs {
		c := cfg
		c.Out = t.TempDir()
		if runs[i], err = Build(c); err != nil {
			t.Fatal(err)
		}
	}
	if len(runs[0]) != 3 || len(runs[1]) != 3 { // binary, .deb, SHA256SUMS
		t.Fatalf("built %v and %v; want a binary and a .deb each", runs[0], runs[1])
	}
	for i, a := range runs[0][:2] {
		b := runs[1][i]
		t.Logf("%s  %s", a.SHA256, filepath.Base(a.Path))
		if filepath.Base(a.Path) != filepath.Base(b.Path) || a.SHA256 != b.SHA256 || len(a.SHA256) != 64 {
			t.Errorf("two builds differ: %s %s and %s %s", a.SHA256, a.Path, b.SHA256, b.Path)
		}
	}
	deb := runs[0][1].Path
	if want := "neubot_" + cfg.Version + "_amd64.deb"; filepath.Base(deb) != want {
		t.Errorf("the package is %s, want %s", filepath.Base(deb), want)
	}
	out, err := exec.Command("dpkg-deb", "--field", deb, "Package", "Version", "Architecture", "Depends").CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb --field: %v\n%s", err, out)
	}
	want := "Package: neubot\nVersion: " + cfg.Version + "\nArchitecture: amd64\nDepends: passwd\n"
	if string(out) != want {
		t.Errorf("dpkg-deb --field says\n%s\nwant\n%s", out, want)
	}
	out, err = exec.Command("dpkg-deb", "--contents", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb --contents: %v\n%s", err, out)
	}
	for _, f := range []string{"./usr/bin/neubot", "./usr/lib/systemd/system/neubot-agent.service", "./usr/share/man/man1/neubot.1.gz", "./etc/default/neubot"} {
		if !strings.Contains(string(out), " "+f+"\n") {
			t.Errorf("the package lacks %s:\n%s", f, out)
		}
	}
}

// TestDescribe: versions are snapshots of version.Base unless given, and
// bad ones are refused before anything is built.
func TestDescribe(t *testing.T) {
	c := Config{Root: t.TempDir(), Commit: "0123456789abcdef", Epoch: 1764720000} // not a repository: no tag
	if err := c.Describe(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(c.Version, "~20251203.0123456") {
		t.Errorf("snapshot version %q", c.Version)
	}
	for _, bad := range []string{"v1.0", "1.0 beta", "1_0", strings.Repeat("1", 33)} {
		c := Config{Root: ".", Commit: "x", Epoch: 1, Version: bad}
		if err := c.Describe(); err == nil {
			t.Errorf("version %q accepted", bad)
		}
	}
}
