// Package registry makes the agent's tests known by name: one line per
// test. Adding a test is a folder in agent/ and a line here.
package registry

import (
	"maps"
	"slices"

	"github.com/neubot/neubot/agent/bittorrent"
	"github.com/neubot/neubot/agent/ndt7"
	"github.com/neubot/neubot/agent/ping"
	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/replay"
	"github.com/neubot/neubot/agent/speedtest"
)

var tests = map[string]func() plugin.Measurer{
	"speedtest":  func() plugin.Measurer { return speedtest.NewMeasurer(speedtest.Config{}) },
	"ndt7":       func() plugin.Measurer { return ndt7.NewMeasurer(ndt7.Config{}) },
	"bittorrent": func() plugin.Measurer { return bittorrent.NewMeasurer(bittorrent.Config{}) },
	"ping":       func() plugin.Measurer { return ping.NewMeasurer(ping.Config{}) },
	"replay":     func() plugin.Measurer { return replay.NewMeasurer(replay.Config{}) },
}

// optional tests run only when asked for by name (neubot run, --tests):
// not every test server offers them.
var optional = map[string]bool{"replay": true}

// Defaults lists the tests an agent runs in turn when not told which.
func Defaults() []string {
	var out []string
	for _, n := range Names() {
		if !optional[n] {
			out = append(out, n)
		}
	}
	return out
}

// New returns a measurer for the named test.
func New(name string) (plugin.Measurer, bool) {
	mk, ok := tests[name]
	if !ok {
		return nil, false
	}
	return mk(), true
}

// Names lists the known tests.
func Names() []string {
	return slices.Sorted(maps.Keys(tests))
}
