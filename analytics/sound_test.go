package analytics_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/analytics/simulate"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/internal/stats"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

// testRec is a record of agent at t measuring down (upload down/4).
func testRec(rng *rand.Rand, agent string, t time.Time, down float64) *schemas.Record {
	r := schemastest.Speedtest(rng, t, "192.0.2.1", down)
	r.AgentID = agent
	return r
}

func agentID(rng *rand.Rand) string {
	return schemastest.Speedtest(rng, time.Now(), "192.0.2.1", 1).AgentID
}

// insertRows loads records with their own ASN and country.
func insertRows(t *testing.T, conn driver.Conn, recs []*schemas.Record, asn func(*schemas.Record) (uint32, string)) {
	t.Helper()
	localchtest.InsertRecords(t, conn, recs, func(r *schemas.Record) schemas.Annotation {
		a, c := asn(r)
		return schemas.Annotation{Verified: true, ServerKey: "test", Pseudonym: strings.ReplaceAll(r.AgentID, "-", ""), ASN: a, Org: fmt.Sprintf("ISP %d", a), Country: c, Prefix: "192.0.2.0/24", IngestedAt: r.StartTime.Add(5 * time.Minute)}
	})
}

func dist(t *testing.T, conn driver.Conn, day, goodset, scope, key string) (p50, lo, hi float64, tests, total, agents uint64) {
	t.Helper()
	err := conn.QueryRow(context.Background(), `SELECT p50, p50_ci_low, p50_ci_high, tests, tests_total, agents FROM analytics_distributions
		WHERE day = toDate(?) AND test = 'speedtest' AND goodset = ? AND scope = ? AND key = ? AND metric = 'download_mbps'`, day, goodset, scope, key).
		Scan(&p50, &lo, &hi, &tests, &total, &agents)
	if err != nil {
		t.Fatalf("%s %s %s %s: %v", day, goodset, scope, key, err)
	}
	return
}

// TestHeavyTesterDoesNotMoveMedian: one agent testing 200 times a day at a
// speed far from its provider's is one vote, as when it tests once: the
// provider's median, its interval and the overall median do not move
// (while the median over tests, computed here, would).
func TestHeavyTesterDoesNotMoveMedian(t *testing.T) {
	day := time.Date(2026, 11, 18, 0, 0, 0, 0, time.UTC)
	run := func(heavyTests int) (p50, lo, hi float64, testMedian float64) {
		_, conn := localchtest.NewDatabase(t)
		rng := rand.New(rand.NewPCG(3, 3))
		var recs []*schemas.Record
		var downs []float64
		for a := 0; a < 15; a++ {
			id := agentID(rng)
			for k := 0; k < 3; k++ {
				recs = append(recs, testRec(rng, id, day.Add(time.Duration(a*3600+k*600)*time.Second), 10+float64(a)))
			}
		}
		heavy := agentID(rng)
		for k := 0; k < heavyTests; k++ {
			recs = append(recs, testRec(rng, heavy, day.Add(time.Duration(k*400)*time.Second), 500))
		}
		for _, r := range recs {
			downs = append(downs, r.TestKeys.(*schemas.Speedtest).Download.GoodputMbps)
		}
		insertRows(t, conn, recs, func(*schemas.Record) (uint32, string) { return 64500, "IT" })
		if err := (&analytics.Job{Conn: conn, Goodsets: analytics.Goodsets[:1]}).RunDay(context.Background(), day.Format(time.DateOnly)); err != nil {
			t.Fatal(err)
		}
		p50, lo, hi, _, _, agents := dist(t, conn, day.Format(time.DateOnly), "all", "asn", "64500")
		if agents != 16 {
			t.Fatalf("%d agents, want 16", agents)
		}
		return p50, lo, hi, stats.Median(downs)
	}
	p1, lo1, hi1, tm1 := run(1)
	p200, lo200, hi200, tm200 := run(200)
	t.Logf("heavy agent testing once: median %.3f [%.3f, %.3f] (over tests %.3f); 200 times: %.3f [%.3f, %.3f] (over tests %.3f)", p1, lo1, hi1, tm1, p200, lo200, hi200, tm200)
	if math.Abs(p1-p200) > 0.02*p1 || math.Abs(lo1-lo200) > 0.02*lo1 || math.Abs(hi1-hi200) > 0.02*hi1 {
		t.Fatalf("the heavy tester moved the provider's median: %.3f [%.3f, %.3f] -> %.3f [%.3f, %.3f]", p1, lo1, hi1, p200, lo200, hi200)
	}
	if tm200 < 2*tm1 {
		t.Fatalf("the test-weighted median should move (%.3f -> %.3f): the data do not test the weighting", tm1, tm200)
	}
}

