// Command ingest measures the collector's end-to-end ingest rate against
// the raw ceiling of the same ClickHouse, side by side in one run:
//
//   - raw ceiling: clickhouse-client inserting the same rows from a
//     TabSeparated file into the same table layout;
//   - end to end: HTTP NDJSON bodies posted by concurrent clients to a real
//     collector (validation, fsync'ed spool, annotation, batch insert), timed
//     until every row is visible in ClickHouse.
//
// It prints a table and exits 1 when the ratio misses the target.
package main

import (
	"bufio"
	"bytes"
	"context"
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
	"github.com/neubot/neubot/internal/localch"
	"github.com/neubot/neubot/proto/ingest"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

func main() {
	records := flag.Int("records", 1_000_000, "records to ingest")
	perBody := flag.Int("per-body", 1000, "records per HTTP body")
	clients := flag.Int("clients", 4, "concurrent HTTP clients")
	target := flag.Float64("target", 0.25, "minimum ratio of end-to-end to raw ceiling")
	keep := flag.Bool("keep", false, "keep the temporary directory")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the end-to-end phase to this file")
	flag.Parse()
	profile = *cpuprofile
	if err := run(*records, *perBody, *clients, *target, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench/ingest:", err)
		os.Exit(1)
	}
}

var profile string

// addresses of real ISPs' prefixes, so that annotation does real lookups.
var addresses = []string{"151.5.10.20", "79.20.1.7", "93.34.200.1", "2.224.10.9", "8.8.8.8", "2001:b07:a3c::1", "2a01:e0a:1::5", "62.94.0.3"}

func run(n, perBody, clients int, target float64, keep bool) error {
	dir, err := os.MkdirTemp("", "neubot-bench-ingest-")
	if err != nil {
		return err
	}
	if !keep {
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
	bodies, tsvPath, ndjsonBytes, err := generate(dir, n, perBody, ipdb)
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

	// End to end.
	opts := ch.Options()
	col, err := collector.New(collector.Config{
		SpoolDir:   filepath.Join(dir, "spool"),
		ClickHouse: opts,
		IPDB:       ipdb,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	srv, err := httpx.Listen("127.0.0.1:0", col.Handler(), slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	loaderDone := make(chan struct{})
	go func() { col.Run(lctx); close(loaderDone) }()
	conn, err := chdb.Open(ctx, opts)
	if err != nil {
		return err
	}
	defer conn.Close()

	fmt.Fprintf(os.Stderr, "end to end: %d clients posting %d bodies...\n", clients, len(bodies))
	var next atomic.Int64
	var postErr atomic.Value
	var wg sync.WaitGroup
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	if profile != "" {
		pf, err := os.Create(profile)
		if err != nil {
			return err
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
				resp, err := hc.Post(srv.URL()+ingest.Path, "application/x-ndjson", bytes.NewReader(bodies[i]))
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
		return err
	}
	for count(ctx, conn, test.Table) < uint64(n) {
		if time.Since(e2eStart) > 30*time.Minute {
			return fmt.Errorf("rows not visible after 30 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e2eTime := time.Since(e2eStart)
	cancel()
	<-loaderDone
	srv.Shutdown(ctx)
	col.Close()
	var final uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+test.Table+" FINAL").Scan(&final); err != nil {
		return err
	}

	ratio := rawTime.Seconds() / e2eTime.Seconds()
	rate := func(d time.Duration) string { return commas(int(float64(n) / d.Seconds())) }
	fmt.Printf("\nIngest: %s speedtest records, %.0f bytes of NDJSON each, %d per body, %d clients; ClickHouse %s on 127.0.0.1; %d CPUs\n\n",
		commas(n), float64(ndjsonBytes)/float64(n), perBody, clients, serverVersion(ctx, conn), runtime.NumCPU())
	fmt.Printf("| %-58s | %8s | %10s | %6s |\n", "path", "seconds", "records/s", "ratio")
	fmt.Printf("|%s|%s|%s|%s|\n", strings.Repeat("-", 60), strings.Repeat("-", 10), strings.Repeat("-", 12), strings.Repeat("-", 8))
	fmt.Printf("| %-58s | %8.2f | %10s | %6.2f |\n", "raw ceiling: clickhouse-client < TabSeparated file", rawTime.Seconds(), rate(rawTime), 1.0)
	fmt.Printf("| %-58s | %8.2f | %10s | %6.2f |\n", "end to end: HTTP NDJSON -> fsync'ed spool -> ClickHouse", e2eTime.Seconds(), rate(e2eTime), ratio)
	fmt.Printf("| %-58s | %8.2f | %10s | %6s |\n", "  of which: all bodies acknowledged (202)", ackTime.Seconds(), rate(ackTime), "")
	fmt.Printf("\nrows: raw %d, end to end %d (FINAL %d). target: ratio >= %.2f: ", n, count(ctx, conn, test.Table), final, target)
	if ratio < target || final != uint64(n) {
		fmt.Println("MISSED")
		return fmt.Errorf("ratio %.2f below target %.2f or rows lost", ratio, target)
	}
	fmt.Println("met")
	return nil
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
func generate(dir string, n, perBody int, ipdb *annotate.DB) (bodies [][]byte, tsvPath string, ndjsonBytes int, err error) {
	tsvPath = filepath.Join(dir, "rows.tsv")
	f, err := os.Create(tsvPath)
	if err != nil {
		return nil, "", 0, err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(1, 1))
	start := time.Now().Add(-30 * 24 * time.Hour)
	now := time.Now()
	var body bytes.Buffer
	var row []any
	var line []byte
	for i := 0; i < n; i++ {
		addr := addresses[i%len(addresses)]
		rec := schemastest.Speedtest(rng, start.Add(time.Duration(i)*2*time.Second), addr, 1+rng.Float64()*100)
		l := schemastest.Line(rec)
		ndjsonBytes += len(l)
		body.Write(l)
		if (i+1)%perBody == 0 || i == n-1 {
			bodies = append(bodies, bytes.Clone(body.Bytes()))
			body.Reset()
		}
		ann, _ := ipdb.LookupString(addr)
		row = rec.Row(schemas.Annotation{ASN: ann.ASN, Org: ann.Org, Country: ann.Country, Prefix: ann.Prefix, DB: ipdb.Version(), IngestedAt: now}, row[:0])
		line = appendTSV(line[:0], row)
		w.Write(line)
	}
	return bodies, tsvPath, ndjsonBytes, w.Flush()
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
			dst = x.UTC().AppendFormat(dst, "2006-01-02 15:04:05")
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
