// Command ingest measures the collector's end-to-end ingest rate against
// the raw ceiling of the same ClickHouse, and the cost of the signed path
// (records signed by an enrolled test server, verified at load) against the
// unsigned one, side by side in one run:
//
//   - raw ceiling: clickhouse-client inserting the same rows from a
//     TabSeparated file into the same table layout;
//   - end to end: HTTP NDJSON bodies posted by concurrent clients to a real
//     collector (validation, fsync'ed spool, verification, annotation,
//     batch insert), timed until every row is visible in ClickHouse;
//   - the same records, once unsigned (the agents' copies) and once signed
//     (the servers' copies), in interleaved rounds: each round runs both
//     passes, in alternating order (AB, BA, AB, ...) or in a random order
//     (-order random), each into a fresh database with a fresh collector;
//     the first -warmup rounds are discarded; the table reports every kept
//     round, the median of the per-round ratios and their spread.
//
// Both passes post every body with the same X-Forwarded-For (the collector
// trusts its proxy here), one real ISP address per body, so that the
// unsigned copies are annotated from a real address as the signed ones are
// from the address their server observed: the two passes do the same
// lookups and differ only by the signature.
//
// It prints a table and exits 1 when a goal is missed.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/neubot/neubot/collector"
	"github.com/neubot/neubot/collector/annotate"
	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/internal/localch"
	"github.com/neubot/neubot/internal/stats"
	"github.com/neubot/neubot/proto/ingest"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

func main() {
	records := flag.Int("records", 100_000, "records per pass")
	perBody := flag.Int("per-body", 1000, "records per HTTP body")
	clients := flag.Int("clients", 4, "concurrent HTTP clients")
	target := flag.Float64("target", 0.25, "minimum ratio of end-to-end (unsigned, median) to raw ceiling")
	maxCost := flag.Float64("max-signed-cost", 1.20, "maximum median ratio of signed to unsigned end-to-end time")
	rounds := flag.Int("rounds", 7, "rounds kept; each runs an unsigned and a signed pass")
	warmup := flag.Int("warmup", 1, "rounds run first and discarded (the machine's and ClickHouse's warm-up)")
	order := flag.String("order", "alternate", "order of the two passes in a round: alternate (AB, BA, AB, ...) or random")
	seed := flag.Uint64("seed", 1, "seed of -order random")
	keep := flag.Bool("keep", false, "keep the temporary directory")
	cpuprofile := flag.String("cpuprofile", "", "write CPU profiles of the last round's passes to FILE.unsigned and FILE.signed")
	flag.Parse()
	if *order != "alternate" && *order != "random" {
		fmt.Fprintln(os.Stderr, "bench/ingest: -order must be alternate or random")
		os.Exit(2)
	}
	cfg := config{n: *records, perBody: *perBody, clients: *clients, target: *target, maxCost: *maxCost,
		rounds: max(*rounds, 1), warmup: max(*warmup, 0), order: *order, seed: *seed, keep: *keep, profile: *cpuprofile}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench/ingest:", err)
		os.Exit(1)
	}
}

type config struct {
	n, perBody, clients int
	target, maxCost     float64
	rounds, warmup      int
	order               string
	seed                uint64
	keep                bool
	profile             string
}

// addresses of real ISPs' prefixes, so that annotation does real lookups.
var addresses = []string{"151.5.10.20", "79.20.1.7", "93.34.200.1", "2.224.10.9", "8.8.8.8", "2001:b07:a3c::1", "2a01:e0a:1::5", "62.94.0.3"}

// pass is one end-to-end pass of a round.
type pass struct {
	round  int // 1-based, warm-up rounds included
	signed bool
	run1
}

