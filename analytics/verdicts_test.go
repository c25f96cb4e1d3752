package analytics_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/internal/stats"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

// insertAs loads records into their test's table as the collector's
// loader does (same Row).
func insertAs(t *testing.T, conn driver.Conn, recs []*schemas.Record, asn uint32) {
	t.Helper()
	localchtest.InsertRecords(t, conn, recs, func(*schemas.Record) schemas.Annotation {
		return schemas.Annotation{Verified: true, ServerKey: "test", ASN: asn, Org: fmt.Sprintf("ISP %d", asn), Country: "IT", Prefix: "192.0.2.0/24", IngestedAt: time.Now()}
	})
}

// TestVerdicts: a day of BitTorrent tests of two ISPs (and no speedtest)
// is found pending, computed into analytics_verdicts with the counts, the
// share among conclusive tests and its Wilson interval as internal/stats
// computes it, and read back by Verdicts; computing it again changes
// nothing.
func TestVerdicts(t *testing.T) {
	_, conn := localchtest.NewDatabase(t)
	rng := rand.New(rand.NewPCG(4, 2))
	day := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	at := func() time.Time { return anyTime(rng, day) }
	// ISP 3269 throttles: 14 differentiation, 3 none, 2 inconclusive.
	// ISP 1267 does not: 0, 20, 1.
	counts := map[uint32][3]int{3269: {14, 3, 2}, 1267: {0, 20, 1}}
	for asn, c := range counts {
		var recs []*schemas.Record
		for i, o := range []string{schemas.OutcomeDifferentiation, schemas.OutcomeNone, schemas.OutcomeInconclusive} {
			for k := 0; k < c[i]; k++ {
				recs = append(recs, schemastest.BitTorrent(rng, at(), "192.0.2.1", 20, o))
			}
		}
		insertAs(t, conn, recs, asn)
	}
	job := &analytics.Job{Conn: conn}
	pending, err := job.Pending(context.Background())
	if err != nil || len(pending) != 1 || pending[0] != "2026-11-21" {
		t.Fatalf("pending %v, %v; want the day of the BitTorrent tests", pending, err)
	}
	if _, err := job.RunPending(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := snapshot(t, conn, "analytics_verdicts")
	for asn, c := range counts {
		vs, err := analytics.Verdicts(context.Background(), conn, asn, day, day)
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 3 {
			t.Fatalf("ASN %d: %d rows, want any, download, upload: %+v", asn, len(vs), vs)
		}
		v := vs[0] // "any"
		if v.Direction != "any" || v.Test != schemas.BitTorrentName || v.Org != fmt.Sprintf("ISP %d", asn) || v.Synthetic != true ||
			v.Tests != uint64(c[0]+c[1]+c[2]) || v.Agents != v.Tests ||
			v.Differentiation != uint64(c[0]) || v.None != uint64(c[1]) || v.Inconclusive != uint64(c[2]) {
			t.Fatalf("ASN %d: %+v, want counts %v", asn, v, c)
		}
		share := float64(c[0]) / float64(c[0]+c[1])
		lo, hi := stats.Wilson(uint64(c[0]), uint64(c[0]+c[1]), 1.96)
		if math.Abs(v.Share-share) > 1e-9 || math.Abs(v.ShareLo-lo) > 1e-9 || math.Abs(v.ShareHi-hi) > 1e-9 {
			t.Fatalf("ASN %d: share %g [%g, %g], want %g [%g, %g]", asn, v.Share, v.ShareLo, v.ShareHi, share, lo, hi)
		}
	}
	// schemastest's inconclusive records are inconclusive in the upload
	// direction only: their download verdict is none.
	vs, _ := analytics.Verdicts(context.Background(), conn, 3269, day, day)
	if d := vs[1]; d.Direction != "download" || d.None != 3+2 || d.Inconclusive != 0 {
		t.Fatalf("download: %+v", d)
	}
	if vs, _ := analytics.Verdicts(context.Background(), conn, 3269, day.AddDate(0, 0, 1), day.AddDate(0, 0, 3)); len(vs) != 0 {
		t.Fatalf("other days: %+v", vs)
	}
	if err := job.RunDay(context.Background(), "2026-11-21"); err != nil {
		t.Fatal(err)
	}
	if again := snapshot(t, conn, "analytics_verdicts"); again != first {
		t.Fatalf("a second run changed analytics_verdicts:\n%s\n---\n%s", first, again)
	}
}

// TestVerdictsFleet is a simulated fleet over two days: ISP 100 is neutral
// but one of its 21 agents runs 100 tests a day that all say
// differentiation (and one other agent has a false alarm on day 1); ISP 200
// throttles, seen by 12 of its 15 agents; ten more neutral ISPs have 10
// agents each, one false alarm here and there. Counting tests, ISP 100
// would look like the worst offender (over 80% differentiation); counting
// one vote per agent and controlling the false discovery rate over the 24
// ISP-days, only ISP 200 is flagged, on both days.
func TestVerdictsFleet(t *testing.T) {
	_, conn := localchtest.NewDatabase(t)
	rng := rand.New(rand.NewPCG(7, 7))
	day1 := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	agent := func(asn uint32, i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%04d%08d", asn%10000, i) }
	test := func(at time.Time, asn uint32, a int, outcome string) *schemas.Record {
		r := schemastest.BitTorrent(rng, at.Add(time.Duration(rng.IntN(86000))*time.Second), "192.0.2.1", 20, outcome)
		r.AgentID = agent(asn, a)
		return r
	}
	byASN := map[uint32][]*schemas.Record{}
	for d := 0; d < 2; d++ {
		day := day1.AddDate(0, 0, d)
		for a := 0; a < 20; a++ {
			o := schemas.OutcomeNone
			if d == 0 && a == 3 {
				o = schemas.OutcomeDifferentiation
			}
			byASN[100] = append(byASN[100], test(day, 100, a, o))
		}
		for i := 0; i < 100; i++ { // the busy agent
			byASN[100] = append(byASN[100], test(day, 100, 99, schemas.OutcomeDifferentiation))
		}
		for a := 0; a < 15; a++ {
			o := schemas.OutcomeDifferentiation
			if a >= 12 {
				o = schemas.OutcomeNone
			}
			byASN[200] = append(byASN[200], test(day, 200, a, o))
		}
		for asn := uint32(301); asn <= 310; asn++ {
			for a := 0; a < 10; a++ {
				o := schemas.OutcomeNone
				if rng.IntN(20) == 0 {
					o = schemas.OutcomeDifferentiation
				}
				byASN[asn] = append(byASN[asn], test(day, asn, a, o))
			}
		}
	}
	for asn, recs := range byASN {
		insertAs(t, conn, recs, asn)
	}
	if err := (&analytics.Job{Conn: conn}).RunRange(context.Background(), day1, day1.AddDate(0, 0, 1), nil); err != nil {
		t.Fatal(err)
	}
	q, err := analytics.QValues(context.Background(), conn, schemas.BitTorrentName, "any", true, day1, day1.AddDate(0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 24 {
		t.Fatalf("%d ISP-days in the family, want 24: %v", len(q), q)
	}
	vs, err := analytics.Verdicts(context.Background(), conn, 100, day1, day1)
	if err != nil || len(vs) == 0 {
		t.Fatal(vs, err)
	}
	busy := vs[0]
	if busy.Direction != "any" || busy.Tests != 20+schemas.MaxTestsPerAgentDay || busy.Share < 0.8 || busy.AgentVotes != 21 || busy.AgentsDifferentiation != 2 || busy.PValue < 0.05 {
		t.Fatalf("ISP 100, day 1: %+v", busy)
	}
	for k, v := range q {
		flagged := v <= analytics.FDRLevel
		if flagged != (k.ASN == 200) {
			t.Errorf("ISP %d on %s: q = %.3g, flagged %v", k.ASN, k.Day, v, flagged)
		}
	}
	t.Logf("ISP 100 day 1: %.0f%% of tests differentiation, %d of %d agents, p = %.2f, q = %.2f; ISP 200: q = %.2g",
		busy.Share*100, busy.AgentsDifferentiation, busy.AgentVotes, busy.PValue, q[analytics.DayKey{ASN: 100, Day: "2026-11-21"}], q[analytics.DayKey{ASN: 200, Day: "2026-11-21"}])
}
