package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/schollz/progressbar/v3"

	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/internal/chdb"
)

// drawKey reads the analytics' secret draw key from path, creating it
// (32 random bytes, mode 0600) when the file does not exist, as the
// collector's pseudonym secret. The key is the collector operator's: with
// it, which test of an agent's day is drawn cannot be predicted, so not
// steered (analytics.Goodset.OnePerAgentDay).
func drawKey(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("--draw-key-file is required: the secret that keys the one-test-per-agent-per-day draw (created if missing)")
	}
	key, err := loadOrCreateSecret(path)
	if err != nil {
		return nil, fmt.Errorf("draw key: %w", err)
	}
	return key, nil
}

// startAnalytics recomputes, on a cron schedule, the days whose
// measurements changed.
func startAnalytics(conn driver.Conn, spec string, key []byte, log *slog.Logger) (*scheduler, error) {
	job := &analytics.Job{Conn: conn, Logger: log, DrawKey: key}
	return startScheduler("schedule", spec, func(ctx context.Context) {
		n, err := job.RunPending(ctx)
		if err != nil && ctx.Err() == nil {
			log.Error("analytics: run failed; will retry at the next tick", "err", err)
			return
		}
		if n > 0 {
			log.Info("analytics: days recomputed", "days", n)
		}
	})
}

func cmdAnalytics(args []string) error {
	if ran, err := subcommand("analytics", args, map[string]func([]string) error{"run": cmdAnalyticsRun, "table": cmdAnalyticsTable}, "run the scheduler"); ran {
		return err
	}
	fs := newFlagSet("analytics", "Run the analytics scheduler: every tick, recompute the days whose measurements changed.\nSub-commands: `analytics run --from --to` recomputes a range; `analytics table` prints the summary table.")
	ch := addClickHouseFlags(fs)
	spec := fs.String("schedule", "*/10 * * * *", "cron spec of the runs")
	keyFile := fs.String("draw-key-file", "", "file holding the secret key of the one-test-per-agent-per-day draw, in hex (created if missing; required)")
	lf := addLogFlags(fs, "json")
	log, err := parseLogged(fs, args, lf)
	if err != nil {
		return err
	}
	key, err := drawKey(*keyFile)
	if err != nil {
		return err
	}
	conn, err := chdb.Setup(context.Background(), ch.options(), log)
	if err != nil {
		return err
	}
	defer conn.Close()
	s, err := startAnalytics(conn, *spec, key, log)
	if err != nil {
		return err
	}
	log.Info("analytics scheduler running", "schedule", *spec)
	ctx, cancel := signalContext()
	defer cancel()
	<-ctx.Done()
	s.close()
	return nil
}

// parseDays parses --from and --to (default: --from) as an ordered range.
func parseDays(fromS, toS string) (from, to time.Time, err error) {
	if fromS == "" {
		return from, to, errors.New("--from is required: a day like 2026-11-26")
	}
	if toS == "" {
		toS = fromS
	}
	if from, err = time.Parse(time.DateOnly, fromS); err != nil {
		return from, to, fmt.Errorf("--from must be a day like 2026-11-26, not %q", fromS)
	}
	if to, err = time.Parse(time.DateOnly, toS); err != nil {
		return from, to, fmt.Errorf("--to must be a day like 2026-11-26, not %q", toS)
	}
	if to.Before(from) {
		return from, to, errors.New("--to is before --from")
	}
	return from, to, nil
}

func cmdAnalyticsRun(args []string) error {
	fs := newFlagSet("analytics run", "Recompute the analytics of every day from --from to --to (inclusive) that has measurements.")
	ch := addClickHouseFlags(fs)
	days := addDayFlags(fs)
	keyFile := fs.String("draw-key-file", "", "file holding the secret key of the one-test-per-agent-per-day draw, in hex (created if missing; required)")
	perAgent := fs.Bool("per-agent", false, "also compute each agent's distribution over its own tests (scope agent; served nowhere, costly on a big day)")
	lf := addLogFlags(fs, "text")
	from, to, err := days.parse(fs, args)
	if err != nil {
		return err
	}
	key, err := drawKey(*keyFile)
	if err != nil {
		return err
	}
	log, err := lf.logger()
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	conn, err := chdb.Setup(ctx, ch.options(), log)
	if err != nil {
		return err
	}
	defer conn.Close()
	job := &analytics.Job{Conn: conn, Logger: log, DrawKey: key, PerAgent: *perAgent}
	start := time.Now()
	var bar *progressbar.ProgressBar
	err = job.RunRange(ctx, from, to, func(done, total int, day string) {
		if bar == nil {
			bar = newBar(int64(total), "days")
		}
		bar.Describe(day)
		_ = bar.Set(done)
		if !isTerminal(os.Stderr) {
			fmt.Fprintf(os.Stderr, "%d/%d %s\n", done, total, day)
		}
	})
	if bar != nil {
		_ = bar.Finish()
	}
	if err != nil {
		return err
	}
	fmt.Printf("analytics: %s to %s recomputed in %s\n", from.Format(time.DateOnly), to.Format(time.DateOnly), time.Since(start).Round(time.Millisecond))
	return nil
}

func cmdAnalyticsTable(args []string) error {
	fs := newFlagSet("analytics table", "Print Table I of the Neubot paper over a range of UTC days: an overall row, then one row per provider (AS) with\n"+
		"distinct agents, tests, the shares of agents and tests inside the goodset, and mean and median download, upload and RTT\n"+
		"(each agent one vote; 95% intervals of the medians). Providers with fewer than --min-agents agents in the goodset are listed apart.")
	ch := addClickHouseFlags(fs)
	days := addDayFlags(fs)
	test := fs.String("test", "speedtest", "test: speedtest, ndt7 or ndt7-browser (never mixed)")
	goodset := fs.String("goodset", "all", "goodset: all, paper2011 or paper2011-daily")
	synthetic := fs.Bool("synthetic", false, "tabulate simulated tests instead of real ones")
	csvOut := fs.Bool("csv", false, "print CSV instead of the paper's layout")
	minAgents := fs.Int("min-agents", analytics.MinAgents, "rank only providers with at least this many agents inside the goodset")
	from, to, err := days.parse(fs, args)
	if err != nil {
		return err
	}
	if *minAgents < 1 {
		return errors.New("--min-agents must be at least 1")
	}
	conn, err := chdb.Open(context.Background(), ch.options())
	if err != nil {
		return err
	}
	defer conn.Close()
	t, err := analytics.ReadTable(context.Background(), conn, analytics.TableQuery{Test: *test, Goodset: *goodset, Synthetic: *synthetic, From: from, To: to, MinAgents: *minAgents})
	if err != nil {
		return err
	}
	if *csvOut {
		return t.WriteCSV(os.Stdout)
	}
	return t.WriteText(os.Stdout)
}
