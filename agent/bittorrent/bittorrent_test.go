package bittorrent_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/neubot/neubot/agent/bittorrent"
	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/plugin/plugintest"
	"github.com/neubot/neubot/collector/collectortest"
	"github.com/neubot/neubot/internal/localch/localchtest"
	btproto "github.com/neubot/neubot/proto/bittorrent"
	"github.com/neubot/neubot/proto/bittorrent/wire"
	"github.com/neubot/neubot/proto/negotiate"
	"github.com/neubot/neubot/proto/speedtest"
	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver/service"
	"github.com/neubot/neubot/testserver/service/servicetest"
)

func TestMain(m *testing.M) { os.Exit(localchtest.Main(m)) }

// quick is a short methodology for functional tests on loopback, where a
// flow reaches its byte limit within a few samples (on an idle machine,
// before its first interval after the warm-up: see TestEndToEnd).
var quick = bittorrent.Config{Repetitions: 1, FlowDuration: 300 * time.Millisecond, SampleEvery: 50 * time.Millisecond, Warmup: 10 * time.Millisecond, MaxFlowBytes: 32 << 20}

// TestEndToEnd runs the test against a real test server on loopback, whose
// records go to a real collector and ClickHouse: the merged record has the
// server's upload samples and comparisons in both directions, and lands
// once in the bittorrent table.
func TestEndToEnd(t *testing.T) {
	col := collectortest.Start(t)
	svc, url := servicetest.Start(t, service.Config{ID: "ts-bt", CollectorURL: col.Server.URL,
		BitTorrentListen: "127.0.0.1:0", NeutralListen: "127.0.0.1:0", WebListen: "127.0.0.1:0", BitTorrentHosts: []string{"127.0.0.2", "127.0.0.3"}})
	if reg := svc.Registration(url); !slices.Contains(reg.Tests, schemas.BitTorrentName) {
		t.Fatalf("registration lists %v", reg.Tests)
	}
	var phases []string
	cfg := quick
	cfg.Repetitions = 3 // the fewest that every comparison of the grid can decide on
	e := plugintest.Env(url)
	e.Progress = func(p plugin.Progress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
	}
	rec, err := bittorrent.NewMeasurer(cfg).Run(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	k := rec.TestKeys.(*schemas.BitTorrent)
	// The grid: six kinds in both directions, 3 repetitions, over three
	// addresses; 4 factor comparisons and 3 addresses per direction.
	if k.ServerView == nil || k.ServerView.Flows != 36 || len(k.Flows) != 36 || len(k.Comparisons) != 14 || k.Hosts != 3 {
		t.Fatalf("merged record: %+v", k)
	}
	bt, neutral := svc.BitTorrentPorts()
	ports := map[string]int{schemas.PortApplication: bt, schemas.PortNeutral: neutral, schemas.PortWeb: svc.BitTorrentWebPort()}
	hosts := map[uint8]bool{}
	for _, f := range k.Flows {
		if f.Error != "" || f.ServerError != "" || len(f.Samples) < 1 || f.Mbps <= 0 || len(f.ServerSamples) < 1 || f.ServerMbps <= 0 {
			t.Errorf("flow %d (%s %s): error %q/%q, %d/%d samples, %g/%g Mbit/s", f.Index, f.Kind, f.Direction, f.Error, f.ServerError,
				len(f.Samples), len(f.ServerSamples), f.Mbps, f.ServerMbps)
		}
		if payload, role := schemas.KindCell(f.Kind); int(f.Port) != ports[role] || f.Payload != payload || f.PortRole != role {
			t.Errorf("flow %d (%s) on port %d (%s, %s)", f.Index, f.Kind, f.Port, f.Payload, f.PortRole)
		}
		hosts[f.Host] = true
	}
	if len(hosts) != 3 {
		t.Errorf("flows reached addresses %v, want 3", hosts)
	}
	// At loopback speed a 64 MiB flow can end within its first sampling
	// interval, which the warm-up leaves out: a comparison without samples
	// on a side must then say inconclusive, never decide. (Decisions are
	// tested on shaped links: bench/bittorrent's TestDetection.)
	for _, c := range k.Comparisons {
		if c.ThresholdPct != 25 || ((c.Samples == 0 || c.ControlSamples == 0) && c.Outcome != schemas.OutcomeInconclusive) {
			t.Errorf("comparison %+v", c)
		}
	}
	if strings.Join(phases, " ") != "negotiate download upload download upload download upload collect" { // a repetition is both directions
		t.Errorf("phases %v", phases)
	}
	if k.ClientCheckFlows == 0 {
		t.Errorf("no download flow cross-checked")
	}
	col.WaitLoaded(t, 30*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n uint64
		var outcome string
		err := col.Conn.QueryRow(context.Background(), "SELECT count(), any(outcome) FROM bittorrent FINAL WHERE measurement_uid = toUUID(?) AND server_view = 1 AND length(cmp_ks_p) = 14 AND hosts = 3 AND length(flow_server_samples_mbps) = 36", rec.MeasurementUID).Scan(&n, &outcome)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 && outcome == k.Outcome {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the record is not in the bittorrent table (%d rows)", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestListenerGate: the raw listeners answer nothing to a stream without
// a live flow key, and a speedtest token cannot start a BitTorrent test.
func TestListenerGate(t *testing.T) {
	svc, url := servicetest.Start(t, service.Config{BitTorrentListen: "127.0.0.1:0", NeutralListen: "127.0.0.1:0"})
	resp, err := http.Post(url+speedtest.NegotiatePath, "application/json", strings.NewReader(`{"measurement_uid":"6f1c1b2e-2c2a-4f55-8f0e-1d1c2b3a4d5e"}`))
	if err != nil {
		t.Fatal(err)
	}
	var nr struct{ Token string }
	json.NewDecoder(resp.Body).Decode(&nr)
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodPost, url+btproto.StartPath, strings.NewReader(`{"flow_duration_s":1,"sample_every_s":0.1}`))
	req.Header.Set(negotiate.TokenHeader, negotiate.BearerPrefix+nr.Token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a speedtest token starting a BitTorrent test: %v %v, want 403", resp.Status, err)
	}
	bt, _ := svc.BitTorrentPorts()
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(bt))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	key := wire.FlowKey("not a token", schemas.FlowBitTorrent, schemas.DirDownload, 0)
	if _, err := c.Write(wire.Handshake(key, wire.PeerID())); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 68)); !errors.Is(err, io.EOF) {
		t.Fatalf("an unknown key got %d bytes, %v; want the connection closed", n, err)
	}
}

