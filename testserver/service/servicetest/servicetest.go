// Package servicetest runs a real test server for tests: the real service
// on a loopback socket (its handlers read TCP_INFO from the connection),
// its spool in a temporary directory, stopped when the test ends.
package servicetest

import (
	"testing"

	"github.com/neubot/neubot/internal/webtest"
	"github.com/neubot/neubot/schemas/schemastest"
	"github.com/neubot/neubot/testserver/service"
)

// Start runs a test server; cfg may be partly filled (ID and Key, Version and
// SpoolDir get test values when empty; the BitTorrent test's listeners get
// free loopback ports). It returns the service and its URL.
func Start(t testing.TB, cfg service.Config) (*service.Service, string) {
	t.Helper()
	if cfg.ID == "" {
		// The identity schemastest.Enrolled enrolls, as collectortest's
		// collectors do: this server's records are verified there.
		cfg.ID = schemastest.ServerID
		if cfg.Key == nil {
			cfg.Key = schemastest.ServerKey
		}
	}
	if cfg.Version == "" {
		cfg.Version = "test"
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = t.TempDir()
	}
	if cfg.BitTorrentListen == "" && cfg.NeutralListen == "" {
		cfg.BitTorrentListen, cfg.NeutralListen = "127.0.0.1:0", "127.0.0.1:0"
	}
	svc, err := service.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return svc, webtest.Serve(t, svc.Handler(), svc.Run, func() error { svc.Close(); return nil })
}
