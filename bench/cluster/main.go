// Command cluster measures a ClickHouse cluster of 2 shards × 2 replicas
// (one ZooKeeper, internal/localcluster) against a single node, side by side
// in one run on the same machine, with the same rows and the same code:
//
//   - the collector's insert: batches of realistic speedtest rows
//     (schemastest records, the loader's Row and PrepareBatch), into the
//     single node's table and into the cluster's Distributed table with
//     insert_distributed_sync=1, as the collector does in cluster mode;
//   - a bulk insert generated inside ClickHouse (bench/internal/benchrows),
//     the ceiling of what the servers themselves can write;
//   - reads over the bulk rows: count() FINAL, the analytics job's per-ASN
//     distributions step, and one ISP's day of measurements;
//   - bytes on disk per row, all replicas counted.
//
// Every server of the cluster runs on this one machine, so the cluster's
// numbers are not a cluster's capacity: each row is written twice (two
// replicas) by the same CPUs. docs/cluster.md explains how to read them.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/neubot/neubot/analytics"
	"github.com/neubot/neubot/bench/internal/benchrows"
	"github.com/neubot/neubot/internal/chdb"
	"github.com/neubot/neubot/internal/localch"
	"github.com/neubot/neubot/internal/localcluster"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/schemas/schemastest"
)

func main() {
	bulk := flag.Int("rows", 2_000_000, "rows of the bulk insert (one day)")
	batchRows := flag.Int("batch-rows", 200_000, "rows of the collector-style insert")
	batch := flag.Int("batch", 10_000, "rows per batch of the collector-style insert")
	flag.Parse()
	if err := run(*bulk, *batchRows, *batch); err != nil {
		fmt.Fprintln(os.Stderr, "bench/cluster:", err)
		os.Exit(1)
	}
}

const day = "2026-11-20"

// target is one of the two set-ups under test.
type target struct {
	name string
	opts chdb.Options
	conn driver.Conn
	// local is the table holding the rows on each server: speedtest on
	// the single node, speedtest_local on the cluster.
	local string
	addrs []string
	res   map[string]float64
}

