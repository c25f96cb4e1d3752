package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/schollz/progressbar/v3"

	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/cli"
)

// startAnalytics recomputes, on a cron schedule, the days whose
// measurements changed.
func startAnalytics(conn driver.Conn, spec string, log *slog.Logger) (*scheduler, error) {
	job := &analytics.Job{Conn: conn, Logger: log}
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
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "run":
			return cmdAnalyticsRun(args[1:])
		case "table":
			return cmdAnalyticsTable(args[1:])
		}
		fmt.Fprintf(os.Stderr, "%s analytics: unknown command %q (run, table, or flags to run the scheduler)\n", prog, args[0])
		return cli.ErrUsage
	}
	fs := newFlagSet("analytics", "Run the analytics scheduler: every tick, recompute the days whose measurements changed.\nSub-commands: `analytics run --from --to` recomputes a range; `analytics table` prints the summary table.")
	ch := addClickHouseFlags(fs)
	spec := fs.String("schedule", "*/10 * * * *", "cron spec of the runs")
	lf := addLogFlags(fs, "json")
	log, err := parseLogged(fs, args, lf)
	if err != nil {
		return err
	}
	conn, err := chdb.Setup(context.Background(), ch.options(), log)
	if err != nil {
		return err
	}
	defer conn.Close()
	s, err := startAnalytics(conn, *spec, log)
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
	fromS := fs.String("from", "", "first day, YYYY-MM-DD (required)")
	toS := fs.String("to", "", "last day, YYYY-MM-DD (default: --from)")
	lf := addLogFlags(fs, "text")
	if err := parse(fs, args); err != nil {
		return err
	}
	from, to, err := parseDays(*fromS, *toS)
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
	job := &analytics.Job{Conn: conn, Logger: log}
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
	fs := newFlagSet("analytics table", "Print the summary table (the Neubot paper's Table I: averages per ISP) over a range of days.")
	ch := addClickHouseFlags(fs)
	fromS := fs.String("from", "", "first day, YYYY-MM-DD (required)")
	toS := fs.String("to", "", "last day (default: --from)")
	goodset := fs.String("goodset", "paper2011", "goodset")
	synthetic := fs.Bool("synthetic", false, "summarise simulated tests instead of real ones")
	format := fs.String("format", "md", "md or csv")
	minTests := fs.Uint64("min-tests", 10, "leave out ISPs with fewer tests")
	if err := parse(fs, args); err != nil {
		return err
	}
	from, to, err := parseDays(*fromS, *toS)
	if err != nil {
		return err
	}
	conn, err := chdb.Open(context.Background(), ch.options())
	if err != nil {
		return err
	}
	defer conn.Close()
	rows, err := (&analytics.Job{Conn: conn}).Summary(context.Background(), from, to, *goodset, *synthetic, *minTests)
	if err != nil {
		return err
	}
	return analytics.WriteSummary(os.Stdout, rows, *format)
}
