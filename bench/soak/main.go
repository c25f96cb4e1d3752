// Command soak runs the whole platform (neubot-server up, on free ports and
// a data directory of its own) under a mix of load for -duration:
//
//   - well-behaved ingest: -clients test servers, each from a loopback
//     address of its own, forwarding signed, gzip'ed NDJSON bodies as
//     proto/ingest's Forwarder does, -rate records a second in all, on a
//     fixed schedule (open loop: a slow answer does not slow the offer);
//     every acknowledged (202) measurement_uid is kept, with the time from
//     the request's start to its acknowledgement;
//   - real agents: the neubot binary running speedtest, ndt7 and BitTorrent
//     tests in turn against the test server, which forwards its records;
//   - hostile traffic: slow bodies (headers, then a byte every 2 s), garbage
//     bodies and a gzip bomb, one address flooding the ingest with valid
//     records as fast as it can, and one /24 flooding the negotiation.
//
// Then it stops the load, waits until the spool drained, and compares the
// acknowledged uids with those in ClickHouse. It prints a table: records
// acknowledged and lost, acknowledgement latency (p50, p99, max) of the
// well-behaved clients, the answers each kind of traffic got, the agents'
// tests, and the peak RSS of each process. It exits 1 when an acknowledged
// record is missing, the p99 is 1 s or more, the well-behaved clients could
// not offer 98 % of -rate, or one of their records was not acknowledged.
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/internal/localch"
	"github.com/neubot/neubot/internal/metrics"
	"github.com/neubot/neubot/internal/process"
	"github.com/neubot/neubot/proto/ingest"
	spec "github.com/neubot/neubot/proto/speedtest"
	"github.com/neubot/neubot/schemas/schemastest"
)

func main() {
	duration := flag.Duration("duration", 10*time.Minute, "how long the load runs")
	rate := flag.Int("rate", 1000, "records a second of the well-behaved clients, in all")
	clients := flag.Int("clients", 20, "well-behaved ingest clients: test servers forwarding signed records, one loopback address each")
	perBody := flag.Int("per-body", 25, "records per body of the well-behaved clients")
	agents := flag.Int("agents", 2, "real agents testing in a loop at once")
	slow := flag.Int("slow", 32, "slow-body connections held open at once")
	keep := flag.Bool("keep", false, "keep the temporary directory (binaries, data, logs)")
	binDir := flag.String("bin", "", "folder holding neubot-server and neubot already built (default: build them)")
	pprofAddr := flag.String("pprof", "", "have neubot-server up serve net/http/pprof here (e.g. 127.0.0.1:6060)")
	flag.Parse()
	if err := run(*duration, *rate, *clients, *perBody, *agents, *slow, *keep, *binDir, *pprofAddr); err != nil {
		fmt.Fprintln(os.Stderr, "bench/soak:", err)
		os.Exit(1)
	}
}

// clientFrom is an HTTP client whose connections come from a loopback
// address of its own, so that the collector sees distinct clients.
func clientFrom(ip string, timeout time.Duration) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4}}
}

type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) add(k string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[k]++
	c.mu.Unlock()
}

