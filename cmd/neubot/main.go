// Command neubot is what volunteers install: the agent that measures their
// Internet access in the background, and one-shot tests from the command
// line. It must never depend on ClickHouse or Arrow (a test checks).
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/neubot/neubot/internal/cli"
	"github.com/neubot/neubot/internal/version"
	"github.com/neubot/neubot/schemas"
)

const prog = "neubot"

// usageOut receives the usage of every command (its -h): standard error,
// except while the manual page is written from the same text.
var usageOut io.Writer = os.Stderr

func commands() []cli.Command {
	return []cli.Command{
		{Name: "agent", Short: "run the background agent with its web UI on http://127.0.0.1:9774", Run: cmdAgent},
		{Name: "run", Short: "run one test now: neubot run speedtest [--server URL] [--json]", Run: cmdRun},
		{Name: "version", Short: "print the version, the commit and the record schema version", Run: cmdVersion},
		{Name: "man", Short: "print the manual page (roff)", Run: cmdMan, Hidden: true},
	}
}

func main() {
	cli.Exit(prog, cli.Dispatch(prog, commands(), os.Args[1:], os.Stderr))
}

func cmdVersion(args []string) error {
	if len(args) > 0 {
		fmt.Fprintf(os.Stderr, "%s version: unexpected argument %q\n", prog, args[0])
		return cli.ErrUsage
	}
	commit := version.Commit
	if commit == "" {
		commit = "unknown"
	}
	fmt.Printf("%s %s (commit %s, record schema %d)\n", prog, version.Version, commit, schemas.SchemaVersion)
	return nil
}
