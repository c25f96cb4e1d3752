package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/neubot/neubot/agent"
	"github.com/neubot/neubot/analytics/simulate"
	"github.com/neubot/neubot/collector"
	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/internal/localch"
	"github.com/neubot/neubot/publish"
)

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "neubot-server")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "neubot-server")
	}
	return "neubot-server-data"
}

func cmdUp(args []string) error {
	fs := newFlagSet("up", "Run the whole platform on one machine: a local ClickHouse (started from the\nclickhouse-server binary, data under --data) and the collector. Ctrl-C stops everything.")
	data := fs.String("data", defaultDataDir(), "directory for ClickHouse data, the spool and state")
	chPort := fs.Int("clickhouse-port", 0, "native protocol port of the local ClickHouse (0: a free one)")
	chBin := fs.String("clickhouse-binary", "", "path of clickhouse-server (default: found on PATH, /usr/sbin, /usr/bin)")
	collectorAddr := fs.String("collector", defaultCollectorAddr, "address of the collector")
	testserverAddr := fs.String("testserver", defaultTestserverAddr, "address of the test server")
	btAddr := fs.String("bittorrent", defaultBitTorrentAddr, "raw TCP address of the BitTorrent test's BitTorrent-port flows")
	neutralAddr := fs.String("neutral", defaultNeutralAddr, "raw TCP address of the BitTorrent test's neutral-port flows")
	replayAddr := fs.String("replay", "127.0.0.1:0", "raw TCP address of the replay test's flows (port 0: a free one, announced to clients; empty: no replay test)")
	capacity := fs.Int("capacity", 2, "tests the test server allows at once")
	agentAddr := fs.String("agent", "127.0.0.1:9774", "address of the local agent's web UI (loopback)")
	agentPeer := fs.String("agent-peer-listen", "127.0.0.1:9777", "where the local agent serves other agents' tests once its volunteer turns serving peers on (empty: never)")
	publishAddr := fs.String("publish", defaultPublishAddr, "address of the public query API")
	analyticsSpec := fs.String("analytics-schedule", "* * * * *", "cron spec of the analytics runs (days whose data changed)")
	exportSpec := fs.String("export-schedule", "*/10 * * * *", "cron spec of the export of the daily dumps (days not exported yet)")
	demo := fs.Bool("demo", false, "also seed the last days with a simulated fleet (records marked synthetic=1)")
	demoAgents := fs.Int("demo-agents", 500, "agents of the simulated fleet with --demo")
	demoDays := fs.Int("demo-days", 3, "days of simulated tests with --demo")
	latest := fs.String("latest-agent-version", "", "announce this as the newest agent release in rendezvous answers (see collector --latest-agent-version)")
	ipdb := addIPDBFlag(fs)
	pprofAddr := fs.String("pprof", "", "serve Go's profiles (net/http/pprof) at this loopback address, for an operator chasing latency (empty: none)")
	lf := addLogFlags(fs, "text")
	log, err := parseLogged(fs, args, lf)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()

	db, err := openIPDB(*ipdb, log)
	if err != nil {
		return err
	}
	// Every component started is pushed on the shutdown stack, which
	// stops them in the reverse order on any return.
	var stop shutdownStack
	defer stop.unwind()
	if *pprofAddr != "" {
		srv, err := startPprof(*pprofAddr, log)
		if err != nil {
			return err
		}
		stop.push(func() { srv.Shutdown(context.Background()) })
	}
	sctx, scancel := context.WithTimeout(ctx, 2*time.Minute)
	ch, err := localch.Start(sctx, localch.Config{
		Dir:     filepath.Join(*data, "clickhouse"),
		Binary:  *chBin,
		TCPPort: *chPort,
		Logger:  log,
	})
	scancel()
	if err != nil {
		return err
	}
	stop.push(func() { ch.Stop() })

	// The analytics first: what fails here fails before any service runs.
	anConn, err := ch.Connect(context.Background())
	if err != nil {
		return err
	}
	stop.push(func() { anConn.Close() })
	key, err := drawKey(filepath.Join(*data, "analytics-draw.key"))
	if err != nil {
		return err
	}
	an, err := startAnalytics(anConn, *analyticsSpec, key, log)
	if err != nil {
		return err
	}
	stop.push(an.close)

	// The platform's identities (spec/trust.md): the local test server's
	// key is enrolled in the collector's allow-list, as an operator would
	// with `neubot-server enroll`.
	tsKeyFile := filepath.Join(*data, "testserver.key")
	tsKey, err := identity.LoadOrCreate(tsKeyFile)
	if err != nil {
		return err
	}
	enrolled := filepath.Join(*data, "collector-enrolled.txt")
	if _, err := identity.Enroll(enrolled, tsKey.Public(), "local"); err != nil {
		return err
	}
	tr, err := trustFlags{keyFile: ptr(filepath.Join(*data, "collector.key")), enrolled: &enrolled,
		secretFile: ptr(filepath.Join(*data, "collector-pseudonym.secret")),
		addrRate:   ptr(float64(collector.DefaultAddressRate)), addrBurst: ptr(collector.DefaultAddressBurst),
		agentRate: ptr(float64(collector.DefaultAgentRate)), agentBurst: ptr(collector.DefaultAgentBurst)}.load(log)
	if err != nil {
		return err
	}

	col, err := startCollector(*collectorAddr, collector.Config{
		Enrolled: tr.enrolled, Key: tr.key, PseudonymSecret: tr.secret, Limits: tr.limits,
		SpoolDir:   filepath.Join(*data, "spool"),
		ClickHouse: ch.Options(),
		IPDB:       db,
		Logger:     log,
		// The platform on one machine: its agent serves peers on loopback.
		PeerNetworks:       []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		LatestAgentVersion: *latest,
	})
	if err != nil {
		return err
	}
	stop.push(func() { col.stop(10 * time.Second) })

	ts, err := startTestserver(testserverOptions{
		listen: *testserverAddr, id: "local", collectorURL: col.http.URL(),
		spoolDir: filepath.Join(*data, "testserver-spool"), capacity: *capacity,
		testTimeout: 30 * time.Second, rate: 1, bittorrentListen: *btAddr, neutralListen: *neutralAddr,
		keyFile: tsKeyFile, replayListen: *replayAddr,
	}, log)
	if err != nil {
		return err
	}
	stop.push(ts.stop)

	// Real dumps under datasets/, once their day closed; with --demo the
	// simulated data's under datasets-synthetic/, through yesterday.
	realDir, synDir := filepath.Join(*data, "datasets"), filepath.Join(*data, "datasets-synthetic")
	pubCfg := publish.Config{Conn: anConn, IPDB: db, Logger: log, DatasetsDir: realDir, Demo: *demo}
	exports := []*scheduler{}
	ex, err := startExports(*exportSpec, publish.ClosedAfter, log, exportConfig(anConn, db, realDir, false, tr.key))
	if err != nil {
		return err
	}
	stop.push(ex.close)
	exports = append(exports, ex)
	if *demo {
		pubCfg.SyntheticDatasetsDir = synDir
		ex, err := startExports(*exportSpec, 0, log, exportConfig(anConn, db, synDir, true, tr.key))
		if err != nil {
			return err
		}
		stop.push(ex.close)
		exports = append(exports, ex)
	}
	pub, err := httpx.Listen(*publishAddr, publish.New(pubCfg).Handler(), log)
	if err != nil {
		return err
	}
	stop.push(func() { pub.Shutdown(context.Background()) })

	// One real agent, as a volunteer runs it: it finds the test server
	// through the collector's rendezvous and uploads to the collector. It
	// measures nothing until consent is given in its web UI.
	ag, err := agent.New(agent.Options{StateDir: filepath.Join(*data, "agent"), CollectorURL: col.http.URL(), PublicAPIURL: pub.URL(), Logger: log,
		PeerListen: *agentPeer})
	if err != nil {
		return err
	}
	stop.push(func() { ag.Close() })
	agSrv, err := httpx.Listen(*agentAddr, ag.Handler(), log)
	if err != nil {
		return err
	}
	stop.push(func() {
		actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer acancel()
		_ = agSrv.Shutdown(actx)
	})
	agCtx, agCancel := context.WithCancel(context.Background())
	agDone := make(chan struct{})
	go func() { ag.Run(agCtx); close(agDone) }()
	stop.push(func() { agCancel(); <-agDone })

	if *demo {
		// Seed in the background: the services are up meanwhile.
		go func() {
			fleet, err := simulate.NewFleet(simulate.Config{Agents: *demoAgents, Days: *demoDays, TestsPerAgentDay: 8, Seed: uint64(time.Now().UnixNano()), IPDB: db, Logger: log})
			if err == nil {
				var n int
				n, err = fleet.Submit(context.Background(), col.http.URL(), 1000, nil)
				if err == nil {
					fmt.Printf("neubot-server up: demo: %d simulated tests of %d agents over %d days submitted (synthetic=1; never in real dumps)\n", n, *demoAgents, *demoDays)
					// Once everything is loaded, the demo's dumps right away
					// rather than at the next tick (its days are then
					// complete: nothing else submits simulated tests).
					wctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					col.c.WaitLoaded(wctx)
					cancel()
					if len(exports) > 1 {
						exports[1].run()
					}
				}
			}
			if err != nil {
				log.Error("demo: seeding failed", "err", err)
			}
		}()
	}

	fmt.Printf(`neubot-server up: running (data in %s)
  clickhouse  %s   database %s
  collector   %s   POST /api/v1/measurements, POST /api/v1/rendezvous, GET /metrics
  testserver  %s   speedtest, bittorrent; try: neubot run speedtest --server %s
  ndt7        %s/ndt7/   ndt7 in a browser; or: neubot run ndt7 --server %s
  publish     %s/   dashboards (/, /isp/{asn}), open data (/data, /datasets/), API (/api/v1/openapi.json)
  agent       %s/   web UI of a local agent (consent first)
  analytics   scheduler "%s": distributions of the days whose data changed
  exports     scheduler "%s": daily dumps under %s
Press Ctrl-C to stop.
`, *data, ch.URL(), ch.Options().Database, col.http.URL(), ts.http.URL(), ts.http.URL(), ts.http.URL(), ts.http.URL(), pub.URL(), agSrv.URL(), *analyticsSpec, *exportSpec, realDir)

	select {
	case <-ctx.Done():
	case err = <-col.http.Done():
	case err = <-ts.http.Done():
	case err = <-agSrv.Done():
	case <-ch.Done():
		err = fmt.Errorf("clickhouse-server exited; see %s", filepath.Join(*data, "clickhouse", "log"))
	}
	fmt.Println("neubot-server up: stopping")
	return err // the deferred unwind stops everything, the agent first
}

// shutdownStack holds the stop functions of the components started, in
// the order they started; unwind calls them in the reverse order, once.
type shutdownStack []func()

func (s *shutdownStack) push(stop func()) { *s = append(*s, stop) }

func (s *shutdownStack) unwind() {
	for i := len(*s) - 1; i >= 0; i-- {
		(*s)[i]()
	}
	*s = nil
}

func ptr[T any](v T) *T { return &v }