// TestTriggered checks the configuration for triggered throttling:
// methodology 2's flows, download only, on BitTorrent's and the neutral
// port with both payloads, each to 4 MiB and as long again; from 12
// Mbit/s up (a 20 Mbit/s link that on-off cross traffic takes 40% of) its
// 12 flows fit the 80 s flow budget (on slower links the budget leaves the
// last ones out); its 6 port pairs decide differentiation when all are
// slower, not with one spoiled.
func TestTriggered(t *testing.T) {
	cfg := bittorrent.Triggered()
	if !slices.Equal(cfg.Directions, []string{schemas.DirDownload}) || cfg.Duels || cfg.KneeBytes != bittorrent.TriggerKnee {
		t.Fatalf("%+v: want sequential download flows to the knee", cfg)
	}
	kinds := []string{schemas.FlowBitTorrent, schemas.FlowRandom, schemas.FlowNeutral, schemas.FlowRandomNeutral}
	if !slices.Equal(cfg.Kinds, kinds) {
		t.Fatalf("kinds %v, want %v", cfg.Kinds, kinds)
	}
	flows := cfg.Repetitions * len(cfg.Kinds)
	perFlow := 2 * time.Duration(float64(cfg.KneeBytes*8)/12e6*float64(time.Second))
	if d := time.Duration(flows) * perFlow; d > 80*time.Second || perFlow > cfg.FlowDuration {
		t.Fatalf("%d flows of %v at 12 Mbit/s (at most %v): %v, more than the 80 s flow budget", flows, perFlow, cfg.FlowDuration, d)
	}
	pairs := 2 * cfg.Repetitions // application_port: bittorrent-neutral and random-random_neutral per repetition
	for spoiled, want := range map[int]string{0: schemas.OutcomeDifferentiation, 1: schemas.OutcomeNone} {
		var ps []wire.Pair
		for i := 0; i < pairs; i++ {
			tested := wire.FlowStat{Rate: 4, OK: true}
			if i < spoiled {
				tested.Rate = 10
			}
			ps = append(ps, wire.Pair{Tested: tested, Controls: []wire.FlowStat{{Rate: 10, OK: true}}})
		}
		if got := wire.ComparePairs(ps, wire.Criteria.Alpha).Outcome; got != want {
			t.Errorf("%d of %d pairs spoiled: %s, want %s", spoiled, len(ps), got, want)
		}
	}
}
