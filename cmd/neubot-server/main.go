// Command neubot-server runs Neubot's server side: the collector, the
// migrations and, with `up`, the whole platform on a local ClickHouse.
package main

import (
	"os"

	"github.com/neubot/neubot/internal/cli"
)

const prog = "neubot-server"

func main() {
	cmds := []cli.Command{
		{Name: "up", Short: "run the whole platform on a local ClickHouse it starts itself", Run: cmdUp},
		{Name: "collector", Short: "run the collector (ingest API, spool, ClickHouse loader)", Run: cmdCollector},
		{Name: "testserver", Short: "run a test server (negotiation, speedtest, forwarding to the collector)", Run: cmdTestserver},
		{Name: "analytics", Short: "run the analytics scheduler; `analytics run --from --to`, `analytics table`", Run: cmdAnalytics},
		{Name: "publish", Short: "serve the public API, dashboards and datasets; `publish export --from --to` writes dumps", Run: cmdPublish},
		{Name: "simulate", Short: "run a fleet of simulated volunteers against the collector (synthetic=1)", Run: cmdSimulate},
		{Name: "enroll", Short: "enroll a test server's key in the collector's allow-list", Run: cmdEnroll},
		{Name: "verify", Short: "verify downloaded days of the open data against the collector's signature", Run: cmdVerify},
		{Name: "linkem", Short: "emulate a link (rate, delay, queue, loss) between two network namespaces", Run: cmdLinkem},
		{Name: "migrate", Short: "apply the ClickHouse migrations and exit", Run: cmdMigrate},
		{Name: "version", Short: "print the version", Run: cmdVersion},
	}
	cli.Exit(prog, cli.Dispatch(prog, cmds, os.Args[1:], os.Stderr))
}
