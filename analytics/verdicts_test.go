package analytics_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
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
	test, _ := schemas.Lookup(recs[0].TestName)
	batch, err := conn.PrepareBatch(context.Background(), "INSERT INTO "+test.Table+" ("+strings.Join(test.TableColumns(), ", ")+")")
	if err != nil {
		t.Fatal(err)
	}
	defer batch.Close()
	for _, r := range recs {
		row := r.Row(schemas.Annotation{Verified: true, ServerKey: "test", ASN: asn, Org: fmt.Sprintf("ISP %d", asn), Country: "IT", Prefix: "192.0.2.0/24", IngestedAt: time.Now()}, nil)
		if err := batch.Append(row...); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
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
	at := func() time.Time { return day.Add(time.Duration(rng.IntN(86400)) * time.Second) }
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
