package main

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/neubot/neubot/collector"
	"github.com/neubot/neubot/internal/spool"
)

func cmdCollector(args []string) error {
	fs := newFlagSet("collector", "Run the collector: POST /api/v1/measurements, a write-ahead spool and the ClickHouse loader.")
	listen := fs.String("listen", defaultCollectorAddr, "address to serve the collector API on")
	spoolDir := fs.String("spool-dir", "neubot-spool", "directory of the write-ahead spool (one per collector)")
	ch := addClickHouseFlags(fs)
	ipdb := addIPDBFlag(fs)
	maxAge := fs.Duration("batch-max-age", time.Second, "load a batch at the latest this long after its first record arrived")
	maxRecords := fs.Int("batch-max-records", 100_000, "load a batch when it holds this many records")
	drain := fs.Duration("drain-timeout", 10*time.Second, "on shutdown, load the spool for at most this long; the rest is kept")
	registerToken := fs.String("register-token", "", "bearer token test servers must present to register (volunteers' agents serving peers need none: they are checked by connecting back)")
	peerNets := fs.String("peer-networks", "", "comma-separated networks peers may also register from, besides the public Internet (e.g. 10.0.0.0/8 for a lab)")
	trustProxy := fs.Bool("trust-proxy", false, "take peers' addresses from X-Forwarded-For (only behind your own proxy or load balancer, which sets it)")
	perAddress := fs.Int("max-per-address", 2, "ingest requests in progress from one address (an IPv6 /64); more get 429")
	addrRate := fs.Int64("address-bytes-per-second", 1<<20, "decompressed ingest bytes a second of one address (an IPv6 /64); the burst is 64 seconds of it")
	minRate := fs.Int64("min-body-rate", 4096, "least average rate of an ingest body, bytes a second, after a 10 s grace; slower bodies get 408")
	tf := addTrustFlags(fs)
	noPeers := fs.Bool("no-peers", false, "turn peer-to-peer mode off: refuse volunteers' agents that offer to serve tests, list no peers")
	latest := fs.String("latest-agent-version", "", "the newest release of the volunteers' agent, announced in rendezvous answers: older agents say in their web UI that a newer version exists (they never update themselves)")
	lf := addLogFlags(fs, "json")
	log, err := parseLogged(fs, args, lf)
	if err != nil {
		return err
	}
	if *perAddress <= 0 || *minRate <= 0 || *addrRate <= 0 {
		return fmt.Errorf("--max-per-address, --address-bytes-per-second and --min-body-rate must be positive")
	}
	if *maxAge <= 0 || *maxRecords <= 0 {
		return fmt.Errorf("--batch-max-age and --batch-max-records must be positive")
	}
	var nets []netip.Prefix
	for _, n := range strings.Split(*peerNets, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return fmt.Errorf("--peer-networks: %q is not a network like 10.0.0.0/8: %v", n, err)
		}
		nets = append(nets, p.Masked())
	}
	db2, err := openIPDB(*ipdb, log)
	if err != nil {
		return err
	}
	trust, err := tf.defaults(*spoolDir).load(log)
	if err != nil {
		return err
	}
	svc, err := startCollector(*listen, collector.Config{
		SpoolDir:      *spoolDir,
		Spool:         spool.Options{MaxAge: *maxAge, MaxRecords: *maxRecords},
		ClickHouse:    ch.options(),
		IPDB:          db2,
		Logger:        log,
		NoPeers:       *noPeers,
		PeerNetworks:  nets,
		TrustProxy:    *trustProxy,
		RegisterToken: *registerToken,
		MaxPerAddress: *perAddress,
		MinBodyRate:   *minRate,

		AddressBytesPerSecond: *addrRate,
		AddressBurstBytes:     min(*addrRate, 1<<50) * 64,
		Enrolled:              trust.enrolled,
		Key:                   trust.key,
		PseudonymSecret:       trust.secret,
		Limits:                trust.limits,
		LatestAgentVersion:    *latest,
	})
	if err != nil {
		return err
	}
	log.Info("collector listening", "url", svc.http.URL(), "spool", *spoolDir, "clickhouse", ch.addr.String(), "cluster", *ch.cluster)
	ctx, cancel := signalContext()
	defer cancel()
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-svc.http.Done():
	}
	svc.stop(*drain)
	return err
}
