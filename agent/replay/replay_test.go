package replay_test

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/neubot/neubot/agent/plugin/plugintest"
	"github.com/neubot/neubot/agent/replay"
	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/internal/localch/localchtest"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver/service"
	"github.com/neubot/neubot/testserver/service/servicetest"
)

func TestMain(m *testing.M) { os.Exit(localchtest.Main(m)) }

// TestEndToEnd replays the TLS video trace against a real test server on
// loopback whose records go to a real collector and ClickHouse: the merged
// record has the server's samples of every flow, a decision, and lands
// once in the replay table.
func TestEndToEnd(t *testing.T) {
	col := collectortest.Start(t)
	svc, url := servicetest.Start(t, service.Config{ID: "ts-replay", CollectorURL: col.Server.URL, ReplayListen: "127.0.0.1:0"})
	if reg := svc.Registration(url); !slices.Contains(reg.Tests, schemas.ReplayName) {
		t.Fatalf("registration lists %v", reg.Tests)
	}
	rec, err := replay.NewMeasurer(replay.Config{Repetitions: 2, FlowDuration: 400 * time.Millisecond, SampleEvery: 50 * time.Millisecond, Warmup: 10 * time.Millisecond, SNI: "video.example.net"}).Run(context.Background(), plugintest.Env(url))
	if err != nil {
		t.Fatal(err)
	}
	k := rec.TestKeys.(*schemas.Replay)
	if k.ServerView == nil || k.ServerView.Flows != 4 || len(k.Flows) != 4 || k.Comparison == nil || k.SNI != "video.example.net" || int(k.Port) != svc.ReplayPort() {
		t.Fatalf("merged record: %+v", k)
	}
	for _, f := range k.Flows {
		// At loopback speed the whole trace can go within a sample or two.
		if f.Error != "" || f.ServerError != "" || len(f.Samples) < 1 || f.Bytes == 0 {
			t.Errorf("flow %d (%s): errors %q/%q, %d samples, %g/%g Mbit/s", f.Index, f.Kind, f.Error, f.ServerError, len(f.Samples), f.Mbps, f.ClientMbps)
		}
	}
	col.WaitLoaded(t, 30*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n uint64
		err := col.Conn.QueryRow(context.Background(), "SELECT count() FROM replay FINAL WHERE measurement_uid = toUUID(?) AND server_view = 1 AND sni = 'video.example.net' AND length(flow_samples_mbps) = 4", rec.MeasurementUID).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the record is not in the replay table (%d rows)", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
