// Command publish measures the publishing side over a day of 10,000,000
// measurements, side by side in one run:
//
//   - the export of the day's dump (Parquet and CSV.gz, one pass) against
//     clickhouse-client writing the same rows (same query) as CSV, raw and
//     piped through gzip;
//   - the per-ISP distribution endpoint under load (wrk on loopback), with
//     the in-memory cache and without it.
//
// Rows are generated inside ClickHouse (bench/internal/benchrows); the
// distributions come from the analytics job (goodset "all").
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/bench/internal/benchrows"
	"github.com/neubot/neubot/collector/annotate"
	"github.com/neubot/neubot/publish"
	"github.com/neubot/neubot/schemas"
)

const day = "2026-11-20"

func main() {
	n := flag.Int("rows", 10_000_000, "measurements in the day")
	dur := flag.Duration("wrk-duration", 20*time.Second, "duration of each wrk run")
	ipdb := flag.String("ipdb", "", "folder of the @ip-location-db packages (default: where scripts/setup installs them)")
	flag.Parse()
	if err := run(*n, *dur, *ipdb); err != nil {
		fmt.Fprintln(os.Stderr, "bench/publish:", err)
		os.Exit(1)
	}
}

func run(n int, dur time.Duration, ipdbDir string) error {
	for _, tool := range []string{"wrk", "clickhouse-client", "gzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is needed: run scripts/setup", tool)
		}
	}
	ctx := context.Background()
	bs, err := benchrows.Start(ctx, "publish", 8<<30)
	if err != nil {
		return err
	}
	defer bs.Stop()
	ch, conn, dir := bs.CH, bs.Conn, bs.Dir
	if ipdbDir == "" {
		if ipdbDir, err = annotate.DefaultDir(); err != nil {
			return err
		}
	}
	db, err := annotate.Open(ipdbDir)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "generating %d measurements inside ClickHouse...\n", n)
	if err := conn.Exec(ctx, benchrows.SQL(n, day, false)); err != nil {
		return err
	}
	_ = conn.Exec(ctx, "OPTIMIZE TABLE speedtest FINAL")

	// 1. Export, ours.
	test, _ := schemas.Lookup(schemas.SpeedtestName)
	out := filepath.Join(dir, "datasets")
	fmt.Fprintln(os.Stderr, "export: Parquet + CSV.gz...")
	if prof := os.Getenv("BENCH_CPUPROFILE"); prof != "" {
		// A CPU profile of the export, to see where its time goes.
		f, err := os.Create(prof)
		if err != nil {
			return err
		}
		_ = pprof.StartCPUProfile(f)
	}
	t0 := time.Now()
	d, _ := time.Parse(time.DateOnly, day)
	m, err := publish.ExportDay(ctx, publish.ExportConfig{Conn: conn, Dir: out, ASNDB: db.Version(), ASNDBLicence: db.Licence()}, test, d)
	if err != nil {
		return err
	}
	ours := time.Since(t0).Seconds()
	pprof.StopCPUProfile()
	sizes := map[string]int64{}
	for _, f := range m.Files {
		sizes[f.Format] = f.Bytes
	}
	// 2. clickhouse-client, the same query (one thread, as the exporter
	// reads: rows in sorting-key order), CSV: raw, then gzip'ed.
	var cols []string
	for _, c := range m.Columns {
		cols = append(cols, c.Name)
	}
	q := fmt.Sprintf("SELECT %s FROM speedtest FINAL WHERE toDate(start_time) = toDate('%s') AND consent_can_publish = 1 AND synthetic = 0 FORMAT CSVWithNames",
		strings.Join(cols, ", "), day)
	host, port, _ := net.SplitHostPort(ch.Addr())
	client := fmt.Sprintf("clickhouse-client --host %s --port %s --database bench --max_threads 1 --query %q", host, port, q)
	fmt.Fprintln(os.Stderr, "clickhouse-client CSV...")
	rawSecs, rawSize, err := timeShell(client, filepath.Join(dir, "client.csv"))
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "clickhouse-client CSV | gzip...")
	gzSecs, gzSize, err := timeShell(client+" | gzip -6", filepath.Join(dir, "client.csv.gz"))
	if err != nil {
		return err
	}

	// 3. The analytics (goodset all), then the API under load.
	fmt.Fprintln(os.Stderr, "analytics (goodset all)...")
	ta := time.Now()
	job := &analytics.Job{Conn: conn, Goodsets: analytics.Goodsets[:1]}
	if err := job.RunDay(ctx, day); err != nil {
		return err
	}
	anSecs := time.Since(ta).Seconds()
	var asns []string
	rows, err := conn.Query(ctx, "SELECT DISTINCT key FROM analytics_distributions WHERE scope = 'asn' ORDER BY key")
	if err != nil {
		return err
	}
	for rows.Next() {
		var k string
		_ = rows.Scan(&k)
		asns = append(asns, k)
	}
	rows.Close()
	// Every request asks one of the ISPs and metrics, over the day and the
	// 30 days before it (a closed range: the answer is immutable).
	var paths []string
	for _, a := range asns {
		for _, mt := range []string{"download_mbps", "upload_mbps", "rtt_ms"} {
			paths = append(paths, fmt.Sprintf("/api/v1/distributions?scope=asn&key=%s&metric=%s&from=2026-10-21&to=%s", a, mt, day))
		}
	}
	// A wrk script that walks the paths; with a delay, each connection
	// pauses between requests, which paces the offered load.
	writeLua := func(name string, delayMS float64) (string, error) {
		var sb strings.Builder
		sb.WriteString("local paths = {")
		for _, p := range paths {
			sb.WriteString(strconv.Quote(p) + ",")
		}
		sb.WriteString("}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format(\"GET\", paths[(i % #paths) + 1])\nend\n")
		if delayMS > 0 {
			fmt.Fprintf(&sb, "delay = function()\n  return %.3f\nend\n", delayMS)
		}
		f := filepath.Join(dir, name)
		return f, os.WriteFile(f, []byte(sb.String()), 0o644)
	}
	const conns = 16
	var loads []wrkResult
	for _, mode := range []struct {
		name string
		ttl  time.Duration
	}{{"uncached (every request queries ClickHouse)", -1}, {"cached (in-memory, 1 min TTL)", time.Minute}} {
		api := publish.New(publish.Config{Conn: conn, IPDB: db, Rate: 1e9, Burst: 1 << 30, CacheTTL: mode.ttl})
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(l)
		base := "http://" + l.Addr().String()
		// Check once that it answers 200.
		resp, err := http.Get(base + paths[0])
		if err != nil || resp.StatusCode != 200 {
			return fmt.Errorf("API check: %v %v", err, resp)
		}
		resp.Body.Close()
		// 1. Saturated: every connection sends its next request as soon as
		// the previous answer arrives. 2. Half load: paced to half the
		// throughput just measured.
		var sat wrkResult
		for _, half := range []bool{false, true} {
			delay, label := 0.0, "saturated"
			if half {
				delay = 1000 * conns / (sat.rps / 2)
				label = fmt.Sprintf("half load (%.0f req/s offered)", sat.rps/2)
			}
			lua, err := writeLua(fmt.Sprintf("paths-%v.lua", half), delay)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "wrk: %s, %s...\n", mode.name, label)
			outb, err := exec.Command("wrk", "-t2", fmt.Sprintf("-c%d", conns), "-d"+dur.String(), "--latency", "-s", lua, base).CombinedOutput()
			if err != nil {
				srv.Close()
				return fmt.Errorf("wrk: %v\n%s", err, outb)
			}
			r := parseWrk(string(outb))
			r.name = mode.name + ", " + label
			if !half {
				sat = r
			}
			loads = append(loads, r)
		}
		srv.Close()
	}

	fmt.Printf("\nPublish: one day of %d measurements, ClickHouse 18.16 on 127.0.0.1, %d CPUs (ClickHouse, the exporter and wrk share them)\n\n", n, runtime.NumCPU())
	fmt.Println("| export of the day | seconds | rows/s | bytes/row | ratio of time to clickhouse-client CSV |")
	fmt.Println("|---|---|---|---|---|")
	rowsN := float64(m.Rows)
	fmt.Printf("| neubot: Parquet (zstd, typed, %d-row groups) + CSV.gz, one pass, sha256, fsync | %.1f | %.0f | Parquet %.1f, CSV.gz %.1f | %.2f |\n",
		publishRowGroup, ours, rowsN/ours, float64(sizes["parquet"])/rowsN, float64(sizes["csv.gz"])/rowsN, ours/rawSecs)
	fmt.Printf("| clickhouse-client, FORMAT CSVWithNames, same query | %.1f | %.0f | %.1f | 1.00 |\n", rawSecs, rowsN/rawSecs, float64(rawSize)/rowsN)
	fmt.Printf("| clickhouse-client CSV piped through gzip -6 | %.1f | %.0f | %.1f | %.2f |\n", gzSecs, rowsN/gzSecs, float64(gzSize)/rowsN, gzSecs/rawSecs)
	fmt.Printf("\nRows exported: %d. Analytics (goodset all) for the API: %.1f s. %d ISPs x 3 metrics, 31-day range.\n\n", m.Rows, anSecs, len(asns))
	fmt.Printf("| GET /api/v1/distributions (per ISP), wrk -t2 -c%d -d%s | p50 ms | p99 ms | requests/s | target p99 |\n", conns, dur)
	fmt.Println("|---|---|---|---|---|")
	for i, l := range loads {
		target := "< 500 ms"
		if i >= 2 {
			target = "< 20 ms"
		}
		fmt.Printf("| %s | %.2f | %.2f | %.0f | %s |\n", l.name, l.p50, l.p99, l.rps, target)
	}
	fmt.Printf("\np99 ratio cached/uncached: saturated %.3f, half load %.3f\n", loads[2].p99/loads[0].p99, loads[3].p99/loads[1].p99)
	return nil
}

// publishRowGroup is the exporter's row group size, for the table.
const publishRowGroup = 512 * 1024

// timeShell times cmd, its output written to file, and returns the
// seconds and the output's size; the file is removed.
func timeShell(cmd, file string) (float64, int64, error) {
	cmd += " > " + file
	defer os.Remove(file)
	t := time.Now()
	out, err := exec.Command("bash", "-o", "pipefail", "-c", cmd).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %v\n%s", cmd, err, out)
	}
	secs := time.Since(t).Seconds()
	fi, err := os.Stat(file)
	if err != nil {
		return 0, 0, err
	}
	return secs, fi.Size(), nil
}

type wrkResult struct {
	name          string
	p50, p99, rps float64
	errs          int
}

var (
	pctRE = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$`)
	rpsRE = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
)

func parseWrk(out string) wrkResult {
	var r wrkResult
	for _, m := range pctRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if m[1] == "50" {
			r.p50 = v
		} else {
			r.p99 = v
		}
	}
	if m := rpsRE.FindStringSubmatch(out); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	if strings.Contains(out, "Non-2xx") {
		r.errs = 1
		fmt.Fprintln(os.Stderr, out)
	}
	return r
}
