// Command mkdist builds what volunteers install (`make dist`): the static
// neubot binary for Linux (amd64, arm64) and macOS (amd64, arm64), and for
// Linux a .deb per architecture, made with nfpm as a library, holding the
// binary, the systemd unit (dist/systemd), the manual page (from the
// binary's own help text), /etc/default/neubot and the maintainer scripts
// of dist/deb.
//
// Builds are reproducible: the same commit gives the same bytes. The
// binaries are built with CGO_ENABLED=0, -trimpath and an empty build ID,
// and every time stamp (files, archives, the manual's date) is
// SOURCE_DATE_EPOCH, by default the time of the commit.
package main

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"

	"github.com/neubot/neubot/internal/version"
)

// Config says what to build.
type Config struct {
	// Root is the repository's top directory.
	Root string
	// Out receives the binaries, the packages and SHA256SUMS.
	Out string
	// Targets are GOOS/GOARCH pairs; a .deb is made for each linux one.
	Targets []string
	// Version, Commit and Epoch (SOURCE_DATE_EPOCH); Describe fills the
	// empty ones from git.
	Version string
	Commit  string
	Epoch   int64
	// Collector, if set, is the binary's default collector.
	Collector string
	// Log receives one line per file written.
	Log io.Writer
}

// Artifact is one file built.
type Artifact struct {
	Path   string
	SHA256 string
}

func main() {
	cfg := Config{Log: os.Stdout}
	flag.StringVar(&cfg.Out, "out", "bin/dist", "directory of the binaries, packages and SHA256SUMS")
	targets := flag.String("targets", "linux/amd64,linux/arm64,darwin/amd64,darwin/arm64", "comma-separated GOOS/GOARCH to build; a .deb for each linux one")
	flag.StringVar(&cfg.Version, "version", "", "version to build (default: the tag vX.Y.Z of HEAD, else "+version.Base+"~DATE.COMMIT)")
	flag.StringVar(&cfg.Collector, "collector", "", "the binary's default collector URL (default: "+version.DefaultCollector+")")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "mkdist: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	cfg.Targets = strings.Split(*targets, ",")
	root, err := gitOut(".", "rev-parse", "--show-toplevel")
	if err == nil {
		cfg.Root = root
		err = cfg.Describe()
	}
	if err == nil {
		_, err = Build(cfg)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkdist: %v\n", err)
		os.Exit(1)
	}
}

func gitOut(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Describe fills Commit, Epoch and Version from git where they are empty:
// the commit of HEAD ("-dirty" when the tree has changes), its commit time
// (or SOURCE_DATE_EPOCH if set), and the version of its tag vX.Y.Z, else
// Base~YYYYMMDD.COMMIT, which Debian and version.Compare order before Base.
func (c *Config) Describe() error {
	if c.Commit == "" {
		commit, err := gitOut(c.Root, "rev-parse", "HEAD")
		if err != nil {
			return err
		}
		status, err := gitOut(c.Root, "status", "--porcelain", "--untracked-files=no")
		if err != nil {
			return err
		}
		if status != "" {
			commit += "-dirty"
		}
		c.Commit = commit
	}
	if c.Epoch == 0 {
		s := os.Getenv("SOURCE_DATE_EPOCH")
		if s == "" {
			var err error
			if s, err = gitOut(c.Root, "log", "-1", "--format=%ct", "HEAD"); err != nil {
				return err
			}
		}
		e, err := strconv.ParseInt(s, 10, 64)
		if err != nil || e <= 0 {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q is not a positive number of seconds", s)
		}
		c.Epoch = e
	}
	if c.Version == "" {
		if tag, err := gitOut(c.Root, "describe", "--tags", "--exact-match", "--match", "v[0-9]*", "HEAD"); err == nil {
			c.Version = strings.TrimPrefix(tag, "v")
		} else {
			c.Version = fmt.Sprintf("%s~%s.%.7s", version.Base, time.Unix(c.Epoch, 0).UTC().Format("20060102"), c.Commit)
		}
	}
	if c.Version == "" || c.Version[0] < '0' || c.Version[0] > '9' || len(c.Version) > 32 || strings.ContainsAny(c.Version, " _/\\\"'\n") {
		return fmt.Errorf("version %q: must start with a digit, have no spaces, underscores, slashes or quotes, and be at most 32 bytes (records carry it)", c.Version)
	}
	return nil
}

// Build builds every target and returns what it wrote, with SHA256SUMS
// last.
func Build(c Config) ([]Artifact, error) {
	if c.Log == nil {
		c.Log = io.Discard
	}
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return nil, err
	}
	mtime := time.Unix(c.Epoch, 0).UTC()
	var arts []Artifact
	var man string // the gzipped manual page, made from the first Linux binary that runs here
	for _, t := range c.Targets {
		goos, goarch, ok := strings.Cut(strings.TrimSpace(t), "/")
		if !ok || (goos != "linux" && goos != "darwin") || (goarch != "amd64" && goarch != "arm64") {
			return nil, fmt.Errorf("target %q: want linux or darwin / amd64 or arm64", t)
		}
		bin := filepath.Join(c.Out, fmt.Sprintf("neubot_%s_%s_%s", c.Version, goos, goarch))
		if err := c.goBuild(goos, goarch, bin, mtime); err != nil {
			return nil, err
		}
		arts = append(arts, Artifact{Path: bin})
		if goos != "linux" {
			continue
		}
		if man == "" {
			runnable := bin
			if goos != runtime.GOOS || goarch != runtime.GOARCH {
				runnable = filepath.Join(c.Out, "neubot-host")
				if err := c.goBuild(runtime.GOOS, runtime.GOARCH, runnable, mtime); err != nil {
					return nil, err
				}
				defer os.Remove(runnable)
			}
			man = filepath.Join(c.Out, "neubot.1.gz")
			if err := c.manPage(runnable, man, mtime); err != nil {
				return nil, err
			}
			defer os.Remove(man)
		}
		pkg, err := c.deb(goarch, bin, man, mtime)
		if err != nil {
			return nil, err
		}
		arts = append(arts, Artifact{Path: pkg})
	}
	var sums strings.Builder
	for i := range arts {
		sum, err := fileSHA256(arts[i].Path)
		if err != nil {
			return nil, err
		}
		arts[i].SHA256 = sum
		fmt.Fprintf(&sums, "%s  %s\n", sum, filepath.Base(arts[i].Path))
		fmt.Fprintf(c.Log, "%s  %s\n", sum, arts[i].Path)
	}
	sumsPath := filepath.Join(c.Out, "SHA256SUMS")
	if err := os.WriteFile(sumsPath, []byte(sums.String()), 0o644); err != nil {
		return nil, err
	}
	return append(arts, Artifact{Path: sumsPath}), nil
}