func run(bulk, batchRows, batchSize int) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "neubot-bench-cluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Fprintln(os.Stderr, "starting a single node and a 2×2 cluster with ZooKeeper...")
	single, err := localch.Start(ctx, localch.Config{Dir: filepath.Join(dir, "single"), Database: "bench", MaxMemoryBytes: 4 << 30})
	if err != nil {
		return err
	}
	defer single.Stop()
	cl, err := localcluster.Start(ctx, localcluster.Config{Dir: filepath.Join(dir, "cluster"), Name: "bench", Shards: 2, Replicas: 2, Database: "bench"})
	if err != nil {
		return err
	}
	defer cl.Stop()

	targets := []*target{
		{name: "single node", opts: single.Options(), local: "speedtest", addrs: []string{single.Addr()}},
		{name: "2 shards × 2 replicas", opts: cl.Options(), local: "speedtest_local", addrs: cl.Addrs()},
	}
	for _, t := range targets {
		if t.conn, err = chdb.Setup(ctx, t.opts, nil); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		defer t.conn.Close()
		t.res = map[string]float64{}
	}

	// The collector-style rows, made once, the same for both.
	fmt.Fprintf(os.Stderr, "making %d speedtest rows...\n", batchRows)
	rng := rand.New(rand.NewPCG(10, 16))
	test, _ := schemas.Lookup(schemas.SpeedtestName)
	cols := test.TableColumns()
	start, _ := time.Parse(time.DateOnly, "2026-11-19")
	rows := make([][]any, batchRows)
	for i := range rows {
		rec := schemastest.Speedtest(rng, start.Add(time.Duration(i)*time.Second/4), "151.5.10.20", 1+rng.Float64()*300)
		rows[i] = rec.Row(schemas.Annotation{ASN: 3269, Org: "bench", Country: "IT", Prefix: "151.5.10.0/24", IngestedAt: start.Add(time.Hour)}, nil)
	}

	for _, t := range targets {
		ictx := ctx
		if set := chdb.InsertSettings(t.opts); set != nil {
			ictx = clickhouse.Context(ctx, clickhouse.WithSettings(set))
		}
		fmt.Fprintf(os.Stderr, "%s: collector-style insert...\n", t.name)
		t0 := time.Now()
		for i := 0; i < len(rows); i += batchSize {
			b, err := t.conn.PrepareBatch(ictx, "INSERT INTO speedtest ("+strings.Join(cols, ", ")+")")
			if err != nil {
				return err
			}
			for _, r := range rows[i:min(i+batchSize, len(rows))] {
				if err := b.Append(r...); err != nil {
					b.Close()
					return err
				}
			}
			if err := b.Send(); err != nil {
				return fmt.Errorf("%s: insert: %w", t.name, err)
			}
		}
		t.res["batch"] = float64(len(rows)) / time.Since(t0).Seconds()
		if err := t.syncReplicas(ctx); err != nil {
			return err
		}
		t.res["batch+repl"] = float64(len(rows)) / time.Since(t0).Seconds()
		if err := t.optimize(ctx); err != nil {
			return err
		}
		bytes, err := t.diskBytes(ctx)
		if err != nil {
			return err
		}
		t.res["real bytes/row"] = float64(bytes) / float64(len(rows))

		fmt.Fprintf(os.Stderr, "%s: bulk insert of %d rows generated in ClickHouse...\n", t.name, bulk)
		t1 := time.Now()
		if err := t.conn.Exec(ictx, benchrows.SQL(bulk, day, true)); err != nil {
			return fmt.Errorf("%s: bulk insert: %w", t.name, err)
		}
		t.res["bulk"] = float64(bulk) / time.Since(t1).Seconds()
		if err := t.syncReplicas(ctx); err != nil {
			return err
		}
		t.res["bulk+repl"] = float64(bulk) / time.Since(t1).Seconds()
		if err := t.optimize(ctx); err != nil {
			return err
		}

		// Reads. The best of three: the first run warms caches.
		read := func(key string, f func() error) error {
			best := time.Duration(1 << 62)
			for i := 0; i < 3; i++ {
				t0 := time.Now()
				if err := f(); err != nil {
					return fmt.Errorf("%s: %s: %w", t.name, key, err)
				}
				best = min(best, time.Since(t0))
			}
			t.res[key] = best.Seconds()
			return nil
		}
		fmt.Fprintf(os.Stderr, "%s: reads...\n", t.name)
		var n uint64
		if err := read("count", func() error {
			return t.conn.QueryRow(ctx, "SELECT count() FROM speedtest FINAL WHERE toDate(start_time) = toDate('"+day+"')").Scan(&n)
		}); err != nil {
			return err
		}
		t.res["rows"] = float64(n)
		job := &analytics.Job{Conn: t.conn}
		if err := read("asn", func() error {
			if err := t.conn.Exec(ctx, "ALTER TABLE analytics_distributions DROP PARTITION '"+day+"'"); err != nil {
				return err
			}
			return job.RunScope(ctx, day, analytics.Goodsets[0], "asn")
		}); err != nil {
			return err
		}
		if err := read("isp", func() error {
			rows, err := t.conn.Query(clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"optimize_move_to_prewhere": 0})),
				"SELECT measurement_uid, start_time, download_mbps, upload_mbps, rtt_median_ms FROM speedtest FINAL WHERE toDate(start_time) = toDate('"+day+"') AND client_asn = 3269 ORDER BY toDate(start_time), measurement_uid LIMIT 1000")
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
			}
			return rows.Err()
		}); err != nil {
			return err
		}
		if bytes, err = t.diskBytes(ctx); err != nil {
			return err
		}
		t.res["bytes/row"] = float64(bytes) / float64(bulk+len(rows))
	}

	s, c := targets[0].res, targets[1].res
	if s["rows"] != c["rows"] || s["rows"] != float64(bulk) {
		return fmt.Errorf("count() FINAL: single node %v, cluster %v, want %d", s["rows"], c["rows"], bulk)
	}
	fmt.Printf("\nClickHouse 18.16: a single node vs a cluster of 2 shards × 2 replicas (4 servers + ZooKeeper), all on one machine of %d CPUs\n\n", runtime.NumCPU())
	fmt.Println("| what | single node | 2×2 cluster | cluster / single |")
	fmt.Println("|---|---|---|---|")
	rate := func(label, key string) {
		fmt.Printf("| %s, rows/s | %.0f | %.0f | %.2f |\n", label, s[key], c[key], c[key]/s[key])
	}
	secs := func(label, key string) {
		fmt.Printf("| %s, s | %.3f | %.3f | %.2f |\n", label, s[key], c[key], c[key]/s[key])
	}
	rate(fmt.Sprintf("collector-style insert, %d rows in batches of %d (acknowledged)", batchRows, batchSize), "batch")
	rate("the same, until every replica has the rows", "batch+repl")
	rate(fmt.Sprintf("bulk INSERT SELECT of %d rows (acknowledged)", bulk), "bulk")
	rate("the same, until every replica has the rows", "bulk+repl")
	secs(fmt.Sprintf("count() FINAL of the day (%d rows)", bulk), "count")
	secs("analytics step: per-ASN distributions of the day, inserted", "asn")
	secs("one ISP's day, first 1000 measurements (the API's query)", "isp")
	fmt.Printf("| bytes on disk per realistic row (the collector-style rows: arrays of samples), all replicas | %.0f | %.0f | %.2f |\n", s["real bytes/row"], c["real bytes/row"], c["real bytes/row"]/s["real bytes/row"])
	fmt.Printf("| bytes on disk per row, bulk rows included, all replicas | %.0f | %.0f | %.2f |\n", s["bytes/row"], c["bytes/row"], c["bytes/row"]/s["bytes/row"])
	return nil
}

// syncReplicas waits until every replica has fetched what was inserted.
func (t *target) syncReplicas(ctx context.Context) error {
	if t.opts.Cluster == "" {
		return nil
	}
	return t.each(ctx, func(c driver.Conn) error { return c.Exec(ctx, "SYSTEM SYNC REPLICA "+t.local) })
}

// optimize merges the table's parts on every server (FINAL then reads one
// part per partition, as it will after background merges) and waits until
// every replica has the merged parts.
func (t *target) optimize(ctx context.Context) error {
	if err := t.each(ctx, func(c driver.Conn) error { return c.Exec(ctx, "OPTIMIZE TABLE "+t.local+" FINAL") }); err != nil {
		return err
	}
	return t.syncReplicas(ctx)
}

func (t *target) diskBytes(ctx context.Context) (uint64, error) {
	var total uint64
	err := t.each(ctx, func(c driver.Conn) error {
		var b uint64
		err := c.QueryRow(ctx, "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = currentDatabase() AND table = ?", t.local).Scan(&b)
		total += b
		return err
	})
	return total, err
}

func (t *target) each(ctx context.Context, f func(driver.Conn) error) error {
	for _, a := range t.addrs {
		o := t.opts
		o.Addr, o.More, o.MaxOpenConns = a, nil, 1
		c, err := chdb.Open(ctx, o)
		if err != nil {
			return err
		}
		err = f(c)
		c.Close()
		if err != nil {
			return fmt.Errorf("%s: %s: %w", t.name, a, err)
		}
	}
	return nil
}
