package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/neubot/neubot/collector"
	"github.com/neubot/neubot/collector/annotate"
	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/cli"
	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/version"
)

// envPrefix mirrors every flag: --spool-dir is also NEUBOT_SERVER_SPOOL_DIR.
const envPrefix = "NEUBOT_SERVER"

// The components' default addresses, one for each component's own
// sub-command and for `up` (the collector's also makes its clients' default
// base URL).
const (
	defaultCollectorAddr  = "127.0.0.1:9773"
	defaultTestserverAddr = "127.0.0.1:9775"
	defaultBitTorrentAddr = "127.0.0.1:6881"
	defaultNeutralAddr    = "127.0.0.1:9776"
	defaultPublishAddr    = "127.0.0.1:8080"
)

type logFlags struct{ format, level *string }

func addLogFlags(fs *flag.FlagSet, format string) logFlags {
	return logFlags{
		format: fs.String("log-format", format, "log format: json or text"),
		level:  fs.String("log-level", "info", "log level: debug, info, warn, error"),
	}
}

func (l logFlags) logger() (*slog.Logger, error) { return cli.Logger(os.Stderr, *l.format, *l.level) }

func newFlagSet(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(prog+" "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s %s [flags]\n\n%s\n\nFlags (each also read from %s_<FLAG>, e.g. %s):\n",
			prog, name, usage, envPrefix, cli.EnvName(envPrefix, "log-level"))
		fs.PrintDefaults()
	}
	return fs
}

// addIPDBFlag is the --ipdb flag of the commands that annotate addresses.
func addIPDBFlag(fs *flag.FlagSet) *string {
	return fs.String("ipdb", "", "folder of the @ip-location-db packages (default: where scripts/setup installs them)")
}

// subcommand runs the sub-command of command that args name, when args
// start with a word rather than a flag; ran is false when they do not (the
// command itself runs). An unknown word is a usage error, which lists the
// sub-commands.
func subcommand(command string, args []string, subs map[string]func([]string) error, otherwise string) (ran bool, err error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return false, nil
	}
	if run, ok := subs[args[0]]; ok {
		return true, run(args[1:])
	}
	names := make([]string, 0, len(subs))
	for name := range subs {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "%s %s: unknown command %q (%s, or flags to %s)\n", prog, command, args[0], strings.Join(names, ", "), otherwise)
	return true, cli.ErrUsage
}

// parse parses flags and refuses positional arguments.
// dayFlags are the --from and --to flags of a command over a range of days.
type dayFlags struct{ from, to *string }

// addDayFlags adds --from (required) and --to (default: --from) to fs.
func addDayFlags(fs *flag.FlagSet) dayFlags {
	return dayFlags{
		from: fs.String("from", "", "first day, YYYY-MM-DD (required)"),
		to:   fs.String("to", "", "last day, YYYY-MM-DD (default: --from)"),
	}
}

// parse parses args into fs, then the range of days (parseDays).
func (d dayFlags) parse(fs *flag.FlagSet, args []string) (from, to time.Time, err error) {
	if err := parse(fs, args); err != nil {
		return from, to, err
	}
	return parseDays(*d.from, *d.to)
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := cli.Parse(fs, envPrefix, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cli.ErrUsage
		}
		if fs.Parsed() {
			fmt.Fprintf(fs.Output(), "%s: %v\n", fs.Name(), err)
		}
		return cli.ErrUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return cli.ErrUsage
	}
	return nil
}

// parseLogged parses the flags and makes the logger they ask for.
func parseLogged(fs *flag.FlagSet, args []string, lf logFlags) (*slog.Logger, error) {
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	return lf.logger()
}

// clickHouseFlags are the flags that say where ClickHouse is.
type clickHouseFlags struct {
	addr    *addrList
	db      *string
	cluster *string
}