// TestGoodsetThenDraw: the goodset rule applies before the one test per
// agent and day is drawn, so an agent with one test inside the goodset
// among many outside it keeps that test; the draw is keyed (another key
// draws other tests, the same key the same ones).
func TestGoodsetThenDraw(t *testing.T) {
	day := time.Date(2026, 11, 17, 0, 0, 0, 0, time.UTC)
	ds := day.Format(time.DateOnly)
	_, conn := localchtest.NewDatabase(t)
	rng := rand.New(rand.NewPCG(4, 4))
	var recs []*schemas.Record
	inside := map[string][]float64{}
	for a := 0; a < 20; a++ {
		id := agentID(rng)
		// 9 tests outside the paper's goodset (download >= 20), 1 to 4 inside.
		for k := 0; k < 9; k++ {
			recs = append(recs, testRec(rng, id, day.Add(time.Duration(a*3600+k*60)*time.Second), 50+float64(k)))
		}
		for k := 0; k <= a%4; k++ {
			r := testRec(rng, id, day.Add(time.Duration(a*3600+1200+k*60)*time.Second), 2+float64(k)*3)
			recs = append(recs, r)
			inside[id] = append(inside[id], r.TestKeys.(*schemas.Speedtest).Download.GoodputMbps)
		}
	}
	insertRows(t, conn, recs, func(*schemas.Record) (uint32, string) { return 64501, "IT" })
	draws := func(key string) map[string]float64 {
		job := &analytics.Job{Conn: conn, DrawKey: []byte(key), Goodsets: analytics.Goodsets[2:]}
		if err := job.RunDay(context.Background(), ds); err != nil {
			t.Fatal(err)
		}
		_, _, _, tests, total, agents := dist(t, conn, ds, "paper2011-daily", "asn", "64501")
		if agents != 20 || tests != 20 || total != uint64(len(recs)) {
			t.Fatalf("paper2011-daily: %d agents, %d tests of %d; want every one of the 20 agents, one test each, of %d", agents, tests, total, len(recs))
		}
		rows, err := conn.Query(context.Background(), `SELECT toString(agent_id), tests, download_mbps FROM analytics_agent_days WHERE goodset = 'paper2011-daily'`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]float64{}
		for rows.Next() {
			var id string
			var n uint64
			var d float64
			if err := rows.Scan(&id, &n, &d); err != nil {
				t.Fatal(err)
			}
			ok := false
			for _, v := range inside[id] {
				ok = ok || v == d
			}
			if n != 1 || !ok {
				t.Fatalf("agent %s: %d tests drawn, %.3f is not one of its tests inside the goodset %v", id, n, d, inside[id])
			}
			out[id] = d
		}
		return out
	}
	a1, b, a2 := draws("key one"), draws("key two"), draws("key one")
	differ := 0
	for id := range a1 {
		if a1[id] != a2[id] {
			t.Fatalf("the same key drew differently for %s", id)
		}
		if a1[id] != b[id] {
			differ++
		}
	}
	if differ == 0 {
		t.Fatal("another key drew the same test for every agent: the draw is not keyed")
	}
	t.Logf("another key drew another test for %d of the 15 agents with several tests inside the goodset", differ)
}