func (c *counts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var keys []string
	for k := range c.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, c.m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// acked is the set of acknowledged measurement_uids.
type acked struct {
	mu   sync.Mutex
	uids map[string]bool
}

func (a *acked) add(uids []string) {
	a.mu.Lock()
	for _, u := range uids {
		a.uids[u] = true
	}
	a.mu.Unlock()
}

func run(duration time.Duration, rate, nClients, perBody, nAgents, nSlow int, keep bool, binDir, pprofAddr string) error {
	dir, err := os.MkdirTemp("", "neubot-bench-soak-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	bin := binDir
	if bin == "" {
		bin = filepath.Join(dir, "bin")
		fmt.Fprintln(os.Stderr, "bench/soak: building neubot-server and neubot")
		build := exec.Command("go", "build", "-o", bin+"/", "./cmd/neubot-server", "./cmd/neubot")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build: %w", err)
		}
	}
	ports := map[string]int{}
	for _, k := range []string{"clickhouse", "collector", "testserver", "bittorrent", "neutral", "agent", "agent-peer", "publish"} {
		if ports[k], err = localch.FreePort(); err != nil {
			return err
		}
	}
	addr := func(k string) string { return "127.0.0.1:" + strconv.Itoa(ports[k]) }
	logf, err := os.Create(filepath.Join(dir, "up.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	up := exec.Command(filepath.Join(bin, "neubot-server"), "up", "--data", filepath.Join(dir, "data"),
		"--clickhouse-port", strconv.Itoa(ports["clickhouse"]), "--collector", addr("collector"), "--testserver", addr("testserver"),
		"--bittorrent", addr("bittorrent"), "--neutral", addr("neutral"), "--agent", addr("agent"), "--agent-peer-listen", addr("agent-peer"),
		"--publish", addr("publish"), "--log-level", "warn", "--pprof", pprofAddr)
	up.Stdout, up.Stderr = logf, logf
	if err := up.Start(); err != nil {
		return err
	}
	stopped := false
	stopUp := func() {
		if !stopped {
			stopped = true
			_ = process.Stop(up, os.Interrupt, 60*time.Second)
		}
	}
	defer stopUp()
	collectorURL := "http://" + addr("collector")
	tsURL := "http://" + addr("testserver")
	if err := waitHTTP(collectorURL+"/healthz", 3*time.Minute); err != nil {
		return fmt.Errorf("neubot-server up did not start (log in %s): %w", logf.Name(), err)
	}
	fmt.Fprintf(os.Stderr, "bench/soak: platform up (pid %d, data in %s); load for %s\n", up.Process.Pid, dir, duration)

	rss := newRSSWatch(up.Process.Pid)
	go rss.run()

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var wg sync.WaitGroup
	ack := &acked{uids: map[string]bool{}}
	var latMu sync.Mutex
	var lat []time.Duration
	good, flood, slowAns, garbage, negFlood := &counts{}, &counts{}, &counts{}, &counts{}, &counts{}
	agentRes := &counts{}
	var agentPeak atomic.Int64
	var wellRecords, floodRecords atomic.Int64

	// Well-behaved clients: test servers forwarding their agents' records,
	// as proto/ingest's Forwarder does (records signed in batches, the
	// request signed, gzip), each from a loopback address of its own. They
	// sign with the key of up's own test server, which up enrolled. Each
	// sends a body every interval whatever the answers take (open loop),
	// with at most two in flight (the collector's per-address limit): a
	// body that finds two in flight is counted as not sent.
	tsKey, err := identity.Load(filepath.Join(dir, "data", "testserver.key"))
	if err != nil {
		return fmt.Errorf("the enrolled test server's key: %w", err)
	}
	every := time.Duration(float64(time.Second) * float64(nClients*perBody) / float64(rate))
	var wellSent, wellBehind atomic.Int64
	for i := range nClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clientFrom(fmt.Sprintf("127.0.1.%d", i+1), 30*time.Second)
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			// Spread the clients' ticks over the interval.
			select {
			case <-ctx.Done():
				return
			case <-time.After(every * time.Duration(i) / time.Duration(nClients)):
			}
			t := time.NewTicker(every)
			defer t.Stop()
			var inflight sync.WaitGroup
			defer inflight.Wait()
			slots := make(chan struct{}, 2)
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				select {
				case slots <- struct{}{}:
				default:
					wellBehind.Add(int64(perBody))
					continue
				}
				body, uids, err := signedRecords(tsKey, rng, perBody)
				if err != nil {
					panic(err)
				}
				wellSent.Add(int64(perBody))
				inflight.Add(1)
				go func() {
					defer inflight.Done()
					defer func() { <-slots }()
					start := time.Now()
					code, err := postSigned(c, collectorURL, body, tsKey)
					el := time.Since(start)
					latMu.Lock()
					lat = append(lat, el)
					latMu.Unlock()
					tally(good, code, err, uids, ack, &wellRecords)
				}()
			}
		}()
	}

	// One address flooding valid records as fast as it can.
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clientFrom("127.0.4.1", 30*time.Second)
			rng := rand.New(rand.NewPCG(uint64(100+i), uint64(time.Now().UnixNano())))
			for ctx.Err() == nil {
				body, uids := records(rng, 50)
				code, err := post(c, collectorURL, body)
				tally(flood, code, err, uids, ack, &floodRecords)
			}
		}()
	}

	// Slow bodies: headers, then a byte every 2 s, from 127.0.2.x.
	for i := range nSlow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				slowBody(ctx, collectorURL, fmt.Sprintf("127.0.2.%d", i%250+1), slowAns)
			}
		}()
	}

	// Garbage and a gzip bomb, from 127.0.3.1.
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := clientFrom("127.0.3.1", 30*time.Second)
		bomb := gzipBomb(256 << 20)
		rng := rand.New(rand.NewPCG(7, 7))
		junk := make([]byte, 64<<10)
		for n := 0; ctx.Err() == nil; n++ {
			var code int
			var err error
			switch n % 10 {
			case 0:
				code, err = postWith(c, collectorURL, bomb, "gzip", nil)
			default:
				for k := range junk {
					junk[k] = byte(rng.UintN(256))
				}
				code, err = post(c, collectorURL, junk)
			}
			if err != nil {
				garbage.add("error")
			} else {
				garbage.add(strconv.Itoa(code))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	// One /24 flooding the negotiation, from 127.0.5.x.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ctx.Err() == nil; n++ {
			c := clientFrom(fmt.Sprintf("127.0.5.%d", n%250+1), 10*time.Second)
			resp, err := c.Post(tsURL+spec.NegotiatePath, "application/json", strings.NewReader(`{}`))
			if err != nil {
				negFlood.add("error")
			} else {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				negFlood.add(strconv.Itoa(resp.StatusCode))
			}
			c.CloseIdleConnections()
			time.Sleep(20 * time.Millisecond)
		}
	}()

	// Real agents: the neubot binary, tests in turn.
	tests := []string{"speedtest", "ndt7", "bittorrent"}
	for i := range nAgents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := i; ctx.Err() == nil; n++ {
				test := tests[n%len(tests)]
				cmd := exec.Command(filepath.Join(bin, "neubot"), "run", test, "--server", tsURL, "--json", "--timeout", "90s")
				out, err := cmd.CombinedOutput()
				if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss*1024 > agentPeak.Load() {
					agentPeak.Store(ru.Maxrss * 1024)
				}
				if err != nil {
					agentRes.add(test + " failed")
					if ctx.Err() == nil {
						fmt.Fprintf(os.Stderr, "bench/soak: neubot run %s: %v: %s\n", test, err, lastLine(out))
					}
					time.Sleep(time.Second)
					continue
				}
				agentRes.add(test + " ok")
			}
		}()
	}

	start := time.Now()
	tick := time.NewTicker(30 * time.Second)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				fmt.Fprintf(os.Stderr, "bench/soak: %s: %d well-behaved records acknowledged, %d flood\n", time.Since(start).Round(time.Second), wellRecords.Load(), floodRecords.Load())
			}
		}
	}()
	<-ctx.Done()
	loadTime := time.Since(start)
	tick.Stop()
	wg.Wait()

	// Wait for the spool to drain, then compare uid sets.
	fmt.Fprintln(os.Stderr, "bench/soak: load stopped; waiting for every acknowledged record in ClickHouse")
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr("clickhouse")}, Auth: clickhouse.Auth{Database: "neubot"}})
	if err != nil {
		return err
	}
	defer conn.Close()
	want := len(ack.uids)
	// The collector's spool drains (every acknowledged record loaded or
	// dead-lettered); only then are the sets compared.
	drainStart := time.Now()
	var left float64
	for {
		left, err = spoolRecords(collectorURL)
		if err == nil && left == 0 {
			break
		}
		if time.Since(drainStart) > 20*time.Minute {
			break
		}
		time.Sleep(2 * time.Second)
	}
	drain := time.Since(drainStart)
	stored, err := storedUIDs(conn)
	if err != nil {
		return err
	}
	var rows, uniq uint64
	if err := conn.QueryRow(context.Background(), "SELECT count(), uniqExact(measurement_uid) FROM speedtest WHERE "+agentsIn()).Scan(&rows, &uniq); err != nil {
		return err
	}
	lost := want - countIn(ack.uids, stored)
	phases, phaseErr := ingestPhases(collectorURL)
	peaks := rss.stop()
	stopUp()

	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	p99 := q(0.99)
	fmt.Printf("\nbench/soak: the whole platform (neubot-server up) under load for %s, %s (%d CPUs)\n\n", loadTime.Round(time.Second), time.Now().UTC().Format("2006-01-02"), runtime.NumCPU())
	fmt.Println("| | measured |")
	fmt.Println("|---|---|")
	fmt.Printf("| well-behaved ingest: signed, gzip'ed bodies of %d records from %d test servers (target %d records/s) | %d records sent (%.0f records/s), %d not sent (two bodies in flight); %d acknowledged (%.0f records/s); answers: %s |\n", perBody, nClients, rate, wellSent.Load(), float64(wellSent.Load())/loadTime.Seconds(), wellBehind.Load(), wellRecords.Load(), float64(wellRecords.Load())/loadTime.Seconds(), good)
	fmt.Printf("| acknowledgement latency, well-behaved (p50 / p99 / max of %d POSTs) | %s / %s / %s |\n", len(lat), q(0.5).Round(time.Millisecond), p99.Round(time.Millisecond), q(1).Round(time.Millisecond))
	if phaseErr != nil {
		fmt.Printf("| collector's own timing of acknowledged requests | not read: %v |\n", phaseErr)
	}
	for _, ph := range phases {
		fmt.Printf("| collector's own timing of acknowledged requests, phase %s (mean / p99 bucket of %d) | %s / ≤ %s |\n", ph.name, ph.count, ph.mean.Round(100*time.Microsecond), ph.p99)
	}
	fmt.Printf("| one address flooding valid records (4 connections, no pause) | %d records acknowledged; answers: %s |\n", floodRecords.Load(), flood)
	fmt.Printf("| slow bodies (%d connections, a byte every 2 s) | answers: %s |\n", nSlow, slowAns)
	fmt.Printf("| garbage bodies and a 256 MiB gzip bomb | answers: %s |\n", garbage)
	fmt.Printf("| one /24 flooding the negotiation | answers: %s |\n", negFlood)
	fmt.Printf("| real agents' tests (neubot run, %d at once) | %s |\n", nAgents, agentRes)
	fmt.Printf("| acknowledged records (uids) | %d |\n", want)
	fmt.Printf("| loader behind when the load stopped: time to drain the spool | %s (%.0f records left after it) |\n", drain.Round(time.Second), left)
	fmt.Printf("| of them missing from ClickHouse | %d |\n", lost)
	fmt.Printf("| rows stored for them / distinct uids | %d / %d |\n", rows, uniq)
	for _, p := range peaks {
		fmt.Printf("| peak RSS, %s | %.0f MiB |\n", p.name, float64(p.peak)/(1<<20))
	}
	fmt.Printf("| peak RSS, neubot run (largest agent process) | %.0f MiB |\n", float64(agentPeak.Load())/(1<<20))
	if lost > 0 {
		return fmt.Errorf("%d acknowledged records lost", lost)
	}
	if p99 >= time.Second {
		return fmt.Errorf("p99 of the acknowledgement %s, not under 1 s", p99)
	}
	if offered := float64(wellSent.Load()) / loadTime.Seconds(); offered < 0.98*float64(rate) {
		return fmt.Errorf("the well-behaved clients sent %.0f records/s, not the %d asked", offered, rate)
	}
	if n := wellSent.Load() - wellRecords.Load(); n > 0 {
		return fmt.Errorf("%d records of well-behaved clients were sent and not acknowledged (answers: %s)", n, good)
	}
	return nil
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// soakAgents are the agent_ids of the records the soak posts itself.
var soakAgents = func() []string {
	var out []string
	for i := range 16 {
		out = append(out, fmt.Sprintf("50a50a50-0000-4000-8000-%012d", i))
	}
	return out
}()

