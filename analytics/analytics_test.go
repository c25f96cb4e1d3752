package analytics_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

func TestMain(m *testing.M) { os.Exit(localchtest.Main(m)) }

// insert loads records as the collector's loader does (same Row).
func insert(t *testing.T, conn driver.Conn, recs []*schemas.Record, asn uint32) {
	t.Helper()
	insertRows(t, conn, recs, func(*schemas.Record) (uint32, string) { return asn, "IT" })
}

// newDay starts a test on an empty database: its connection, a random
// source seeded with seed, and the UTC midnight of the day (of November
// 2026) its records fall in.
func newDay(t *testing.T, seed uint64, day int) (driver.Conn, *rand.Rand, time.Time) {
	t.Helper()
	_, conn := localchtest.NewDatabase(t)
	return conn, rand.New(rand.NewPCG(seed, seed)), time.Date(2026, 11, day, 0, 0, 0, 0, time.UTC)
}

// anyTime is a random second of day.
func anyTime(rng *rand.Rand, day time.Time) time.Time {
	return day.Add(time.Duration(rng.IntN(86400)) * time.Second)
}

func snapshot(t *testing.T, conn driver.Conn, table string) string {
	t.Helper()
	_, rows := localchtest.Rows(t, conn, "SELECT * FROM "+table)
	var lines []string
	for _, vals := range rows {
		lines = append(lines, fmt.Sprint(vals))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestIdempotent: running the same day twice leaves identical tables, and
// the scheduler finds nothing pending afterwards.
func TestIdempotent(t *testing.T) {
	conn, rng, day := newDay(t, 1, 20)
	var recs []*schemas.Record
	for i := 0; i < 500; i++ {
		recs = append(recs, schemastest.Speedtest(rng, anyTime(rng, day), "192.0.2.1", []float64{1, 2, 7, 20, 100}[i%5]))
	}
	insert(t, conn, recs, 3269)
	// Many small parts for the agent scope, as a day of 10M tests has.
	defer analytics.SetGroupsPerChunk(100)()
	job := &analytics.Job{Conn: conn, PerAgent: true}
	ctx := context.Background()
	pending, err := job.Pending(ctx)
	if err != nil || len(pending) != 1 || pending[0] != "2026-11-20" {
		t.Fatalf("pending %v %v", pending, err)
	}
	if n, err := job.RunPending(ctx); err != nil || n != 1 {
		t.Fatalf("RunPending: %d %v", n, err)
	}
	first := snapshot(t, conn, "analytics_distributions") + snapshot(t, conn, "analytics_hourly")
	if err := job.RunDay(ctx, "2026-11-20"); err != nil {
		t.Fatal(err)
	}
	second := snapshot(t, conn, "analytics_distributions") + snapshot(t, conn, "analytics_hourly")
	if first != second {
		t.Fatal("running the same day twice changed the tables")
	}
	if len(first) < 1000 {
		t.Fatalf("suspiciously small tables: %q", first)
	}
	var agentRows uint64
	conn.QueryRow(ctx, "SELECT count() FROM analytics_distributions WHERE scope = 'agent' AND goodset = 'all' AND metric = 'download_mbps'").Scan(&agentRows)
	if agentRows != 500 { // schemastest makes a new agent per record
		t.Fatalf("%d agent rows over the parts, want 500", agentRows)
	}
	if p, _ := job.Pending(ctx); len(p) != 0 {
		t.Fatalf("still pending after the run: %v", p)
	}
	// A day computed by the test-weighted method of before migration 9 is
	// computed again.
	if err := conn.Exec(ctx, `INSERT INTO analytics_distributions (day, test, goodset, scope, key, metric, weighting)
		SELECT toDate('2026-11-20'), 'speedtest', 'all', 'asn', '1', 'download_mbps', 'tests'`); err != nil {
		t.Fatal(err)
	}
	if p, _ := job.Pending(ctx); len(p) != 1 {
		t.Fatalf("a day of test-weighted figures is not pending: %v", p)
	}
	if err := conn.Exec(ctx, "ALTER TABLE analytics_distributions DROP PARTITION '2026-11-20'"); err != nil {
		t.Fatal(err)
	}
	// New data for the day makes it pending again.
	insert(t, conn, recs[:1], 3269)
	if p, _ := job.Pending(ctx); len(p) != 1 {
		t.Fatalf("new rows did not make the day pending: %v", p)
	}
}

// TestModesAndQuantiles: on a known mix the histogram peaks where the plans
// are, and the median equals the exact median of the data.
func TestModesAndQuantiles(t *testing.T) {
	conn, rng, day := newDay(t, 2, 21)
	plans := []float64{1, 2, 7, 20, 100}
	var recs []*schemas.Record
	var downs []float64
	for i := 0; i < 1000; i++ {
		r := schemastest.Speedtest(rng, anyTime(rng, day), "192.0.2.1", plans[i%5])
		recs = append(recs, r)
		downs = append(downs, r.TestKeys.(*schemas.Speedtest).Download.GoodputMbps)
	}
	insert(t, conn, recs, 3269)
	job := &analytics.Job{Conn: conn}
	if err := job.RunDay(context.Background(), "2026-11-21"); err != nil {
		t.Fatal(err)
	}
	var modes []float64
	var p50 float64
	var tests, total uint64
	err := conn.QueryRow(context.Background(), `SELECT modes, p50, tests, tests_total FROM analytics_distributions
		WHERE scope = 'asn' AND key = '3269' AND goodset = 'all' AND metric = 'download_mbps'`).Scan(&modes, &p50, &tests, &total)
	if err != nil {
		t.Fatal(err)
	}
	if len(modes) != len(plans) {
		t.Fatalf("modes %v, want one near each of %v", modes, plans)
	}
	for i, p := range plans {
		if modes[i] < p/1.26 || modes[i] > p*1.26 {
			t.Errorf("mode %v is not within one bucket of plan %v", modes[i], p)
		}
	}
	if want := schemas.Median(downs); p50 != want || tests != 1000 || total != 1000 {
		t.Fatalf("p50 %v tests %d/%d; want %v and 1000", p50, tests, total, want)
	}
	// The paper's goodset keeps download < 20 and RTT < 100: plans 1, 2, 7.
	err = conn.QueryRow(context.Background(), `SELECT tests, tests_total FROM analytics_distributions
		WHERE scope = 'asn' AND key = '3269' AND goodset = 'paper2011' AND metric = 'download_mbps'`).Scan(&tests, &total)
	if err != nil || tests != 600 || total != 1000 {
		t.Fatalf("paper2011 goodset: %d of %d (%v); want 600 of 1000", tests, total, err)
	}
}

// TestOnlyPublishableOnTime: the figures count only tests whose volunteer
// allowed publication and that arrived before their day closed, and that a
// platform server served (not a peer).
func TestOnlyPublishableOnTime(t *testing.T) {
	conn, rng, day := newDay(t, 9, 19)
	var pub, private []*schemas.Record
	for i := 0; i < 20; i++ {
		r := schemastest.Speedtest(rng, day.Add(time.Duration(i)*time.Hour), "192.0.2.1", 10)
		r.Synthetic = false
		if i%2 == 0 {
			r.Consent.CanPublish = false
			private = append(private, r)
		} else {
			pub = append(pub, r)
		}
	}
	var peers []*schemas.Record
	for i := 0; i < 5; i++ {
		r := schemastest.Speedtest(rng, day.Add(time.Duration(i)*time.Hour+time.Minute), "192.0.2.1", 10)
		r.Synthetic, r.Server.Peer = false, true
		peers = append(peers, r)
	}
	insert(t, conn, pub, 64511)
	insert(t, conn, private, 64511)
	insert(t, conn, peers, 64511)
	// A late upload: ingested three days after its day.
	late := schemastest.Speedtest(rng, day.Add(time.Hour), "192.0.2.1", 10)
	late.Synthetic = false
	localchtest.InsertRecords(t, conn, []*schemas.Record{late}, func(*schemas.Record) schemas.Annotation {
		return schemas.Annotation{Verified: true, ServerKey: "test", ASN: 64511, Org: "ISP", Country: "IT", Prefix: "192.0.2.0/24", IngestedAt: day.AddDate(0, 0, 3).Add(time.Minute)}
	})
	if err := (&analytics.Job{Conn: conn}).RunDay(context.Background(), "2026-11-19"); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := conn.QueryRow(context.Background(), `SELECT tests FROM analytics_distributions WHERE scope = 'asn' AND key = '64511'
		AND goodset = 'all' AND metric = 'download_mbps' AND synthetic = 0`).Scan(&n); err != nil || n != 10 {
		t.Fatalf("tests counted: %d (%v), want the 10 publishable on-time ones", n, err)
	}
}

// TestTestVersions: the speedtest's two methodologies coexist, and every
// figure says which it pools: a provider with v1 and v2 tests has both, a
// provider with v2 tests only has 2, and Table I lists the versions too.
func TestTestVersions(t *testing.T) {
	conn, rng, day := newDay(t, 5, 21)
	var mixed, v2 []*schemas.Record
	for i := 0; i < 20; i++ {
		r := schemastest.Speedtest(rng, anyTime(rng, day), "192.0.2.1", 20)
		if i%2 == 0 {
			r.TestVersion = schemas.SpeedtestVersion1
		} else {
			r.TestVersion = schemas.SpeedtestVersion
		}
		mixed = append(mixed, r)
		r = schemastest.Speedtest(rng, anyTime(rng, day), "192.0.2.1", 50)
		r.TestVersion = schemas.SpeedtestVersion
		v2 = append(v2, r)
	}
	insert(t, conn, mixed, 64501)
	insert(t, conn, v2, 64502)
	ctx := context.Background()
	if err := (&analytics.Job{Conn: conn}).RunDay(ctx, "2026-11-21"); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"64501": "[1 2]", "64502": "[2]", "": "[1 2]"}
	for key, w := range want {
		scope := "asn"
		if key == "" {
			scope = "all"
		}
		var got []string
		if err := conn.QueryRow(ctx, `SELECT test_versions FROM analytics_distributions
			WHERE test = 'speedtest' AND goodset = 'all' AND scope = ? AND key = ? AND metric = 'download_mbps' AND weighting = 'agents' AND synthetic = 1`, scope, key).Scan(&got); err != nil {
			t.Fatalf("scope %s key %q: %v", scope, key, err)
		}
		if fmt.Sprint(got) != w {
			t.Errorf("scope %s key %q: test_versions %v, want %s", scope, key, got, w)
		}
	}
	tab, err := analytics.ReadTable(ctx, conn, analytics.TableQuery{Synthetic: true, From: day, To: day, MinAgents: 1})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(tab.TestVersions) != "[1 2]" {
		t.Fatalf("Table I pools %v, want [1 2]", tab.TestVersions)
	}
	var text strings.Builder
	tab.WriteText(&text)
	if !strings.Contains(text.String(), "methodology versions pooled (test_version): 1, 2") {
		t.Fatalf("Table I does not say its versions:\n%s", text.String())
	}
	tab, err = analytics.ReadTable(ctx, conn, analytics.TableQuery{Synthetic: true, From: day, To: day, MinAgents: 1, ASN: 64502})
	if err != nil || fmt.Sprint(tab.TestVersions) != "[2]" {
		t.Fatalf("Table I of AS64502 pools %v (%v), want [2]", tab.TestVersions, err)
	}
}
