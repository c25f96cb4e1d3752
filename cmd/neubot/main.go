// Command neubot is what volunteers install: the agent that measures their
// Internet access in the background, and one-shot tests from the command
// line. It must never depend on ClickHouse or Arrow (a test checks).
package main

import (
	"fmt"
	"os"

	"github.com/neubot/neubot/internal/cli"
	"github.com/neubot/neubot/internal/version"
	"github.com/neubot/neubot/schemas"
)

const prog = "neubot"

func main() {
	cmds := []cli.Command{
		{Name: "agent", Short: "run the background agent with its web UI on http://127.0.0.1:9774", Run: cmdAgent},
		{Name: "run", Short: "run one test now: neubot run speedtest --server URL [--json]", Run: cmdRun},
		{Name: "version", Short: "print the version and the record schema version", Run: func(args []string) error {
			if len(args) > 0 {
				fmt.Fprintf(os.Stderr, "%s version: unexpected argument %q\n", prog, args[0])
				return cli.ErrUsage
			}
			fmt.Printf("%s %s (record schema %d)\n", prog, version.Version, schemas.SchemaVersion)
			return nil
		}},
	}
	cli.Exit(prog, cli.Dispatch(prog, cmds, os.Args[1:], os.Stderr))
}