func run(cfg config) error {
	n := cfg.n
	dir, err := os.MkdirTemp("", "neubot-bench-ingest-")
	if err != nil {
		return err
	}
	if !cfg.keep {
		defer os.RemoveAll(dir)
	}
	ctx := context.Background()
	ch, err := localch.Start(ctx, localch.Config{Dir: filepath.Join(dir, "clickhouse"), Database: "bench"})
	if err != nil {
		return err
	}
	defer ch.Stop()
	ipdbDir, err := annotate.DefaultDir()
	if err != nil {
		return err
	}
	ipdb, err := annotate.Open(ipdbDir)
	if err != nil {
		return err
	}

	fmt.Fprintf(os.Stderr, "generating %d records...\n", n)
	bodies, signedBodies, tsvPath, ndjsonBytes, err := generate(dir, n, cfg.perBody, ipdb)
	if err != nil {
		return err
	}

	// Raw ceiling.
	rawOpts := ch.Options()
	rawOpts.Database = "bench_raw"
	rawConn, err := chdb.Setup(ctx, rawOpts, nil)
	if err != nil {
		return err
	}
	defer rawConn.Close()
	test, _ := schemas.Lookup(schemas.SpeedtestName)
	client, err := exec.LookPath("clickhouse-client")
	if err != nil {
		return fmt.Errorf("clickhouse-client not found (run scripts/setup): %w", err)
	}
	host, port, _ := strings.Cut(ch.Addr(), ":")
	in, err := os.Open(tsvPath)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "raw ceiling: clickhouse-client < TSV...")
	rawStart := time.Now()
	// Blocks of 100,000 rows, as the collector batches at most 100,000:
	// one block of 1,000,000 rows of this width exceeds 4 GiB on 18.16.
	cmd := exec.Command(client, "--host", host, "--port", port, "--database", "bench_raw", "--max_insert_block_size", "100000",
		"--query", "INSERT INTO "+test.Table+" ("+strings.Join(test.TableColumns(), ", ")+") FORMAT TabSeparated")
	cmd.Stdin = in
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("clickhouse-client: %v: %s", err, out)
	}
	rawTime := time.Since(rawStart)
	in.Close()
	if got := count(ctx, rawConn, test.Table); got != uint64(n) {
		return fmt.Errorf("raw insert stored %d rows, want %d", got, n)
	}
	if err := rawConn.Exec(ctx, "DROP DATABASE bench_raw"); err != nil {
		return err
	}

	// Interleaved rounds of an unsigned and a signed pass.
	rng := rand.New(rand.NewPCG(cfg.seed, 2))
	total := cfg.warmup + cfg.rounds
	var passes []pass
	var version string
	for round := 1; round <= total; round++ {
		signedFirst := round%2 == 0
		if cfg.order == "random" {
			signedFirst = rng.IntN(2) == 1
		}
		for _, signed := range []bool{signedFirst, !signedFirst} {
			p := pass{round: round, signed: signed}
			b, enrolled, name := bodies, (*identity.AllowList)(nil), fmt.Sprintf("bench_r%d", round)
			if signed {
				b, enrolled, name = signedBodies, schemastest.Enrolled(), fmt.Sprintf("bench_signed_r%d", round)
			}
			prof := ""
			if cfg.profile != "" && round == total {
				prof = cfg.profile + map[bool]string{false: ".unsigned", true: ".signed"}[signed]
			}
			if p.run1, err = endToEnd(ctx, ch, ipdb, name, b, n, cfg.clients, enrolled, prof); err != nil {
				return err
			}
			want := uint64(0)
			if signed {
				want = uint64(n)
			}
			if p.final != uint64(n) || p.verified != want {
				return fmt.Errorf("round %d (signed %v): %d rows (FINAL), %d verified; want %d and %d", round, signed, p.final, p.verified, n, want)
			}
			if version == "" {
				version = serverVersion(ctx, p.conn)
			}
			// Drop the database: its background merges would otherwise
			// load the next pass.
			if err := p.conn.Exec(ctx, "DROP DATABASE "+name); err != nil {
				return err
			}
			p.conn.Close()
			fmt.Fprintf(os.Stderr, "round %d, signed %v: %.2f s\n", round, signed, p.e2e.Seconds())
			passes = append(passes, p)
		}
	}

	// The table.
	var plainT, signedT, ratios, plainAck, signedAck []float64
	fmt.Printf("\nIngest: %s speedtest records per pass, %.0f bytes of NDJSON each unsigned, %d per body, %d clients; ClickHouse %s on 127.0.0.1; %d CPUs\n",
		commas(n), float64(ndjsonBytes)/float64(n), cfg.perBody, cfg.clients, version, runtime.NumCPU())
	fmt.Printf("%d rounds kept after %d warm-up round(s) discarded; order %s (seed %d)\n\n", cfg.rounds, cfg.warmup, cfg.order, cfg.seed)
	fmt.Printf("| round | order | unsigned s | signed s | signed/unsigned | unsigned ack s | signed ack s |\n")
	fmt.Printf("|------:|:-----:|-----------:|---------:|----------------:|---------------:|-------------:|\n")
	for round := 1; round <= total; round++ {
		var u, s pass
		order := ""
		for _, p := range passes {
			if p.round != round {
				continue
			}
			if p.signed {
				s = p
				order += "S"
			} else {
				u = p
				order += "U"
			}
		}
		r := s.e2e.Seconds() / u.e2e.Seconds()
		label := strconv.Itoa(round)
		if round <= cfg.warmup {
			label += " (warm-up, discarded)"
		} else {
			plainT, signedT, ratios = append(plainT, u.e2e.Seconds()), append(signedT, s.e2e.Seconds()), append(ratios, r)
			plainAck, signedAck = append(plainAck, u.ack.Seconds()), append(signedAck, s.ack.Seconds())
		}
		fmt.Printf("| %s | %s | %.2f | %.2f | %.3f | %.2f | %.2f |\n", label, order, u.e2e.Seconds(), s.e2e.Seconds(), r, u.ack.Seconds(), s.ack.Seconds())
	}
	cost := stats.Median(ratios)
	fmt.Printf("\nsigned/unsigned end-to-end time over %d rounds: median %.3f, min %.3f, max %.3f, interquartile %.3f..%.3f (goal: median <= %.2f)\n",
		len(ratios), cost, slices.Min(ratios), slices.Max(ratios), stats.Quantile(ratios, 0.25), stats.Quantile(ratios, 0.75), cfg.maxCost)
	fmt.Printf("median times: unsigned %.2f s, signed %.2f s (ratio of medians %.3f); acknowledged: unsigned %.2f s, signed %.2f s\n",
		stats.Median(plainT), stats.Median(signedT), stats.Median(signedT)/stats.Median(plainT), stats.Median(plainAck), stats.Median(signedAck))

	rate := func(s float64) string { return commas(int(float64(n) / s)) }
	e2e := stats.Median(plainT)
	ratio := rawTime.Seconds() / e2e
	fmt.Printf("\n| %-58s | %8s | %10s | %6s |\n", "path (median of the kept rounds)", "seconds", "records/s", "ratio")
	fmt.Printf("|%s|%s|%s|%s|\n", strings.Repeat("-", 60), strings.Repeat("-", 10), strings.Repeat("-", 12), strings.Repeat("-", 8))
	fmt.Printf("| %-58s | %8.2f | %10s | %6.2f |\n", "raw ceiling: clickhouse-client < TabSeparated file", rawTime.Seconds(), rate(rawTime.Seconds()), 1.0)
	fmt.Printf("| %-58s | %8.2f | %10s | %6.2f |\n", "end to end: HTTP NDJSON -> fsync'ed spool -> ClickHouse", e2e, rate(e2e), ratio)
	fmt.Printf("| %-58s | %8.2f | %10s | %6.2f |\n", "end to end, every record signed by an enrolled server", stats.Median(signedT), rate(stats.Median(signedT)), rawTime.Seconds()/stats.Median(signedT))
	var missed []string
	if ratio < cfg.target {
		missed = append(missed, fmt.Sprintf("end-to-end/raw %.2f below %.2f", ratio, cfg.target))
	}
	if cost > cfg.maxCost {
		missed = append(missed, fmt.Sprintf("signed/unsigned %.3f above %.2f", cost, cfg.maxCost))
	}
	fmt.Printf("\ngoals: end-to-end/raw >= %.2f, signed/unsigned <= %.2f: ", cfg.target, cfg.maxCost)
	if len(missed) > 0 {
		fmt.Println("MISSED")
		return errors.New(strings.Join(missed, "; "))
	}
	fmt.Println("met")
	return nil
}

