package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/internal/version"
	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/testserver"
	"github.com/neubot/neubot/testserver/service"
)

// testserverService is a running test server.
type testserverService struct {
	svc    *service.Service
	http   *httpx.Server
	cancel context.CancelFunc
	done   chan struct{}
	log    *slog.Logger
}

type testserverOptions struct {
	listen, id, collectorURL, publicURL, spoolDir, registerToken string
	bittorrentListen, neutralListen                              string
	webListen, bittorrentHosts, replayListen                     string
	capacity                                                     int
	testTimeout                                                  time.Duration
	rate                                                         float64
	tlsCert, tlsKey                                              string
	ndt7Duration                                                 time.Duration
	ndt7Untokened                                                bool
	keyFile                                                      string
}

func startTestserver(o testserverOptions, log *slog.Logger) (*testserverService, error) {
	key, err := identity.LoadOrCreate(o.keyFile)
	if err != nil {
		return nil, err
	}
	log.Info("testserver identity", "key", key.Public(), "key_file", o.keyFile,
		"enroll", fmt.Sprintf("neubot-server enroll --enrolled FILE --key %s --id %s", key.Public(), o.id))
	svc, err := service.New(service.Config{
		ID: o.id, Version: version.Version, CollectorURL: o.collectorURL, SpoolDir: o.spoolDir, Logger: log, Key: key,
		Negotiator:   testserver.NegotiatorConfig{Capacity: o.capacity, TestTimeout: o.testTimeout, Rate: o.rate},
		NDT7Duration: o.ndt7Duration, NDT7AllowUntokened: o.ndt7Untokened,
		BitTorrentListen: o.bittorrentListen, NeutralListen: o.neutralListen, WebListen: o.webListen,
		BitTorrentHosts: splitList(o.bittorrentHosts), ReplayListen: o.replayListen,
	})
	if err != nil {
		return nil, err
	}
	var tlsConfig *tls.Config
	if o.tlsCert != "" || o.tlsKey != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			svc.Close()
			return nil, fmt.Errorf("--tls-cert and --tls-key: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	srv, err := httpx.ListenTLS(o.listen, svc.Handler(), log, tlsConfig)
	if err != nil {
		svc.Close()
		return nil, err
	}
	public := o.publicURL
	if public == "" {
		public = srv.URL()
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &testserverService{svc: svc, http: srv, cancel: cancel, done: make(chan struct{}), log: log}
	go func() {
		defer close(t.done)
		if o.collectorURL == "" {
			svc.Run(ctx)
			return
		}
		reg := &testserver.Registrar{
			CollectorURL: o.collectorURL,
			Token:        o.registerToken,
			Key:          key,
			Info:         func() rendezvous.ServerRegistration { return svc.Registration(public) },
			Logger:       log,
		}
		regDone := make(chan struct{})
		go func() {
			defer close(regDone)
			if err := reg.Run(ctx); err != nil {
				log.Error("testserver: not registered with the collector", "err", err)
			}
		}()
		svc.Run(ctx)
		<-regDone
	}()
	return t, nil
}

func (t *testserverService) stop() {
	// Waiting agents get their answer now; then in-flight tests end.
	t.svc.Negotiator().Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = t.http.Shutdown(ctx)
	// Deliver what is waiting for the collector, briefly (a budget of its
	// own); the rest stays spooled for the next start.
	fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer fcancel()
	t.svc.Forwarder().Drain(fctx)
	t.cancel()
	<-t.done
	if n := t.svc.Forwarder().Pending(); n > 0 {
		t.log.Info("testserver: records kept in the spool for the next start", "records", n)
	}
	t.svc.Close()
}

func hostnameID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "testserver"
	}
	return h
}

func cmdTestserver(args []string) error {
	fs := newFlagSet("testserver", "Run a test server: negotiation (tokens, FIFO queue, per-test timer), the speedtest, ndt7\n(and its browser page at /ndt7/), the BitTorrent differential test, and forwarding of authoritative\nrecords to the collector through a spool.")
	var o testserverOptions
	fs.StringVar(&o.listen, "listen", defaultTestserverAddr, "address to serve tests on")
	fs.StringVar(&o.bittorrentListen, "bittorrent-listen", defaultBitTorrentAddr, "raw TCP address of the BitTorrent test's BitTorrent-port flows (empty, with --neutral-listen empty: no BitTorrent test)")
	fs.StringVar(&o.neutralListen, "neutral-listen", defaultNeutralAddr, "raw TCP address of the BitTorrent test's neutral-port flows")
	fs.StringVar(&o.webListen, "web-listen", "", "raw TCP address of the BitTorrent test's web-port flows, e.g. :443 (empty: no web-port flows)")
	fs.StringVar(&o.replayListen, "replay-listen", "", "raw TCP address of the replay test's flows, e.g. :443 on an address of its own (empty: no replay test)")
	fs.StringVar(&o.bittorrentHosts, "bittorrent-hosts", "", "more IP addresses of this server, comma-separated, to listen on with the same ports: a test spreads its flows over them (host attribution)")
	fs.StringVar(&o.id, "id", hostnameID(), "identifier of this server in the rendezvous and in records")
	fs.StringVar(&o.collectorURL, "collector", "http://"+defaultCollectorAddr, "collector base URL (records and registration); empty: only spool")
	fs.StringVar(&o.publicURL, "public-url", "", "URL agents use to reach this server (default: http://LISTEN)")
	fs.StringVar(&o.spoolDir, "spool-dir", "neubot-testserver-spool", "directory of records waiting for the collector")
	fs.StringVar(&o.keyFile, "key-file", "neubot-testserver.key", "this server's Ed25519 identity, made on first start; the collector's operator enrolls its public key (neubot-server enroll)")
	fs.StringVar(&o.registerToken, "register-token", "", "bearer token for registering with the collector, if it requires one")
	fs.IntVar(&o.capacity, "capacity", 2, "tests allowed at once; further agents wait in FIFO order")
	fs.DurationVar(&o.testTimeout, "test-timeout", 30*time.Second, "revoke a token whose test has not collected within this")
	fs.Float64Var(&o.rate, "negotiate-rate", 1, "negotiate requests per second allowed per client address (burst 20)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate: serve over TLS (https, and wss for ndt7); with --tls-key")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.DurationVar(&o.ndt7Duration, "ndt7-duration", 10*time.Second, "length of each ndt7 subtest (the specification's is 10 s)")
	fs.BoolVar(&o.ndt7Untokened, "ndt7-untokened", false, "let stock ndt7 clients test without a token when a slot is free (no record is made: no consent)")
	lf := addLogFlags(fs, "json")
	log, err := parseLogged(fs, args, lf)
	if err != nil {
		return err
	}
	if o.capacity < 1 || o.testTimeout < time.Second || o.rate <= 0 {
		return errors.New("--capacity must be >= 1, --test-timeout >= 1s, --negotiate-rate > 0")
	}
	if o.ndt7Duration < time.Second || o.ndt7Duration > 10*time.Second {
		return errors.New("--ndt7-duration must be from 1s to 10s")
	}
	t, err := startTestserver(o, log)
	if err != nil {
		return err
	}
	log.Info("testserver listening", "url", t.http.URL(), "id", o.id, "collector", o.collectorURL)
	ctx, cancel := signalContext()
	defer cancel()
	select {
	case <-ctx.Done():
	case err = <-t.http.Done():
		if err != nil {
			err = fmt.Errorf("testserver: %w", err)
		}
	}
	t.stop()
	return err
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