// TestNonUTCServer: on a ClickHouse whose time zone is
// America/Los_Angeles, days are UTC days, and the hour profile of an
// Italian provider is in Rome's time.
func TestNonUTCServer(t *testing.T) {
	_, conn := localchtest.ServerIn(t, "America/Los_Angeles")
	var tz string
	if err := conn.QueryRow(context.Background(), "SELECT timezone()").Scan(&tz); err != nil || tz != "America/Los_Angeles" {
		t.Fatalf("server time zone %q (%v)", tz, err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	day := time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC)
	// 23:30 UTC is 15:30 in Los Angeles the same day and 00:30 in Rome the
	// next; 00:30 UTC the next day is still the 16th in Los Angeles.
	late, next := testRec(rng, agentID(rng), day.Add(23*time.Hour+30*time.Minute), 10), testRec(rng, agentID(rng), day.Add(24*time.Hour+30*time.Minute), 40)
	early := testRec(rng, agentID(rng), day.Add(7*time.Hour), 20)
	insertRows(t, conn, []*schemas.Record{late, next, early}, func(*schemas.Record) (uint32, string) { return 64502, "IT" })
	job := &analytics.Job{Conn: conn, Goodsets: analytics.Goodsets[:1]}
	src, err := job.Sources(context.Background())
	if err != nil || src["2026-11-16"].Rows != 2 || src["2026-11-17"].Rows != 1 {
		t.Fatalf("sources by day: %+v (%v); want 2 on the 16th and 1 on the 17th (UTC)", src, err)
	}
	if err := job.RunRange(context.Background(), day, day.AddDate(0, 0, 1), nil); err != nil {
		t.Fatal(err)
	}
	p50, _, _, tests, _, _ := dist(t, conn, "2026-11-16", "all", "asn", "64502")
	if tests != 2 || p50 != stats.Median([]float64{10, 20}) {
		t.Fatalf("2026-11-16: %d tests, median %v; want the 2 tests of that UTC day, median 15", tests, p50)
	}
	rows, err := conn.Query(context.Background(), `SELECT toString(day), hour, zone FROM analytics_hourly WHERE scope = 'asn' AND metric = 'download_mbps' ORDER BY day, hour`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var d, z string
		var h uint8
		if err := rows.Scan(&d, &h, &z); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %d %s", d, h, z))
	}
	rows.Close()
	// Rome is UTC+1 in November.
	if want := "2026-11-16 0 Europe/Rome,2026-11-16 8 Europe/Rome,2026-11-17 1 Europe/Rome"; strings.Join(got, ",") != want {
		t.Fatalf("hourly rows %v, want %s", got, want)
	}
	tab, err := analytics.ReadTable(context.Background(), conn, analytics.TableQuery{Synthetic: true, From: day, To: day, MinAgents: 1})
	if err != nil || tab.Overall.Tests != 2 || tab.Overall.Agents != 2 {
		t.Fatalf("Table I of the 16th: %+v (%v)", tab, err)
	}
}

// TestDistinctAgentsAcrossDays: over three days, agents are distinct
// agents, not agent-days, overall and per provider; and the table prints.
func TestDistinctAgentsAcrossDays(t *testing.T) {
	conn, rng, day := newDay(t, 6, 10)
	a, b, c, d := agentID(rng), agentID(rng), agentID(rng), agentID(rng)
	var recs []*schemas.Record
	for i := 0; i < 3; i++ {
		for _, id := range []string{a, b} {
			recs = append(recs, testRec(rng, id, day.AddDate(0, 0, i).Add(10*time.Hour), 5), testRec(rng, id, day.AddDate(0, 0, i).Add(12*time.Hour), 30))
		}
	}
	recs = append(recs, testRec(rng, c, day.Add(3*time.Hour), 7), testRec(rng, d, day.AddDate(0, 0, 2).Add(3*time.Hour), 8))
	asOf := map[string]uint32{a: 64510, b: 64510, c: 64510, d: 64511}
	insertRows(t, conn, recs, func(r *schemas.Record) (uint32, string) { return asOf[r.AgentID], "DE" })
	job := &analytics.Job{Conn: conn, Goodsets: analytics.Goodsets[:2]}
	if err := job.RunRange(context.Background(), day, day.AddDate(0, 0, 2), nil); err != nil {
		t.Fatal(err)
	}
	tab, err := analytics.ReadTable(context.Background(), conn, analytics.TableQuery{Goodset: "paper2011", Synthetic: true, From: day, To: day.AddDate(0, 0, 2), MinAgents: 3})
	if err != nil {
		t.Fatal(err)
	}
	o := tab.Overall
	if o.Agents != 4 || o.Tests != 14 || o.AgentsInGoodset != 4 || o.TestsInGoodset != 8 {
		t.Fatalf("overall: %d agents (%d in the goodset), %d tests (%d in it); want 4 (4), 14 (8)", o.Agents, o.AgentsInGoodset, o.Tests, o.TestsInGoodset)
	}
	if len(tab.Providers) != 1 || tab.Providers[0].ASN != "64510" || tab.Providers[0].Agents != 3 || len(tab.Others) != 1 || tab.Others[0].Agents != 1 {
		t.Fatalf("providers %+v, others %+v: want AS64510 with 3 agents ranked, AS64511 with 1 apart", tab.Providers, tab.Others)
	}
	var agentDays uint64
	_ = conn.QueryRow(context.Background(), "SELECT sum(agents) FROM analytics_distributions WHERE scope = 'all' AND goodset = 'paper2011' AND metric = 'download_mbps'").Scan(&agentDays)
	if agentDays != 8 {
		t.Fatalf("%d agent-days in the daily rows, want 8", agentDays)
	}
	var text, csv bytes.Buffer
	if err := tab.WriteText(&text); err != nil || !strings.Contains(text.String(), "AS64510 ISP 64510") || !strings.Contains(text.String(), "not ranked") {
		t.Fatalf("text table:\n%s", text.String())
	}
	if err := tab.WriteCSV(&csv); err != nil || strings.Count(csv.String(), "\n") != 4 || !strings.HasPrefix(csv.String(), strings.Join(analytics.CSVHeader, ",")) {
		t.Fatalf("csv table:\n%s", csv.String())
	}
	t.Logf("\n%s\n%s", text.String(), csv.String())
}

// TestMedianCICoverage: 100 simulated providers, each a population of lines
// (rate lognormal around its own median, RTT 10-50 ms, loss 1e-6-1e-5), 30
// volunteers each, whose tests go through the link model and the client's
// own estimator, then through ClickHouse: the 95% interval of each
// provider's median covers the population's true median in at least 90 of
// the 100; the figures are the Go statistics' (one method).
func TestMedianCICoverage(t *testing.T) {
	conn, rng, day := newDay(t, 7, 12)
	const providers, agents = 100, 30
	type provider struct{ median, sigma float64 }
	draw := func(rng *rand.Rand, p provider) simulate.Link {
		return simulate.Link{RateMbps: p.median * math.Exp(p.sigma*rng.NormFloat64()), RTTms: 10 + 40*rng.Float64(), Loss: math.Pow(10, -6+rng.Float64())}
	}
	var recs []*schemas.Record
	asOf := map[string]uint32{}
	truth := map[string]float64{}
	votes := map[string][]float64{}
	for i := 0; i < providers; i++ {
		p := provider{median: math.Pow(10, 0.3+2*rng.Float64()), sigma: 0.3 + 0.7*rng.Float64()}
		asn := uint32(65000 + i)
		key := fmt.Sprint(asn)
		// The truth: the median of the population's steady goodput.
		pop := make([]float64, 20000)
		for k := range pop {
			pop[k] = draw(rng, p).Steady(2)
		}
		truth[key] = stats.Median(pop)
		for a := 0; a < agents; a++ {
			id := agentID(rng)
			asOf[id] = asn
			link := draw(rng, p)
			var mine []float64
			for k := 0; k < 1+rng.IntN(4); k++ {
				r := testRec(rng, id, anyTime(rng, day), 1)
				keys := r.TestKeys.(*schemas.Speedtest)
				keys.Download = link.Phase(rng, 2)
				keys.Upload = simulate.Link{RateMbps: link.RateMbps / 4, RTTms: link.RTTms, Loss: link.Loss}.Phase(rng, 2)
				keys.ServerView.BytesSent, keys.ServerView.BytesReceived = keys.Download.Bytes, keys.Upload.Bytes
				keys.ServerView.UploadMbps = keys.Upload.GoodputMbps
				recs = append(recs, r)
				mine = append(mine, keys.Download.GoodputMbps)
			}
			votes[key] = append(votes[key], stats.Median(mine))
		}
	}
	insertRows(t, conn, recs, func(r *schemas.Record) (uint32, string) { return asOf[r.AgentID], "IT" })
	ds := day.Format(time.DateOnly)
	if err := (&analytics.Job{Conn: conn, Goodsets: analytics.Goodsets[:1]}).RunDay(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	covered := 0
	var misses []string
	keys := make([]string, 0, len(truth))
	for k := range truth {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		p50, lo, hi, _, _, n := dist(t, conn, ds, "all", "asn", key)
		wantLo, wantHi := stats.MedianCI(votes[key])
		if n != agents || math.Abs(p50-stats.Median(votes[key])) > 1e-9*p50 || lo != wantLo || hi != wantHi {
			t.Fatalf("AS%s: median %v [%v, %v] over %d agents; the Go statistics say %v [%v, %v] over %d", key, p50, lo, hi, n, stats.Median(votes[key]), wantLo, wantHi, agents)
		}
		if lo <= truth[key] && truth[key] <= hi {
			covered++
		} else {
			misses = append(misses, fmt.Sprintf("AS%s truth %.2f not in [%.2f, %.2f]", key, truth[key], lo, hi))
		}
	}
	t.Logf("%d records; the 95%% interval covered the true median of %d of %d providers; misses: %v", len(recs), covered, providers, misses)
	if covered < 90 {
		t.Fatalf("coverage %d of %d, want at least 90", covered, providers)
	}
}

// TestNDT7Apart: ndt7 results have their own votes and distributions, and
// the speedtest's figures are not moved by them.
func TestNDT7Apart(t *testing.T) {
	conn, rng, day := newDay(t, 8, 9)
	var st []*schemas.Record
	for i := 0; i < 5; i++ {
		st = append(st, testRec(rng, agentID(rng), day.Add(time.Duration(i)*time.Hour), 10))
	}
	insertRows(t, conn, st, func(*schemas.Record) (uint32, string) { return 64520, "FR" })
	var nd []*schemas.Record
	for i := 0; i < 3; i++ {
		nd = append(nd, schemastest.NDT7(rng, schemas.NDT7Name, day.Add(time.Duration(i)*time.Hour), "192.0.2.1", 300))
	}
	localchtest.InsertRecords(t, conn, nd, func(r *schemas.Record) schemas.Annotation {
		return schemas.Annotation{Verified: true, ServerKey: "test", Pseudonym: strings.ReplaceAll(r.AgentID, "-", ""), ASN: 64520, Org: "ISP", Country: "FR", Prefix: "192.0.2.0/24", IngestedAt: r.StartTime.Add(time.Minute)}
	})
	if err := (&analytics.Job{Conn: conn, Goodsets: analytics.Goodsets[:1]}).RunDay(context.Background(), day.Format(time.DateOnly)); err != nil {
		t.Fatal(err)
	}
	got := localchtest.Select(t, conn, func(rows driver.Rows, s *string) error {
		var name string
		var tests, agents uint64
		var p50 float64
		err := rows.Scan(&name, &tests, &agents, &p50)
		*s = fmt.Sprintf("%s %d %d %.0f", name, tests, agents, math.Round(p50/10)*10)
		return err
	}, `SELECT test, tests, agents, p50 FROM analytics_distributions
		WHERE scope = 'asn' AND key = '64520' AND metric = 'download_mbps' ORDER BY test`)
	if strings.Join(got, ",") != "ndt7 3 3 300,speedtest 5 5 10" {
		t.Fatalf("distributions per test: %v; want ndt7 3 tests of 3 agents around 300, speedtest 5 of 5 around 10", got)
	}
}
