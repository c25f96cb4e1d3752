// Package registry makes the test server's tests known by name: one line
// per test, as agent/registry does for the agent's side. Adding a test is a
// folder in testserver/ exporting New (a testserver.Provider) and a line
// here; testserver/service serves every test registered.
package registry

import (
	"fmt"
	"maps"
	"slices"

	"github.com/neubot/neubot/schemas"
	"github.com/neubot/neubot/testserver"
	"github.com/neubot/neubot/testserver/bittorrent"
	"github.com/neubot/neubot/testserver/ndt7"
	"github.com/neubot/neubot/testserver/ping"
	"github.com/neubot/neubot/testserver/replay"
	"github.com/neubot/neubot/testserver/speedtest"
)

var tests = map[string]func(testserver.Env) (testserver.Provider, error){
	schemas.SpeedtestName:  speedtest.New,
	schemas.NDT7Name:       ndt7.New,
	schemas.BitTorrentName: bittorrent.New,
	schemas.PingName:       ping.New,
	schemas.ReplayName:     replay.New,
}

// New returns the provider of the named test (testserver.ErrNotOffered
// when env's settings do not offer it).
func New(name string, env testserver.Env) (testserver.Provider, error) {
	mk, ok := tests[name]
	if !ok {
		return nil, fmt.Errorf("testserver: unknown test %q", name)
	}
	return mk(env)
}

// Names lists the known tests, sorted.
func Names() []string {
	return slices.Sorted(maps.Keys(tests))
}
