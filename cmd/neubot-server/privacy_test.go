package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/chromedp/chromedp"

	"github.com/neubot/neubot/internal/browsertest"
	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/localch"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/internal/looptest"
	"github.com/neubot/neubot/internal/process"
	"github.com/neubot/neubot/internal/webtest"
	"github.com/neubot/neubot/proto/publicapi"
	"github.com/neubot/neubot/publish/publishtest"
	"github.com/neubot/neubot/schemas"
)

// TestPrivacyScan is the privacy scan of spec/trust.md on the platform as
// a volunteer and a researcher meet it: `up --demo` (a simulated fleet over
// the last days), plus real tests of every kind run by real agents against
// its test server — speedtest methodologies 1 and 2, ndt7, ping, replay,
// BitTorrent with flows that fail (the kernel aborts some of the test
// server's flow connections while the test runs), and a speedtest cut by
// the network (an agent's failure record). Then every published output is
// read: the dumps of today's real tests and of the demo's days (Parquet,
// CSV.gz, manifests, index), every API answer for those days, and the
// dashboards rendered in Chromium. None may hold an IP address (but the
// /24 and /48 prefix column), a clear agent_id or an error's free text.
func TestPrivacyScan(t *testing.T) {
	bin, agentBin := buildServer(t), buildAgent(t)
	data := t.TempDir()
	port := func() string {
		p, err := localch.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("127.0.0.1:%d", p)
	}
	btAddr, neutralAddr := port(), port()
	cmd := exec.Command(bin, "up", "--data", data, "--collector", port(), "--testserver", port(), "--agent", port(),
		"--publish", port(), "--bittorrent", btAddr, "--neutral", neutralAddr, "--agent-peer-listen", "",
		"--capacity", "8", "--demo", "--demo-agents", "30", "--demo-days", "2")
	stdout, _ := cmd.StdoutPipe()
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer process.Stop(cmd, os.Interrupt, 30*time.Second)
	urls := map[string]string{}
	seeded := make(chan struct{})
	var seededOnce sync.Once
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 {
			urls[f[0]] = f[1]
		}
		if strings.Contains(sc.Text(), "demo:") {
			seededOnce.Do(func() { close(seeded) })
		}
		if strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
			break
		}
	}
	col, ts, pub := urls["collector"], urls["testserver"], strings.TrimSuffix(urls["publish"], "/")
	if col == "" || ts == "" || pub == "" || urls["clickhouse"] == "" {
		t.Fatalf("up printed %v; stderr:\n%s", urls, stderr.String())
	}
	go func() {
		for sc.Scan() {
			if strings.Contains(sc.Text(), "demo:") {
				seededOnce.Do(func() { close(seeded) })
			}
		}
	}()
	select {
	case <-seeded:
	case <-time.After(90 * time.Second):
		t.Fatalf("the demo was not seeded within 90 s; stderr:\n%s", tail(stderr.String(), 3000))
	}
	conn := localchtest.Open(t, chdb.Options{Addr: strings.TrimPrefix(urls["clickhouse"], "clickhouse://")})

	// Real tests, each by an agent of its own (its own agent_id).
	agent := func(dir, server string, tests string) (string, error) {
		args := []string{"agent", "--once", "--state-dir", filepath.Join(data, "agents", dir), "--consent", "accept",
			"--collector", col, "--public-api", "", "--peer-listen", "", "--tests", tests, "--log-format", "text"}
		if server != "" {
			args = append(args, "--server", server)
		}
		out, err := exec.Command(agentBin, args...).CombinedOutput()
		return string(out), err
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for _, test := range []string{"speedtest", "ndt7", "ping", "replay"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := agent(test, "", test); err != nil || !strings.Contains(out, "test done") {
				errs <- fmt.Errorf("neubot agent --once --tests %s: %v\n%s", test, err, tail(out, 3000))
			}
		}()
	}
	wg.Add(1)
	go func() { // methodology 1: only the server's signed copy is uploaded
		defer wg.Done()
		out, err := exec.Command(agentBin, "run", "speedtest", "--method", "1", "--server", ts, "--json").CombinedOutput()
		if err != nil {
			errs <- fmt.Errorf("neubot run speedtest --method 1: %v\n%s", err, tail(string(out), 3000))
		}
	}()
	wg.Add(1)
	go func() { // a speedtest cut by the network, then a test whose run uploads the failure record
		defer wg.Done()
		relay := cutRelay(t, strings.TrimPrefix(ts, "http://"), 4<<20)
		if out, err := agent("cut", "http://"+relay, "speedtest"); err == nil {
			errs <- fmt.Errorf("the speedtest through a relay that cuts it after 4 MiB succeeded:\n%s", tail(out, 3000))
			return
		}
		if out, err := agent("cut", "", "ping"); err != nil || !strings.Contains(out, "test done") {
			errs <- fmt.Errorf("neubot agent --once --tests ping (after the cut test): %v\n%s", err, tail(out, 3000))
		}
	}()
	wg.Wait()
	// BitTorrent alone, and some of its flows cut: the kernel aborts the
	// test server's connections on its BitTorrent and neutral ports (ss
	// -K, a reset to the agent) three times while the flows run.
	btDone := make(chan struct{})
	var btOut string
	var btErr error
	go func() { btOut, btErr = agent("bittorrent", "", "bittorrent"); close(btDone) }()
	_, btPort, _ := net.SplitHostPort(btAddr)
	_, neutralPort, _ := net.SplitHostPort(neutralAddr)
	cuts := 0
	// Cut while the agent's test runs (its flows start after the
	// negotiation, and last about a second each).
	agentRuns := func() bool {
		select {
		case <-btDone:
			return false
		default:
			return true
		}
	}
	for ; cuts < 3 && agentRuns(); time.Sleep(300 * time.Millisecond) {
		out, err := exec.Command("ss", "-K", "-H", "-t", "(", "sport", "=", ":"+btPort, "or", "dport", "=", ":"+btPort,
			"or", "sport", "=", ":"+neutralPort, "or", "dport", "=", ":"+neutralPort, ")").Output()
		if err != nil {
			t.Fatalf("ss -K (cutting BitTorrent flows): %v\n%s", err, out)
		}
		if strings.Contains(string(out), ":"+btPort) || strings.Contains(string(out), ":"+neutralPort) {
			cuts++
			t.Logf("flow cut by ss -K:\n%s", strings.TrimSpace(string(out)))
		}
	}
	<-btDone
	if btErr != nil || !strings.Contains(btOut, "test done") {
		errs <- fmt.Errorf("neubot agent --once --tests bittorrent: %v\n%s", btErr, tail(btOut, 3000))
	}
	defer func() {
		if t.Failed() {
			var n, verified uint64
			var errs string
			err := conn.QueryRow(context.Background(), `SELECT count(), sum(verified), arrayStringConcat(arrayMap(x -> arrayStringConcat(x, ','), groupArray(flow_error)), ' | ')
				FROM bittorrent FINAL WHERE synthetic = 0`).Scan(&n, &verified, &errs)
			t.Logf("BitTorrent rows: %d, verified %d, flow errors %s (%v); the agent said:\n%s", n, verified, errs, err, tail(btOut, 2000))
		}
	}()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Every kind is in ClickHouse: verified rows of each test, both
	// methodologies, failed BitTorrent flows, and a failure record.
	today := time.Now().UTC().Format(time.DateOnly)
	for what, q := range map[string]string{
		"verified speedtest v1":                  "SELECT count() FROM speedtest FINAL WHERE verified = 1 AND test_version = '" + schemas.SpeedtestVersion1 + "' AND synthetic = 0",
		"verified speedtest v2":                  "SELECT count() FROM speedtest FINAL WHERE verified = 1 AND test_version = '" + schemas.SpeedtestVersion + "' AND synthetic = 0",
		"speedtest failure record":               "SELECT count() FROM speedtest FINAL WHERE failure != '' AND synthetic = 0",
		"verified ndt7":                          "SELECT count() FROM ndt7 FINAL WHERE verified = 1 AND synthetic = 0",
		"verified ping":                          "SELECT count() FROM ping FINAL WHERE verified = 1 AND synthetic = 0",
		"verified replay":                        "SELECT count() FROM replay FINAL WHERE verified = 1 AND synthetic = 0",
		"verified bittorrent with a failed flow": "SELECT count() FROM bittorrent FINAL WHERE verified = 1 AND synthetic = 0 AND arrayExists(x -> x != '', flow_error)",
	} {
		waitRows(t, conn, what, 30*time.Second, positive, q)
	}
	var agentIDs []string
	for _, test := range schemas.Tests() {
		agentIDs = append(agentIDs, localchtest.Strings(t, conn, "SELECT DISTINCT agent_id FROM "+test.Table)...)
	}
	if len(agentIDs) < 30 {
		t.Fatalf("%d agent IDs in ClickHouse, want the demo's 30 and the real agents'", len(agentIDs))
	}

	// The dumps: today's real tests (publish export) and the demo's days
	// (up's own export of the simulated data).
	realDir := filepath.Join(data, "export")
	out, err := exec.Command(bin, "publish", "export", "--from", today, "--clickhouse", strings.TrimPrefix(urls["clickhouse"], "clickhouse://"),
		"--datasets", realDir, "--key-file", filepath.Join(data, "collector.key")).CombinedOutput()
	if err != nil {
		t.Fatalf("publish export: %v\n%s", err, out)
	}
	// A researcher checks a downloaded day against the collector's key
	// (spec/trust.md, "Signed dumps"), and a changed file fails.
	btDir := filepath.Join(realDir, "bittorrent", today[:4], today[5:7], today[8:])
	if v, err := exec.Command(bin, "verify", "--collector", col, btDir).CombinedOutput(); err != nil || !strings.Contains(string(v), "verified: bittorrent") {
		t.Errorf("neubot-server verify of today's BitTorrent dump: %v\n%s", err, v)
	}
	csvPath := filepath.Join(btDir, "bittorrent-"+today+".csv.gz")
	csv, _ := os.ReadFile(csvPath)
	csv[len(csv)/2] ^= 0x20
	os.WriteFile(csvPath, csv, 0o644)
	if v, err := exec.Command(bin, "verify", "--collector", col, btDir).CombinedOutput(); err == nil || !strings.Contains(string(v), "NOT VERIFIED") {
		t.Errorf("neubot-server verify of a changed dump: %v\n%s", err, v)
	}
	csv[len(csv)/2] ^= 0x20
	os.WriteFile(csvPath, csv, 0o644)
	synDir := filepath.Join(data, "datasets-synthetic")
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(synDir, "index.json")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no export of the demo's days in %s after 60 s", synDir)
		}
	}
	scanned := map[string]int{}
	for _, dir := range []string{realDir, synDir} {
		files, problems, err := publishtest.ScanTree(dir, agentIDs)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Error(p)
		}
		scanned["dump files"] += files
	}
	for _, test := range []string{"speedtest", "ndt7", "ping", "replay", "bittorrent"} {
		if _, err := os.Stat(filepath.Join(realDir, test, today[:4], today[5:7], today[8:], test+"-"+today+".parquet")); err != nil {
			t.Errorf("no real dump of %s today: %v\n%s", test, err, out)
		}
	}

	// Every API answer, for the demo's days and today.
	from := time.Now().UTC().AddDate(0, 0, -3).Format(time.DateOnly)
	get := func(path string) []byte {
		code, b := webtest.Get(t, pub+path)
		if code != 200 {
			t.Errorf("GET %s: %d %.300s", path, code, b)
		}
		return b
	}
	var isps struct {
		ISPs []struct {
			ASN string `json:"asn"`
		} `json:"isps"`
	}
	// The analytics run every minute: the demo's ISPs are listed after.
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		if err := json.Unmarshal(get(publicapi.ISPsPath+"?synthetic=1"), &isps); err != nil {
			t.Fatalf("GET %s?synthetic=1: %v", publicapi.ISPsPath, err)
		}
		if len(isps.ISPs) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s?synthetic=1 lists no ISP 2 minutes after the demo was seeded", publicapi.ISPsPath)
		}
	}
	asn := isps.ISPs[0].ASN
	period := "from=" + from + "&to=" + today
	paths := []string{publicapi.ISPsPath, publicapi.ISPsPath + "?q=" + asn, publicapi.DatasetsPath, publicapi.OpenAPIPath,
		publicapi.TablePath + "?" + period, publicapi.VerdictsPath + "?asn=" + asn + "&" + period,
		"/", "/isp/" + asn, "/data", "/datasets-synthetic/index.json"}
	for _, test := range schemas.Tests() {
		for _, q := range []string{"test=" + test.Name + "&" + period + "&limit=1000", "test=" + test.Name + "&" + period + "&limit=1000&format=csv"} {
			paths = append(paths, publicapi.MeasurementsPath+"?"+q)
		}
	}
	for _, scope := range []string{"scope=all", "scope=asn&key=" + asn} {
		for _, p := range []string{publicapi.DistributionsPath, publicapi.HistogramPath, publicapi.HourlyPath} {
			paths = append(paths, p+"?"+scope+"&"+period)
		}
	}
	for _, p := range paths {
		sep := "?"
		if strings.Contains(p, "?") {
			sep = "&"
		}
		// The real data, and the demo's (synthetic=1).
		for _, p := range []string{p, p + sep + "synthetic=1"} {
			for _, pr := range publishtest.Scan(get(p), agentIDs) {
				t.Errorf("GET %s holds %s", p, pr)
			}
			scanned["API answers and pages"]++
		}
	}

	// The dashboards as a browser draws them.
	b := browsertest.Start(t, 90*time.Second)
	for _, page := range []struct{ path, drawn string }{
		{"/?synthetic=1", `!!(window.neubotCharts && window.neubotCharts.overview)`},
		{"/isp/" + asn + "?synthetic=1", `!!(window.neubotCharts && window.neubotCharts.daily)`},
		{"/data", `document.readyState === "complete"`},
	} {
		var drawn bool
		var html string
		b.Step("open "+page.path, chromedp.Navigate(pub+page.path), browsertest.Poll(page.drawn, &drawn),
			chromedp.Evaluate(`document.documentElement.outerHTML + "\n" + document.body.innerText`, &html))
		for _, pr := range publishtest.Scan([]byte(html), agentIDs) {
			t.Errorf("the page %s, drawn, holds %s", page.path, pr)
		}
		scanned["dashboard pages drawn"]++
	}
	t.Logf("scanned %v for addresses, %d clear agent IDs and error text", scanned, len(agentIDs))
}

