// Package cli holds what Neubot's commands share: flags mirrored from
// environment variables, the logger, and sub-command dispatch.
package cli

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// EnvName is the environment variable mirroring flag name under prefix:
// ("NEUBOT", "spool-dir") -> NEUBOT_SPOOL_DIR.
func EnvName(prefix, name string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Parse parses args into fs, after giving every flag not set on the command
// line the value of its environment variable (see EnvName), if any. Flags
// stay canonical: the command line wins over the environment.
func Parse(fs *flag.FlagSet, prefix string, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(EnvName(prefix, f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment variable %s: %w", EnvName(prefix, f.Name), e)
			}
		}
	})
	return err
}

// Logger returns a slog logger writing to w in format "json" or "text".
func Logger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad log level %q (debug, info, warn, error)", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("bad log format %q (json, text)", format)
}

// Command is one sub-command of a binary.
type Command struct {
	Name  string
	Short string
	Run   func(args []string) error
	// Hidden commands run but are not listed in the usage.
	Hidden bool
}

// Usage writes the usage of a binary made of cmds: what `PROG --help`
// prints.
func Usage(w io.Writer, prog string, cmds []Command) {
	fmt.Fprintf(w, "usage: %s COMMAND [flags]\n\ncommands:\n", prog)
	for _, c := range cmds {
		if !c.Hidden {
			fmt.Fprintf(w, "  %-12s %s\n", c.Name, c.Short)
		}
	}
	fmt.Fprintf(w, "\nRun '%s COMMAND -h' for the flags of a command.\n", prog)
}

// ErrUsage is returned for a bad command line; main exits 2 on it.
var ErrUsage = flag.ErrHelp

// Dispatch runs the command named by args[0]; it prints usage to stderr and
// returns ErrUsage when there is none or it is unknown.
func Dispatch(prog string, cmds []Command, args []string, stderr io.Writer) error {
	usage := func() { Usage(stderr, prog, cmds) }
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage()
		return ErrUsage
	}
	for _, c := range cmds {
		if c.Name == args[0] {
			return c.Run(args[1:])
		}
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", prog, args[0])
	usage()
	return ErrUsage
}

// Exit prints err (unless it is a usage error, already explained) and exits
// with 2 for usage errors, 1 for others, 0 for nil.
func Exit(prog string, err error) {
	switch {
	case err == nil:
		os.Exit(0)
	case err == ErrUsage:
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		os.Exit(1)
	}
}