// goBuild builds cmd/neubot for goos/goarch: static, without paths of this
// machine or a build ID, with the version, commit and collector set.
func (c *Config) goBuild(goos, goarch, out string, mtime time.Time) error {
	ldflags := []string{"-s", "-w", "-buildid=",
		"-X", "github.com/neubot/neubot/internal/version.Version=" + c.Version,
		"-X", "github.com/neubot/neubot/internal/version.Commit=" + c.Commit}
	if c.Collector != "" {
		ldflags = append(ldflags, "-X", "github.com/neubot/neubot/internal/version.DefaultCollector="+c.Collector)
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", strings.Join(ldflags, " "), "-o", abs, "./cmd/neubot")
	cmd.Dir = c.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build for %s/%s: %w\n%s", goos, goarch, err, out)
	}
	return os.Chtimes(abs, mtime, mtime)
}

// manPage writes neubot(1), made by the binary itself from its help text,
// gzipped without a name or a time in the header.
func (c *Config) manPage(bin, out string, mtime time.Time) error {
	cmd := exec.Command(bin, "man")
	cmd.Env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", c.Epoch))
	roff, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s man: %w", bin, err)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	zw, err := gzip.NewWriterLevel(f, gzip.BestCompression)
	if err != nil {
		f.Close()
		return err
	}
	if _, err := zw.Write(roff); err != nil {
		f.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chtimes(out, mtime, mtime)
}

// deb packages bin for goarch with nfpm.
func (c *Config) deb(goarch, bin, man string, mtime time.Time) (string, error) {
	dist := filepath.Join(c.Root, "dist")
	file := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode, MTime: mtime, Owner: "root", Group: "root"}}
	}
	conf := file(filepath.Join(dist, "deb", "default"), "/etc/default/neubot", 0o644)
	conf.Type = files.TypeConfigNoReplace
	info := &nfpm.Info{
		Name:          "neubot",
		Arch:          goarch,
		Platform:      "linux",
		Version:       c.Version,
		VersionSchema: "none",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    "Neubot developers <https://github.com/neubot/neubot/issues>",
		Homepage:      "https://github.com/neubot/neubot",
		Description: "Neubot agent: measures the quality and neutrality of your Internet access\n" +
			"The agent tests the connection in the background at random times, once\n" +
			"the volunteer consents in its web UI (http://127.0.0.1:9774/), keeps every\n" +
			"result locally and uploads it to the Neubot collector as open data.",
		MTime: mtime,
		Overridables: nfpm.Overridables{
			Depends: []string{"passwd"},
			Contents: files.Contents{
				file(bin, "/usr/bin/neubot", 0o755),
				file(filepath.Join(dist, "systemd", "neubot-agent.service"), "/usr/lib/systemd/system/neubot-agent.service", 0o644),
				file(man, "/usr/share/man/man1/neubot.1.gz", 0o644),
				conf,
			},
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(dist, "deb", "postinst"),
				PreRemove:   filepath.Join(dist, "deb", "prerm"),
				PostRemove:  filepath.Join(dist, "deb", "postrm"),
			},
			Deb: nfpm.Deb{Compression: "gzip"},
		},
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", fmt.Errorf("nfpm: %w", err)
	}
	out := filepath.Join(c.Out, fmt.Sprintf("neubot_%s_%s.deb", c.Version, goarch))
	f, err := os.Create(out)
	if err != nil {
		return "", err
	}
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		return "", fmt.Errorf("nfpm deb %s: %w", goarch, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return out, os.Chtimes(out, mtime, mtime)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
