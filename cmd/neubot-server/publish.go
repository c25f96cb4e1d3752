package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/schollz/progressbar/v3"

	"github.com/neubot/neubot/collector/annotate"
	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/publish"
	"github.com/neubot/neubot/schemas"
)

// startExports writes, on a cron schedule, the dumps of the days that
// ended at least lag ago and are not exported yet.
func startExports(spec string, lag time.Duration, log *slog.Logger, cfgs ...publish.ExportConfig) (*scheduler, error) {
	return startScheduler("export-schedule", spec, func(ctx context.Context) {
		through := time.Now().UTC().Add(-lag).Truncate(24*time.Hour).AddDate(0, 0, -1)
		for _, cfg := range cfgs {
			ms, err := publish.ExportPending(ctx, cfg, through, 31)
			if err != nil && ctx.Err() == nil {
				log.Error("publish: export failed; will retry at the next tick", "dir", cfg.Dir, "err", err)
				continue
			}
			for _, m := range ms {
				log.Info("publish: day exported", "test", m.Test, "day", m.Day, "rows", m.Rows, "synthetic", m.Synthetic, "dir", cfg.Dir)
			}
		}
	})
}

func cmdPublish(args []string) error {
	if ran, err := subcommand("publish", args, map[string]func([]string) error{"export": cmdPublishExport}, "serve"); ran {
		return err
	}
	fs := newFlagSet("publish", "Serve the public query API (/api/v1/), the dashboards (/, /isp/{asn}) and the open\ndatasets (/datasets/), and export the daily dumps on a schedule.\nSub-command: `publish export --from --to` exports a range of days now.")
	ch := addClickHouseFlags(fs)
	listen := fs.String("listen", defaultPublishAddr, "address to serve on")
	datasets := fs.String("datasets", "datasets", "directory of the dumps (created)")
	spec := fs.String("export-schedule", "30 0 * * *", "cron spec of the daily export of the days that closed (empty: no exports)")
	trust := fs.Bool("trust-proxy", false, "take client addresses from X-Forwarded-For (only behind your own proxy)")
	rate := fs.Float64("rate", 10, "requests per second allowed per client address")
	burst := fs.Int("burst", 50, "burst of requests allowed per client address")
	cacheTTL := fs.Duration("cache-ttl", time.Minute, "how long answers stay in the in-memory cache (0: no cache)")
	ipdb := addIPDBFlag(fs)
	keyFile := addManifestKeyFlag(fs)
	lf := addLogFlags(fs, "json")
	log, err := parseLogged(fs, args, lf)
	if err != nil {
		return err
	}
	if *rate <= 0 || *burst < 1 {
		return fmt.Errorf("--rate must be positive and --burst at least 1")
	}
	p, err := openPublishing(ch, *ipdb, *datasets, *keyFile, log)
	if err != nil {
		return err
	}
	defer p.close()
	ctx, conn, db := p.ctx, p.conn, p.db
	ttl := *cacheTTL
	if ttl == 0 {
		ttl = -1
	}
	srv, err := httpx.Listen(*listen, publish.New(publish.Config{Conn: conn, IPDB: db, TrustProxy: *trust, Rate: *rate, Burst: *burst,
		CacheTTL: ttl, DatasetsDir: *datasets, Logger: log}).Handler(), log)
	if err != nil {
		return err
	}
	if *spec != "" {
		ex, err := startExports(*spec, publish.ClosedAfter, log, exportConfig(conn, db, *datasets, false, p.key))
		if err != nil {
			_ = srv.Shutdown(context.Background())
			return err
		}
		defer ex.close()
	}
	log.Info("publish serving", "url", srv.URL(), "datasets", *datasets, "export_schedule", *spec)
	select {
	case <-ctx.Done():
	case err = <-srv.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	return err
}

// publishing is what both publish commands need: a context that ends on
// a signal, the IP database (for the manifests' attribution and whoami),
// ClickHouse with the migrations applied, the datasets directory (made) and
// the manifests' signing key (nil: unsigned).
type publishing struct {
	ctx    context.Context
	cancel context.CancelFunc
	db     *annotate.DB
	conn   driver.Conn
	key    *identity.Key
}

func openPublishing(ch clickHouseFlags, ipdb, datasets, keyFile string, log *slog.Logger) (*publishing, error) {
	key, err := loadManifestKey(keyFile, log)
	if err != nil {
		return nil, err
	}
	db, err := openIPDB(ipdb, log)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(datasets, 0o755); err != nil {
		return nil, err
	}
	ctx, cancel := signalContext()
	conn, err := chdb.Setup(ctx, ch.options(), log)
	if err != nil {
		cancel()
		return nil, err
	}
	return &publishing{ctx: ctx, cancel: cancel, db: db, conn: conn, key: key}, nil
}

func (p *publishing) close() {
	p.conn.Close()
	p.cancel()
}

func exportConfig(conn driver.Conn, db *annotate.DB, dir string, synthetic bool, key *identity.Key) publish.ExportConfig {
	return publish.ExportConfig{Conn: conn, Dir: dir, ASNDB: db.Version(), ASNDBLicence: db.Licence(), Synthetic: synthetic, Key: key}
}

// addManifestKeyFlag adds --key-file: the collector's key, which signs the
// manifests of the dumps (spec/trust.md, "Signed dumps").
func addManifestKeyFlag(fs *flag.FlagSet) *string {
	return fs.String("key-file", "", "the collector's key file (its --key-file), which signs each day's manifest (manifest.json.sig; researchers check a day with `neubot-server verify`); empty: manifests are not signed")
}

// loadManifestKey reads the key of --key-file (which must exist: the
// collector makes it), or warns that the dumps go unsigned.
func loadManifestKey(path string, log *slog.Logger) (*identity.Key, error) {
	if path == "" {
		log.Warn("publish: the dumps' manifests are not signed: give --key-file (the collector's key)")
		return nil, nil
	}
	key, err := identity.Load(path)
	if err != nil {
		return nil, fmt.Errorf("--key-file: %w", err)
	}
	log.Info("publish: manifests signed by the collector's key", "key", key.Public())
	return key, nil
}

func cmdPublishExport(args []string) error {
	fs := newFlagSet("publish export", "Export the daily dumps (Parquet, CSV.gz, manifest; index updated) of every day from --from to --to.\nExporting a day again rewrites nothing when its rows have not changed.")
	ch := addClickHouseFlags(fs)
	days := addDayFlags(fs)
	datasets := fs.String("datasets", "datasets", "directory of the dumps (created)")
	testName := fs.String("test", "", "only this test (default: every test)")
	synthetic := fs.Bool("synthetic", false, "export the simulated rows instead (for demos; never mix with a real tree)")
	ipdb := fs.String("ipdb", "", "folder of the @ip-location-db packages, for the manifest's database version")
	keyFile := addManifestKeyFlag(fs)
	lf := addLogFlags(fs, "text")
	from, to, err := days.parse(fs, args)
	if err != nil {
		return err
	}
	tests := schemas.Tests()
	if *testName != "" {
		t, ok := schemas.Lookup(*testName)
		if !ok {
			return fmt.Errorf("--test %q is not a test of Neubot", *testName)
		}
		tests = []*schemas.Test{t}
	}
	if to.Sub(from) > 3660*24*time.Hour {
		return fmt.Errorf("--from and --to span more than ten years")
	}
	log, err := lf.logger()
	if err != nil {
		return err
	}
	p, err := openPublishing(ch, *ipdb, *datasets, *keyFile, log)
	if err != nil {
		return err
	}
	defer p.close()
	ctx, conn := p.ctx, p.conn
	cfg := exportConfig(conn, p.db, *datasets, *synthetic, p.key)

	// The bar counts rows over the whole range (before duplicates merge,
	// so it may end a little short of its total).
	// A test with no row on a day gets no files for it.
	type job struct {
		test *schemas.Test
		day  time.Time
	}
	var total int64
	var jobs []job
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		for _, t := range tests {
			n, err := publish.Count(ctx, conn, t, d, *synthetic)
			if err != nil {
				return err
			}
			if n > 0 {
				jobs = append(jobs, job{t, d})
			}
			total += int64(n)
		}
	}
	bar := newBar(total, "rows")
	start := time.Now()
	var rows, files uint64
	for _, j := range jobs {
		base := rows
		cfg.Progress = func(n uint64) { _ = bar.Set64(int64(base + n)) }
		bar.Describe(fmt.Sprintf("%s %s", j.test.Name, j.day.Format(time.DateOnly)))
		m, err := publish.ExportDay(ctx, cfg, j.test, j.day)
		if err != nil {
			_ = bar.Exit()
			return err
		}
		rows += m.Rows
		files += uint64(len(m.Files))
		if !isTerminal(os.Stderr) {
			fmt.Fprintf(os.Stderr, "%s %s: %d rows\n", j.test.Name, m.Day, m.Rows)
		}
	}
	_ = bar.Finish()
	secs := time.Since(start).Seconds()
	fmt.Printf("publish export: %d rows, %d files, %s to %s, in %.1f s (%.0f rows/s) under %s\n",
		rows, files, from.Format(time.DateOnly), to.Format(time.DateOnly), secs, float64(rows)/secs, filepath.Clean(*datasets))
	return nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// newBar is a progress bar on standard error with a count of units, their
// rate and the time left, drawn only on a terminal.
func newBar(total int64, unit string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetVisibility(isTerminal(os.Stderr)),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetWidth(30),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(os.Stderr) }),
	)
}
