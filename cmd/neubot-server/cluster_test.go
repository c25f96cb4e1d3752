package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/analytics/simulate"
	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/internal/localch"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/internal/localcluster"
	"github.com/neubot/neubot/internal/webtest"
	"github.com/neubot/neubot/proto/ingest"
	"github.com/neubot/neubot/proto/publicapi"
	"github.com/neubot/neubot/publish"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

// TestCluster: a ClickHouse cluster of 2 shards × 2 replicas and one
// ZooKeeper on loopback ports; two collector processes (real code, real
// HTTP) migrate it at the same time and load it through the Distributed
// tables while one replica is killed with SIGKILL and started again.
// Afterwards every acknowledged measurement is stored exactly once (raw
// rows, not only FINAL), both replicas of each shard hold the same rows,
// copies of a measurement sent through the other collector collapse on
// their shard, and the analytics tables and the public API answer exactly
// what a single node loaded with the same records answers.
func TestCluster(t *testing.T) {
	t.Parallel() // waits more than it computes: see TestMain
	began := time.Now()
	dir := t.TempDir()
	bin := buildServer(t)
	ctx := context.Background()

	cl := localchtest.Cluster(t, ctx, localcluster.Config{Dir: filepath.Join(dir, "cluster"), Name: "neubot_test", Shards: 2, Replicas: 2})
	single, err := localch.Start(ctx, localch.Config{Dir: filepath.Join(dir, "single")})
	if err != nil {
		t.Fatal(err)
	}
	defer single.Stop()
	t.Logf("cluster and single node up in %s", time.Since(began).Round(time.Millisecond))

	// Collectors: A enters the cluster through shard 1 replica 1, B
	// through shard 2 replica 2; each knows every server to fall back on.
	// A third collector loads the single node.
	a := cl.Addrs() // s1r1 s1r2 s2r1 s2r2
	// One platform: the test server that signs the records is enrolled
	// with every collector, which share the pseudonym secret.
	enrolled := filepath.Join(dir, "enrolled.txt")
	if _, err := identity.Enroll(enrolled, schemastest.ServerKey.Public(), schemastest.ServerID); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "pseudonym.secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("5e", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	procs := map[string]*collectorProc{}
	urls := map[string]string{}
	for name, args := range map[string][]string{
		"A":      {"--clickhouse", strings.Join([]string{a[0], a[1], a[2], a[3]}, ","), "--clickhouse-cluster", cl.Name()},
		"B":      {"--clickhouse", strings.Join([]string{a[3], a[2], a[1], a[0]}, ","), "--clickhouse-cluster", cl.Name()},
		"single": {"--clickhouse", single.Addr()},
	} {
		port, _ := localch.FreePort()
		urls[name] = fmt.Sprintf("http://127.0.0.1:%d", port)
		logs, err := os.Create(filepath.Join(dir, "collector-"+name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		defer logs.Close()
		p := &collectorProc{t: t, bin: bin, logs: logs, args: append([]string{"collector",
			"--listen", fmt.Sprintf("127.0.0.1:%d", port),
			"--spool-dir", filepath.Join(dir, "spool-"+name),
			"--batch-max-age", "100ms", "--batch-max-records", "2000",
			"--enrolled", enrolled, "--pseudonym-secret-file", secret,
			// One address posts every agent's bodies, and retries each
			// while a replica is down: the abuse limits (collector's
			// TestPerAgentLimit and TestPerAddressLimits test them) would
			// refuse the retries with 429 when the machine is loaded.
			"--ingest-rate", "0", "--agent-rate", "0",
		}, args...)}
		p.start()
		procs[name] = p
	}
	defer func() {
		for name, p := range procs {
			if t.Failed() {
				b, _ := os.ReadFile(p.logs.Name())
				if len(b) > 6000 {
					b = b[len(b)-6000:]
				}
				t.Logf("collector %s log (tail):\n%s", name, b)
			}
			p.kill()
		}
	}()
	// A collector answers once it has read the IP database and listens
	// (seconds; longer on a loaded machine): wait while its process runs,
	// 5 minutes at most (a wedged start).
	wedged := time.After(5 * time.Minute)
	for name, u := range urls {
		for metric(u, "neubot_collector_spool_records") < 0 {
			select {
			case <-procs[name].exited:
				t.Fatalf("collector %s exited before it answered", name)
			case <-wedged:
				t.Fatalf("collector %s does not answer after 5 minutes", name)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}

	// The records: a simulated fleet (synthetic, for the distributions),
	// real speedtests of the last hours (for the measurements endpoint) and
	// BitTorrent tests (for the verdicts), in bodies of 150.
	ipdb := collectortest.IPDB(t)
	fleet, err := simulate.NewFleet(simulate.Config{Agents: 150, Days: 2, TestsPerAgentDay: 10, Seed: 9, IPDB: ipdb})
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	uids := map[string]bool{}
	add := func(r *schemas.Record) {
		if r.Synthetic {
			lines = append(lines, schemastest.Line(r))
		} else {
			// Real rows are published only when an enrolled test server
			// signed them (spec/trust.md): signed as a forwarder would.
			lines = append(lines, schemastest.Signed(r))
		}
		uids[r.MeasurementUID] = true
	}
	if err := fleet.Records(func(r *schemas.Record) error { add(r); return nil }); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(18, 16))
	now := time.Now().UTC().Truncate(time.Second)
	bt := 0
	for i := 0; i < 1500; i++ {
		at := now.Add(-time.Duration(1+rng.IntN(6*3600)) * time.Second)
		addr := []string{"151.5.10.20", "79.20.30.40", "93.40.50.60"}[i%3]
		var r *schemas.Record
		if i%5 == 0 {
			r = schemastest.BitTorrent(rng, at, addr, 20+rng.Float64()*30, []string{"differentiation", "none", "inconclusive"}[rng.IntN(3)])
			bt++
		} else {
			r = schemastest.Speedtest(rng, at, addr, 10+rng.Float64()*90)
		}
		r.Synthetic = false // real rows: the ones the measurements endpoint and the dumps serve
		add(r)
	}
	if len(uids) != len(lines) {
		t.Fatalf("%d records share uids", len(lines)-len(uids))
	}
	const perBody = 150
	var bodies [][]byte
	for i := 0; i < len(lines); i += perBody {
		bodies = append(bodies, bytes.Join(lines[i:min(i+perBody, len(lines))], nil))
	}
	t.Logf("%d records (%d speedtest, %d bittorrent) in %d bodies", len(lines), len(lines)-bt, bt, len(bodies))

	// The single node gets every body at once.
	for _, b := range bodies {
		postUntilAccepted(t, urls["single"], b)
	}

	// The cluster: body i goes to collector A when i is even, else B. The
	// first two go at once: both collectors migrate the cluster at the
	// same time. The others follow once rows are in, paced so that
	// loading spans the replica's outage.
	postUntilAccepted(t, urls["A"], bodies[0])
	postUntilAccepted(t, urls["B"], bodies[1])
	watch := localchtest.Open(t, chdb.Options{Addr: a[3], Database: "default"})
	waitRows := func(want int) {
		t.Helper()
		// Twelve migrations on four servers, each ALTER ... ON CLUSTER
		// waiting for every replica: minutes on a loaded 2-CPU machine.
		deadline := time.Now().Add(4 * time.Minute)
		for {
			var n uint64
			_ = watch.QueryRow(ctx, "SELECT count() FROM neubot.speedtest").Scan(&n) // an error until migrated
			if int(n) >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 4 minutes the cluster holds %d rows, want %d", n, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitRows(1)
	t.Logf("migrated by both collectors at once and loading, %s after start", time.Since(began).Round(time.Millisecond))
	var acked atomic.Int64
	acked.Store(2)
	var wg sync.WaitGroup
	for c, name := range []string{"A", "B"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c + 2; i < len(bodies); i += 2 {
				postUntilAccepted(t, urls[name], bodies[i])
				acked.Add(1)
				time.Sleep(400 * time.Millisecond)
			}
		}()
	}
	// Kill once a quarter of the rows is in, and at best while the victim
	// runs an INSERT (of collector A, or a shard's part of one).
	waitRows(len(lines) / 4)
	victim := localchtest.Open(t, chdb.Options{Addr: a[0], Database: "default"})
	during := ""
	for deadline := time.Now().Add(10 * time.Second); during == "" && time.Now().Before(deadline); {
		var n uint64
		_ = victim.QueryRow(ctx, "SELECT count() FROM system.processes WHERE query LIKE 'INSERT INTO%speedtest%'").Scan(&n)
		if n > 0 {
			during = " during an INSERT"
		}
	}
	var atKill uint64
	_ = watch.QueryRow(ctx, "SELECT count() FROM neubot.speedtest").Scan(&atKill)
	killAt := time.Now()
	cl.Kill(0, 0)
	victim.Close()
	t.Logf("shard 1 replica 1 (%s) killed with SIGKILL%s, after %d of %d bodies were acknowledged and %d rows loaded", a[0], during, acked.Load(), len(bodies), atKill)
	// Down until the cluster took rows without it (unless it had them all).
	waitRows(min(int(atKill)+1, len(lines)-bt))
	watch.Close()
	if err := cl.Restart(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("shard 1 replica 1 back after %s, %d bodies acknowledged", time.Since(killAt).Round(time.Millisecond), acked.Load())
	wg.Wait()
	waitDrained(t, urls)
	for _, name := range []string{"A", "B"} {
		t.Logf("collector %s: %v inserts failed and were retried", name, metric(urls[name], "neubot_collector_insert_errors_total"))
	}

	// Replication done on every server before counting on each.
	tables := []string{"speedtest_local", "bittorrent_local", "analytics_distributions", "analytics_hourly", "analytics_verdicts", "analytics_runs"}
	syncReplicas := func() {
		t.Helper()
		for _, addr := range cl.Addrs() {
			c := localchtest.Open(t, chdb.Options{Addr: addr})
			for _, tb := range tables {
				if err := c.Exec(ctx, "SYSTEM SYNC REPLICA "+tb); err != nil {
					t.Fatalf("%s: SYSTEM SYNC REPLICA %s: %v", addr, tb, err)
				}
			}
			c.Close()
		}
	}
	syncReplicas()

	// Nothing lost, nothing stored twice: raw rows per replica.
	wantRows := map[string]int{"speedtest": len(lines) - bt, "bittorrent": bt}
	counts := func(table string) (rows [2][2]uint64) {
		t.Helper()
		for s := 0; s < 2; s++ {
			for r := 0; r < 2; r++ {
				c := localchtest.Open(t, chdb.Options{Addr: cl.Node(s, r).Addr()})
				if err := c.QueryRow(ctx, "SELECT count() FROM "+table+"_local").Scan(&rows[s][r]); err != nil {
					t.Fatal(err)
				}
				c.Close()
			}
		}
		return rows
	}
	checkRaw := func(phase string) {
		t.Helper()
		for table, want := range wantRows {
			rows := counts(table)
			// A replica killed while committing a part can come back
			// without it: 18.16 finds the part on its disk but not in
			// its ZooKeeper list, moves it to detached/ignored_*, and
			// fetches the rows again only with a merge that covers the
			// part (docs/cluster.md). The other replica has them: wait
			// for the merges, pushed with OPTIMIZE, and say how long.
			if rows[0][0] != rows[0][1] || rows[1][0] != rows[1][1] {
				t.Logf("%s: %s: replicas differ after SYNC REPLICA: shard 1 %d/%d, shard 2 %d/%d rows; merging", phase, table, rows[0][0], rows[0][1], rows[1][0], rows[1][1])
				start := time.Now()
				for deadline := start.Add(2 * time.Minute); ; {
					for _, addr := range cl.Addrs() {
						c := localchtest.Open(t, chdb.Options{Addr: addr})
						_ = c.Exec(ctx, "OPTIMIZE TABLE "+table+"_local FINAL")
						_ = c.Exec(ctx, "SYSTEM SYNC REPLICA "+table+"_local")
						c.Close()
					}
					if rows = counts(table); rows[0][0] == rows[0][1] && rows[1][0] == rows[1][1] {
						t.Logf("%s: %s: replicas agree again after %s", phase, table, time.Since(start).Round(time.Millisecond))
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("%s: %s: replicas still differ after 2 minutes of merges: shard 1 %d/%d, shard 2 %d/%d rows", phase, table, rows[0][0], rows[0][1], rows[1][0], rows[1][1])
						break
					}
					time.Sleep(time.Second)
				}
			}
			total := int(rows[0][0] + rows[1][0])
			if total != want {
				t.Errorf("%s: %s: %d raw rows on the shards, want %d (each record once)", phase, table, total, want)
			} else {
				t.Logf("%s: %s: %d raw rows on the shards, on both replicas of each, as many as records sent", phase, table, total)
			}
		}
	}
	checkRaw("after the outage")

	// Copies: 300 records sent again, each through the other collector, as
	// an agent does whose answer was lost. They land on the shard of the
	// first copy (sharded by measurement_uid), where FINAL collapses them.
	for i := 0; i < 2; i++ {
		body := bytes.Join(lines[i*perBody:(i+1)*perBody], nil)
		postUntilAccepted(t, urls[map[int]string{0: "B", 1: "A"}[i%2]], body)
		postUntilAccepted(t, urls["single"], body)
	}
	waitDrained(t, urls)
	syncReplicas()

	clConn := localchtest.Open(t, cl.Options(a[0], a[1], a[2], a[3]))
	defer clConn.Close()
	for _, table := range []string{"speedtest", "bittorrent"} {
		got := map[string]int{}
		for _, u := range localchtest.Strings(t, clConn, "SELECT toString(measurement_uid) FROM "+table+" FINAL") {
			got[u]++
		}
		lost, dup := 0, 0
		for u, n := range got {
			if n > 1 {
				dup++
			}
			if !uids[u] {
				t.Errorf("%s: stored a uid never sent: %s", table, u)
			}
		}
		if len(got) != wantRows[table] || dup > 0 {
			lost = wantRows[table] - len(got)
			t.Errorf("%s FINAL through the Distributed table: %d distinct of %d sent (lost %d), %d duplicated", table, len(got), wantRows[table], lost, dup)
		}
		// Per shard too: FINAL collapses copies only where they meet.
		sum := uint64(0)
		for s := 0; s < 2; s++ {
			c := localchtest.Open(t, chdb.Options{Addr: cl.Node(s, 1).Addr()})
			var n uint64
			if err := c.QueryRow(ctx, "SELECT count() FROM "+table+"_local FINAL").Scan(&n); err != nil {
				t.Fatal(err)
			}
			c.Close()
			sum += n
		}
		if int(sum) != wantRows[table] {
			t.Errorf("%s: shards hold %d rows after FINAL, want %d: copies of one measurement on two shards", table, sum, wantRows[table])
		}
	}

	// Analytics on both, through a connection to shard 1 replica 1 for
	// the cluster; the API of the cluster reads through shard 2 replica 2.
	singleConn := localchtest.Open(t, single.Options())
	defer singleConn.Close()
	// A replica that crashed keeps its ZooKeeper session (and so its
	// leadership) until the session times out: until then a DROP PARTITION
	// on it fails with "Leader was suddenly changed". The analytics cron
	// runs again a minute later; here it runs again a second later.
	for name, c := range map[string]driver.Conn{"cluster": clConn, "single": singleConn} {
		deadline := time.Now().Add(time.Minute)
		for {
			n, err := (&analytics.Job{Conn: c, DrawKey: []byte("the cluster test draw key")}).RunPending(ctx)
			if err == nil && n == 0 {
				t.Fatalf("analytics on the %s computed no day", name)
			}
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("analytics on the %s: %v", name, err)
			}
			t.Logf("analytics on the %s: %v; again in a second", name, err)
			time.Sleep(time.Second)
		}
	}
	syncReplicas()
	apiConn := localchtest.Open(t, cl.Options(a[3]))
	defer apiConn.Close()
	for _, q := range []string{
		"SELECT * FROM analytics_distributions ORDER BY day, test, goodset, scope, key, metric, synthetic",
		"SELECT * FROM analytics_hourly ORDER BY day, test, goodset, scope, key, metric, synthetic, hour",
		"SELECT * FROM analytics_verdicts ORDER BY day, test, asn, direction, synthetic",
		// Not source_rows: raw rows, which merges change at any time.
		"SELECT day FROM analytics_runs ORDER BY day, run_at",
	} {
		got, want := dumpQuery(t, apiConn, q), dumpQuery(t, singleConn, q)
		if len(want) == 0 {
			t.Errorf("%s: empty on the single node", q)
		}
		if !reflect.DeepEqual(got, want) {
			g, w := firstDiff(got, want)
			t.Errorf("%s: the cluster's %d rows differ from the single node's %d; first difference:\n%s\n%s", q, len(got), len(want), g, w)
		}
	}

	clAPI := httptest.NewServer(publish.New(publish.Config{Conn: apiConn, IPDB: ipdb, CacheTTL: -1, Rate: 1e6, Burst: 1e6}).Handler())
	defer clAPI.Close()
	singleAPI := httptest.NewServer(publish.New(publish.Config{Conn: singleConn, IPDB: ipdb, CacheTTL: -1, Rate: 1e6, Burst: 1e6}).Handler())
	defer singleAPI.Close()
	from := now.AddDate(0, 0, -3).Format(time.DateOnly)
	to := now.Format(time.DateOnly)
	asn := fleet.Agents()[0].ISP.ASN
	btASN, err := ipdb.LookupString("151.5.10.20")
	if err != nil {
		t.Fatal(err)
	}
	// Each path with a word its answer must hold: equal empty answers
	// would prove nothing.
	paths := map[string]string{
		"/api/v1/isps?synthetic=1": `"asn"`,
		publicapi.ISPsPath:         `"asn"`,
		fmt.Sprintf("/api/v1/distributions?scope=asn&key=%d&synthetic=1", asn):            `"p50"`,
		"/api/v1/distributions?scope=all&synthetic=1&goodset=paper2011-daily":             `"p50"`,
		"/api/v1/distributions?scope=country&key=IT":                                      `"p50"`,
		fmt.Sprintf("/api/v1/hourly?scope=asn&key=%d&synthetic=1", asn):                   `"p50"`,
		fmt.Sprintf("/api/v1/verdicts?asn=%d", btASN.ASN):                                 `"differentiation`,
		"/api/v1/measurements?from=" + from + "&to=" + to + "&limit=1000":                 `"measurement_uid"`,
		"/api/v1/measurements?test=bittorrent&from=" + from + "&to=" + to + "&limit=1000": `"measurement_uid"`,
	}
	for p, word := range paths {
		got, want := getJSON(t, clAPI.URL+p), getJSON(t, singleAPI.URL+p)
		if b, _ := json.Marshal(want); !bytes.Contains(b, []byte(word)) {
			t.Errorf("%s: the single node's answer has no %s: %.300s", p, word, b)
		}
		if !reflect.DeepEqual(got, want) {
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(want)
			i := 0
			for i < len(gb) && i < len(wb) && gb[i] == wb[i] {
				i++
			}
			i = max(0, i-200)
			t.Errorf("%s: the cluster answers\n...%.400s\nthe single node\n...%.400s", p, gb[i:], wb[i:])
		}
	}
	// The daily dumps: the same rows and the same documented columns (the
	// Distributed tables carry the comments).
	for _, test := range []string{schemas.SpeedtestName, schemas.BitTorrentName} {
		tt, _ := schemas.Lookup(test)
		var ms [2]*publish.Manifest
		for i, c := range []driver.Conn{apiConn, singleConn} {
			m, err := publish.ExportDay(ctx, publish.ExportConfig{Conn: c, Dir: filepath.Join(dir, fmt.Sprintf("datasets%d", i))}, tt, now)
			if err != nil {
				t.Fatalf("export %s: %v", test, err)
			}
			ms[i] = m
		}
		if ms[0].Rows == 0 || ms[0].Rows != ms[1].Rows || !reflect.DeepEqual(ms[0].Columns, ms[1].Columns) {
			t.Errorf("dump of %s: the cluster's %d rows and %d columns, the single node's %d and %d", test, ms[0].Rows, len(ms[0].Columns), ms[1].Rows, len(ms[1].Columns))
		}
	}
	t.Logf("TestCluster wall time: %s", time.Since(began).Round(time.Millisecond))
}

// postUntilAccepted posts body until the collector answers 202, as agents
// retry.
func postUntilAccepted(t *testing.T, url string, body []byte) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Post(url+ingest.Path, "application/x-ndjson", bytes.NewReader(body))
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted {
				return
			}
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("%s: status %d: %s", url, resp.StatusCode, b)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: body never acknowledged: %v", url, err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitDrained waits until every collector's spool is empty.
func waitDrained(t *testing.T, urls map[string]string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for name, u := range urls {
		for metric(u, "neubot_collector_spool_records") != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("collector %s: spool not drained after 2 minutes (%v records)", name, metric(u, "neubot_collector_spool_records"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// dumpQuery returns the rows of q as strings, one per row.
func dumpQuery(t *testing.T, c driver.Conn, q string) []string {
	t.Helper()
	_, rows := localchtest.Rows(t, c, q)
	var out []string
	for _, vals := range rows {
		var b strings.Builder
		for _, v := range vals {
			fmt.Fprintf(&b, "%v\t", normalize(v))
		}
		out = append(out, b.String())
	}
	return out
}

func firstDiff(a, b []string) (string, string) {
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return x, y
		}
	}
	return "", ""
}

// getJSON fetches url and decodes its JSON, leaving out ingested_at (the
// collectors' receive times differ between the two loads) and sorting
// nothing: order is part of the answer.
func getJSON(t *testing.T, url string) any {
	t.Helper()
	var v any
	webtest.GetJSON(t, url, &v)
	return normalize(v)
}

// normalize makes answers of the cluster and of one node comparable. It
// keeps 10 significant digits of every float in v: a mean is a sum, and a
// Distributed table sums the shards' rows in another order than one node
// does, which changes the last bits (quantiles and counts are exact). It
// leaves out ingested_at, and copy_version derived from it: the
// collectors' receive times differ between the two loads.
func normalize(v any) any {
	switch x := v.(type) {
	case float64:
		return strconv.FormatFloat(x, 'g', 10, 64)
	case []float64:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case map[string]any:
		delete(x, "ingested_at")
		delete(x, "copy_version")
		for k, e := range x {
			x[k] = normalize(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
	}
	return v
}