// agentsIn is the SQL condition "one of soakAgents".
func agentsIn() string {
	var parts []string
	for _, a := range soakAgents {
		parts = append(parts, "toUUID('"+a+"')")
	}
	return "agent_id IN (" + strings.Join(parts, ", ") + ")"
}

// signedRecords makes a gzip'ed body of n fresh speedtest records tested
// by the test server of key ("local", the one up enrolled), signed as its
// forwarder signs them, and their uids.
func signedRecords(key *identity.Key, rng *rand.Rand, n int) ([]byte, []string, error) {
	lines := make([][]byte, 0, n)
	uids := make([]string, 0, n)
	for range n {
		rec := schemastest.Speedtest(rng, time.Now().Add(-time.Duration(rng.IntN(3600))*time.Second), "151.5.10.20", 5+rng.Float64()*50)
		rec.AgentID = soakAgents[rng.IntN(len(soakAgents))]
		rec.Server.ID = "local"
		lines = append(lines, bytes.TrimSpace(schemastest.Line(rec)))
		uids = append(uids, rec.MeasurementUID)
	}
	signed, err := key.SignRecords(lines)
	if err != nil {
		return nil, nil, err
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	for _, l := range signed {
		zw.Write(l)
		zw.Write([]byte{'\n'})
	}
	if err := zw.Close(); err != nil {
		return nil, nil, err
	}
	return b.Bytes(), uids, nil
}

// postSigned posts a gzip'ed body with the request signed by key.
func postSigned(c *http.Client, url string, body []byte, key *identity.Key) (int, error) {
	return postWith(c, url, body, "gzip", key)
}

// records makes a body of n fresh speedtest records and their uids.
func records(rng *rand.Rand, n int) ([]byte, []string) {
	var b bytes.Buffer
	uids := make([]string, 0, n)
	for range n {
		rec := schemastest.Speedtest(rng, time.Now().Add(-time.Duration(rng.IntN(3600))*time.Second), "151.5.10.20", 5+rng.Float64()*50)
		rec.AgentID = soakAgents[rng.IntN(len(soakAgents))]
		b.Write(schemastest.Line(rec))
		if b.Len() > 0 && b.Bytes()[b.Len()-1] != '\n' {
			b.WriteByte('\n')
		}
		uids = append(uids, rec.MeasurementUID)
	}
	return b.Bytes(), uids
}

func post(c *http.Client, url string, body []byte) (int, error) {
	return postWith(c, url, body, "", nil)
}

// postWith posts body with the given Content-Encoding (none when empty),
// the request signed by key when not nil; it returns the answer's status.
func postWith(c *http.Client, url string, body []byte, encoding string, key *identity.Key) (int, error) {
	req, err := http.NewRequest(http.MethodPost, url+ingest.Path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", ingest.ContentType)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	if key != nil {
		key.SignRequest(req, nil, time.Now())
	}
	a, err := httpx.Fetch(c, req, 1<<20)
	if a == nil {
		return 0, err
	}
	return a.Status, nil
}

// slowBody sends the headers of a 100 kB body, then a byte every 2 s,
// until the collector answers or ctx ends.
func slowBody(ctx context.Context, url, from string, ans *counts) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		ans.add("dial error")
		time.Sleep(time.Second)
		return
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n", ingest.Path)
	answer := make(chan string, 1)
	go func() {
		var buf [64]byte
		n, err := io.ReadAtLeast(c, buf[:], 12)
		if err != nil {
			answer <- "closed"
			return
		}
		answer <- strings.Fields(string(buf[:n]))[1]
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-answer:
			ans.add(a)
			return
		case <-time.After(2 * time.Second):
			if _, err := c.Write([]byte{'{'}); err != nil {
				ans.add(<-answer)
				return
			}
		}
	}
}