// waitRows polls q, which selects one row of UInt64 values (counts),
// every 100 ms until done holds of them; the test fails after within.
func waitRows(t *testing.T, conn driver.Conn, what string, within time.Duration, done func(n ...uint64) bool, q string, args ...any) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		_, rows := localchtest.Rows(t, conn, q, args...)
		var n []uint64
		for _, v := range rows[0] {
			u, ok := v.(uint64)
			if !ok {
				t.Fatalf("%s: a %T, want UInt64 values", q, v)
			}
			n = append(n, u)
		}
		if done(n...) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in ClickHouse after %v (%s %v gives %v)", what, within, q, args, n)
		}
	}
}

// positive and equal are conditions of waitRows.
func positive(n ...uint64) bool { return n[0] > 0 }

func equal(want ...uint64) func(n ...uint64) bool {
	return func(n ...uint64) bool { return slices.Equal(n, want) }
}

// cutRelay relays TCP connections to target and cuts each one (a reset)
// once it has carried more than cut bytes from the server.
func cutRelay(t *testing.T, target string, cut int64) string {
	ln := looptest.Listen(t)
	looptest.ServeEach(ln, func(c net.Conn) {
		s, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			return
		}
		go func() { io.Copy(s, c); s.(*net.TCPConn).CloseWrite() }()
		io.CopyN(c, s, cut)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
		s.Close()
	})
	return ln.Addr().String()
}
