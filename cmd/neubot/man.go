package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/neubot/neubot/agent/registry"
	"github.com/neubot/neubot/internal/cli"
	"github.com/neubot/neubot/internal/version"
)

// cmdMan prints the manual page, neubot(1), in roff. Its commands and flags
// are the very text of `neubot --help` and of each command's -h, so the two
// cannot drift apart. The date is SOURCE_DATE_EPOCH's when set (as make dist
// sets it, for reproducible packages), else today's.
func cmdMan(args []string) error {
	if len(args) > 0 {
		fmt.Fprintf(os.Stderr, "%s man: unexpected argument %q\n", prog, args[0])
		return cli.ErrUsage
	}
	date := time.Now().UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds: %w", s, err)
		}
		date = time.Unix(sec, 0).UTC()
	}
	return writeMan(os.Stdout, date)
}

// helpText is what a command prints for -h.
func helpText(run func([]string) error, args ...string) string {
	var b bytes.Buffer
	saved := usageOut
	usageOut = &b
	defer func() { usageOut = saved }()
	_ = run(args) // -h: prints the usage and returns cli.ErrUsage
	return b.String()
}

func writeMan(w io.Writer, date time.Time) error {
	var top bytes.Buffer
	cli.Usage(&top, prog, commands())
	var b strings.Builder
	fmt.Fprintf(&b, ".TH NEUBOT 1 %q %q \"Neubot manual\"\n", date.Format("2006-01-02"), "neubot "+version.Version)
	b.WriteString(".SH NAME\nneubot \\- measure the quality and the neutrality of your Internet access\n")
	b.WriteString(".SH SYNOPSIS\n.B neubot\n.I COMMAND\n[flags]\n")
	b.WriteString(".SH DESCRIPTION\n")
	b.WriteString("Neubot runs tests of your Internet access in the background, after you consent, and publishes\n" +
		"them as open data. The agent tests at random times, keeps every result on this computer, uploads\n" +
		"them to the collector, and shows them in its web UI at http://127.0.0.1:9774/. It finds test\n" +
		"servers through the collector's rendezvous (default " + roffEscape(version.DefaultCollector) + ").\n")
	b.WriteString(".PP\nEvery flag is also read from the environment variable NEUBOT_FLAG (upper case, dashes\n" +
		"as underscores): \\-\\-collector from NEUBOT_COLLECTOR, and so on. The command line wins.\n")
	b.WriteString(".SH COMMANDS\n")
	preformatted(&b, top.String())
	b.WriteString(".SS neubot agent\n")
	preformatted(&b, helpText(cmdAgent, "-h"))
	b.WriteString(".SS neubot run\n")
	preformatted(&b, helpText(cmdRun, registry.Names()[0], "-h"))
	b.WriteString(".SS neubot version\nPrints the version, the commit it was built from and the version of the records it makes.\n")
	b.WriteString(".SH FILES\n.TP\n/var/lib/neubot\nThe state of the agent installed by the package (configuration, results, upload spool).\n" +
		".TP\n/etc/default/neubot\nEnvironment of the packaged agent: NEUBOT_COLLECTOR and the other flags.\n" +
		".TP\n~/.local/state/neubot\nThe state of an agent run by a user.\n")
	b.WriteString(".SH SEE ALSO\nThe README of the project, https://github.com/neubot/neubot\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// preformatted writes text as a block printed as is.
func preformatted(b *strings.Builder, text string) {
	b.WriteString(".PP\n.nf\n")
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		line = roffEscape(line)
		if strings.HasPrefix(line, ".") || strings.HasPrefix(line, "'") {
			line = "\\&" + line
		}
		b.WriteString(line + "\n")
	}
	b.WriteString(".fi\n")
}

// roffEscape keeps backslashes and dashes literal.
func roffEscape(s string) string {
	return strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
}