func addClickHouseFlags(fs *flag.FlagSet) clickHouseFlags {
	c := clickHouseFlags{addr: &addrList{"127.0.0.1:9000"}, cluster: new(string)}
	fs.Var(c.addr, "clickhouse", "ClickHouse native protocol address, host:port; several, comma-separated,\nare tried in turn (e.g. the servers of a cluster)")
	c.db = fs.String("database", chdb.DefaultDatabase, "ClickHouse database")
	fs.Func("clickhouse-cluster", "name of the ClickHouse cluster (remote_servers) to run on, see docs/cluster.md;\nempty: a single node", func(v string) error {
		if v != "" && !identRE.MatchString(v) {
			return fmt.Errorf("%q is not a cluster name (letters, digits and _, not starting with a digit)", v)
		}
		*c.cluster = v
		return nil
	})
	return c
}

func (c clickHouseFlags) options() chdb.Options {
	return chdb.Options{Addr: (*c.addr)[0], More: (*c.addr)[1:], Database: *c.db, Cluster: *c.cluster}
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// addrList is a comma-separated list of host:port, checked when parsed.
type addrList []string

func (a *addrList) String() string {
	if a == nil {
		return ""
	}
	return strings.Join(*a, ",")
}

func (a *addrList) Set(v string) error {
	var out addrList
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			return fmt.Errorf("%q is not host:port", s)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
			return fmt.Errorf("%q is not host:port with a port from 1 to 65535", s)
		}
		out = append(out, s)
	}
	*a = out
	return nil
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// openIPDB loads the IP-to-ASN and country databases from dir, or from the
// default place where scripts/setup installs them.
func openIPDB(dir string, log *slog.Logger) (*annotate.DB, error) {
	if dir == "" {
		d, err := annotate.DefaultDir()
		if err != nil {
			return nil, err
		}
		dir = d
	}
	start := time.Now()
	db, err := annotate.Open(dir)
	if err != nil {
		return nil, err
	}
	log.Info("IP database loaded", "dir", dir, "version", db.Version(), "took", time.Since(start).Round(time.Millisecond))
	return db, nil
}

// collectorService is a running collector: HTTP server plus loader.
type collectorService struct {
	c       *collector.Collector
	http    *httpx.Server
	cancel  context.CancelFunc
	loaderC chan struct{}
	log     *slog.Logger
}

func startCollector(listen string, cfg collector.Config) (*collectorService, error) {
	c, err := collector.New(cfg)
	if err != nil {
		return nil, err
	}
	srv, err := httpx.Listen(listen, c.Handler(), cfg.Logger)
	if err != nil {
		c.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &collectorService{c: c, http: srv, cancel: cancel, loaderC: make(chan struct{}), log: cfg.Logger}
	go func() {
		c.Run(ctx)
		close(s.loaderC)
	}()
	return s, nil
}

// stop stops accepting, lets in-flight requests finish (their records are
// spooled), then loads what it can within drain; the rest stays in the spool.
func (s *collectorService) stop(drain time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		s.log.Warn("collector: HTTP shutdown", "err", err)
	}
	s.cancel()
	<-s.loaderC
	dctx, dcancel := context.WithTimeout(context.Background(), drain)
	defer dcancel()
	s.c.Drain(dctx)
	b, n, _ := s.c.SpoolStats()
	if n > 0 {
		s.log.Info("collector: records kept in the spool for the next start", "records", n, "bytes", b)
	}
	if err := s.c.Close(); err != nil {
		s.log.Warn("collector: close", "err", err)
	}
}

func cmdVersion(args []string) error {
	fs := newFlagSet("version", "Print the version.")
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Println(prog, version.Version)
	return nil
}

func cmdMigrate(args []string) error {
	fs := newFlagSet("migrate", "Apply the embedded ClickHouse migrations that are not applied yet, then exit.")
	ch := addClickHouseFlags(fs)
	lf := addLogFlags(fs, "text")
	log, err := parseLogged(fs, args, lf)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := chdb.Setup(ctx, ch.options(), log)
	if err != nil {
		return err
	}
	defer conn.Close()
	done, err := chdb.Applied(ctx, conn)
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d migrations applied on %s/%s\n", prog, len(done), ch.addr, *ch.db)
	return nil
}