// run1 is one end-to-end run.
type run1 struct {
	conn            driver.Conn
	e2e, ack        time.Duration
	final, verified uint64
}

// endToEnd posts bodies to a new collector loading into database, with
// enrolled as its allow-list, and times them until every row is visible.
func endToEnd(ctx context.Context, ch *localch.Server, ipdb *annotate.DB, database string, bodies [][]byte, n, clients int, enrolled *identity.AllowList, profile string) (run1, error) {
	var r run1
	test, _ := schemas.Lookup(schemas.SpeedtestName)
	fmt.Fprintf(os.Stderr, "end to end into %s (signed: %v)...\n", database, enrolled != nil)
	opts := ch.Options()
	opts.Database = database
	spoolDir := filepath.Join(os.TempDir(), fmt.Sprintf("neubot-bench-spool-%s-%d", database, os.Getpid()))
	defer os.RemoveAll(spoolDir)
	col, err := collector.New(collector.Config{
		Enrolled:   enrolled,
		SpoolDir:   spoolDir,
		ClickHouse: opts,
		IPDB:       ipdb,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		// The bench is the collector's proxy: each body names the
		// address it comes from in X-Forwarded-For.
		TrustProxy: true,
		// Few addresses post everything here, as fast as they can: the
		// per-address bounds (spec/ingest.md) are for the Internet.
		MaxPerAddress: clients, AddressBytesPerSecond: 1 << 40, AddressBurstBytes: 1 << 40,
	})
	if err != nil {
		return r, err
	}
	srv, err := httpx.Listen("127.0.0.1:0", col.Handler(), slog.New(slog.DiscardHandler))
	if err != nil {
		return r, err
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	loaderDone := make(chan struct{})
	go func() { col.Run(lctx); close(loaderDone) }()
	conn, err := chdb.Setup(ctx, opts, nil) // makes the database and its tables
	if err != nil {
		return r, err
	}
	runtime.GC()

	var next atomic.Int64
	var postErr atomic.Value
	var wg sync.WaitGroup
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	if profile != "" {
		pf, err := os.Create(profile)
		if err != nil {
			return r, err
		}
		defer pf.Close()
		pprof.StartCPUProfile(pf)
		defer pprof.StopCPUProfile()
	}
	e2eStart := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(bodies) {
					return
				}
				req, err := http.NewRequest(http.MethodPost, srv.URL()+ingest.Path, bytes.NewReader(bodies[i]))
				if err != nil {
					postErr.Store(err)
					return
				}
				req.Header.Set("Content-Type", "application/x-ndjson")
				req.Header.Set("X-Forwarded-For", addresses[i%len(addresses)])
				resp, err := hc.Do(req)
				if err != nil {
					postErr.Store(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					postErr.Store(fmt.Errorf("status %d", resp.StatusCode))
					return
				}
			}
		}()
	}
	wg.Wait()
	ackTime := time.Since(e2eStart)
	if err, _ := postErr.Load().(error); err != nil {
		return r, err
	}
	for count(ctx, conn, test.Table) < uint64(n) {
		if time.Since(e2eStart) > 30*time.Minute {
			return r, fmt.Errorf("rows not visible after 30 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e2eTime := time.Since(e2eStart)
	cancel()
	<-loaderDone
	srv.Shutdown(ctx)
	col.Close()
	hc.CloseIdleConnections()
	r.conn, r.e2e, r.ack = conn, e2eTime, ackTime
	if err := conn.QueryRow(ctx, "SELECT count(), sum(verified) FROM "+test.Table+" FINAL").Scan(&r.final, &r.verified); err != nil {
		return r, err
	}
	return r, nil
}

func count(ctx context.Context, conn driver.Conn, table string) uint64 {
	var n uint64
	_ = conn.QueryRow(ctx, "SELECT count() FROM "+table).Scan(&n)
	return n
}

func serverVersion(ctx context.Context, conn driver.Conn) string {
	var v string
	_ = conn.QueryRow(ctx, "SELECT version()").Scan(&v)
	return v
}

// generate makes n records as NDJSON bodies of perBody records and writes
// the very rows the collector would insert (annotated) to a TSV file.
func generate(dir string, n, perBody int, ipdb *annotate.DB) (bodies, signedBodies [][]byte, tsvPath string, ndjsonBytes int, err error) {
	tsvPath = filepath.Join(dir, "rows.tsv")
	f, err := os.Create(tsvPath)
	if err != nil {
		return nil, nil, "", 0, err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(1, 1))
	start := time.Now().Add(-30 * 24 * time.Hour)
	now := time.Now()
	var body bytes.Buffer
	var lines [][]byte
	var row []any
	var line []byte
	for i := 0; i < n; i++ {
		addr := addresses[i%len(addresses)]
		rec := schemastest.Speedtest(rng, start.Add(time.Duration(i)*2*time.Second), addr, 1+rng.Float64()*100)
		l := schemastest.Line(rec)
		ndjsonBytes += len(l)
		body.Write(l)
		lines = append(lines, bytes.TrimSpace(l))
		if (i+1)%perBody == 0 || i == n-1 {
			bodies = append(bodies, bytes.Clone(body.Bytes()))
			body.Reset()
			signed, err := schemastest.ServerKey.SignRecords(lines)
			if err != nil {
				return nil, nil, "", 0, err
			}
			signedBodies = append(signedBodies, append(bytes.Join(signed, []byte{'\n'}), '\n'))
			lines = lines[:0]
		}
		ann, _ := ipdb.LookupString(addr)
		row = rec.Row(schemas.Annotation{ASN: ann.ASN, Org: ann.Org, Country: ann.Country, Prefix: ann.Prefix, DB: ipdb.Version(), IngestedAt: now}, row[:0])
		line = appendTSV(line[:0], row)
		w.Write(line)
	}
	return bodies, signedBodies, tsvPath, ndjsonBytes, w.Flush()
}

// appendTSV formats one row in ClickHouse's TabSeparated format.
func appendTSV(dst []byte, row []any) []byte {
	for i, v := range row {
		if i > 0 {
			dst = append(dst, '\t')
		}
		switch x := v.(type) {
		case string:
			dst = appendEscaped(dst, x)
		case uuid.UUID:
			dst = append(dst, x.String()...)
		case time.Time:
			dst = x.UTC().AppendFormat(dst, time.DateTime)
		case float64:
			dst = strconv.AppendFloat(dst, x, 'g', -1, 64)
		case *float64:
			if x == nil {
				dst = append(dst, `\N`...)
			} else {
				dst = strconv.AppendFloat(dst, *x, 'g', -1, 64)
			}
		case *uint64:
			if x == nil {
				dst = append(dst, `\N`...)
			} else {
				dst = strconv.AppendUint(dst, *x, 10)
			}
		case uint8:
			dst = strconv.AppendUint(dst, uint64(x), 10)
		case uint16:
			dst = strconv.AppendUint(dst, uint64(x), 10)
		case uint32:
			dst = strconv.AppendUint(dst, uint64(x), 10)
		case uint64:
			dst = strconv.AppendUint(dst, x, 10)
		case []float64:
			dst = append(dst, '[')
			for j, f := range x {
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = strconv.AppendFloat(dst, f, 'g', -1, 64)
			}
			dst = append(dst, ']')
		case []uint64:
			dst = append(dst, '[')
			for j, u := range x {
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = strconv.AppendUint(dst, u, 10)
			}
			dst = append(dst, ']')
		default:
			panic(fmt.Sprintf("bench: no TSV format for %T", v))
		}
	}
	return append(dst, '\n')
}

func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\n':
			dst = append(dst, '\\', 'n')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func commas(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