// gzipBomb is n zero bytes, gzip'ed (about a thousandth of n).
func gzipBomb(n int) []byte {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	zero := make([]byte, 1<<20)
	for i := 0; i < n; i += len(zero) {
		zw.Write(zero)
	}
	zw.Close()
	return b.Bytes()
}

// spoolRecords reads the collector's neubot_collector_spool_records.
func spoolRecords(collectorURL string) (float64, error) {
	v, found, err := metrics.Scrape(collectorURL, "neubot_collector_spool_records")
	if err == nil && !found {
		err = errors.New("no neubot_collector_spool_records in /metrics")
	}
	return v, err
}

// phase is the collector's histogram of one phase of the acknowledged
// ingest requests (neubot_collector_ingest_phase_seconds).
type phase struct {
	name  string
	count uint64
	mean  time.Duration
	p99   time.Duration // upper bound of the bucket holding the 99th percentile
}

// ingestPhases reads the collector's phase histograms from /metrics.
func ingestPhases(collectorURL string) ([]phase, error) {
	resp, err := http.Get(collectorURL + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	const name = "neubot_collector_ingest_phase_seconds"
	type bucket struct {
		le float64
		n  float64
	}
	buckets := map[string][]bucket{}
	sums, counts := map[string]float64{}, map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		label := func(k string) string {
			_, rest, ok := strings.Cut(f[0], k+`="`)
			if !ok {
				return ""
			}
			val, _, _ := strings.Cut(rest, `"`)
			return val
		}
		ph := label("phase")
		switch {
		case strings.HasPrefix(f[0], name+"_bucket"):
			le, err := strconv.ParseFloat(label("le"), 64)
			if err != nil {
				le = math.Inf(1)
			}
			buckets[ph] = append(buckets[ph], bucket{le, v})
		case strings.HasPrefix(f[0], name+"_sum"):
			sums[ph] = v
		case strings.HasPrefix(f[0], name+"_count"):
			counts[ph] = v
		}
	}
	if len(counts) == 0 {
		return nil, errors.New("no " + name + " in /metrics")
	}
	var out []phase
	for _, ph := range []string{"read", "slot_wait", "spool", "total"} {
		n := counts[ph]
		if n == 0 {
			continue
		}
		p := phase{name: ph, count: uint64(n), mean: time.Duration(sums[ph] / n * float64(time.Second)), p99: -1}
		bs := buckets[ph]
		sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
		for _, bk := range bs {
			if bk.n >= 0.99*n {
				if math.IsInf(bk.le, 1) {
					p.p99 = time.Duration(math.MaxInt64)
				} else {
					p.p99 = time.Duration(bk.le * float64(time.Second))
				}
				break
			}
		}
		out = append(out, p)
	}
	return out, nil
}

func waitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New(resp.Status)
			}
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tally counts one post's answer in c, and the records it acknowledged in
// ack and n.
func tally(c *counts, code int, err error, uids []string, ack *acked, n *atomic.Int64) {
	if err != nil {
		c.add("error")
		return
	}
	c.add(strconv.Itoa(code))
	if code == http.StatusAccepted {
		ack.add(uids)
		n.Add(int64(len(uids)))
	}
}

func storedUIDs(conn clickhouse.Conn) (map[string]bool, error) {
	uids, err := chdb.Select(context.Background(), conn, func(rows driver.Rows, u *string) error { return rows.Scan(u) },
		"SELECT toString(measurement_uid) FROM speedtest WHERE "+agentsIn())
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, u := range uids {
		out[u] = true
	}
	return out, nil
}

func countIn(a, b map[string]bool) int {
	n := 0
	for u := range a {
		if b[u] {
			n++
		}
	}
	return n
}

// rssWatch samples the resident memory of neubot-server up and of its
// children (ClickHouse) and keeps each one's peak; it also reads the
// kernel's own high-water mark (VmHWM) at the end.
type rssWatch struct {
	root  int
	mu    sync.Mutex
	peaks map[int]*peak
	quit  chan struct{}
	done  chan struct{}
}

type peak struct {
	name string
	peak int64
}

func newRSSWatch(pid int) *rssWatch {
	return &rssWatch{root: pid, peaks: map[int]*peak{}, quit: make(chan struct{}), done: make(chan struct{})}
}

func (w *rssWatch) run() {
	defer close(w.done)
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		w.sample()
		select {
		case <-w.quit:
			return
		case <-t.C:
		}
	}
}

func (w *rssWatch) sample() {
	pids := append([]int{w.root}, children(w.root)...)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, pid := range pids {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		var name string
		var hwm int64
		for _, line := range strings.Split(string(st), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) >= 2 && f[0] == "Name:":
				name = f[1]
			case len(f) >= 2 && (f[0] == "VmHWM:" || f[0] == "VmRSS:"):
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				hwm = max(hwm, kb*1024)
			}
		}
		p := w.peaks[pid]
		if p == nil {
			p = &peak{name: fmt.Sprintf("%s (pid %d)", name, pid)}
			w.peaks[pid] = p
		}
		p.peak = max(p.peak, hwm)
	}
}

func (w *rssWatch) stop() []peak {
	close(w.quit)
	<-w.done
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []peak
	for _, p := range w.peaks {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// children lists the descendants of pid.
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at ')'.
		s := string(st)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[p] = pp
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}
