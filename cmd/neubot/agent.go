package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/neubot/neubot/agent"
	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/registry"
	"github.com/neubot/neubot/internal/cli"
	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/version"
)

// defaultStateDir is where the agent keeps its state when --state-dir is
// not given: systemd's StateDirectory= (/var/lib/neubot for the packaged
// service), else the user's XDG state directory.
func defaultStateDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" { // systemd's StateDirectory=
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "neubot")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "neubot")
	}
	return "neubot-state"
}

// checkListen refuses a non-loopback address unless allowed explicitly: the
// API controls the agent and shows the volunteer's results.
func checkListen(addr string, allowRemote bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if host == "localhost" || (ip != nil && ip.IsLoopback()) || allowRemote {
		return nil
	}
	return fmt.Errorf("--listen %s is not a loopback address: the agent's API would be reachable from the network; pass --allow-remote to do it anyway", addr)
}

func cmdAgent(args []string) error {
	fs := flag.NewFlagSet(prog+" agent", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9774", "address of the local API and web UI (loopback only unless --allow-remote)")
	allowRemote := fs.Bool("allow-remote", false, "allow a non-loopback --listen address (needs --remote-password)")
	remotePassword := fs.String("remote-password", "", "with --allow-remote: the password every request to the API and web UI must carry (HTTP Basic, any user name; at least 12 characters; better set as NEUBOT_REMOTE_PASSWORD than on the command line)")
	stateDir := fs.String("state-dir", "", "directory of the agent's configuration, results and upload spool (default: $STATE_DIRECTORY, set by systemd, else $XDG_STATE_HOME/neubot, else ~/.local/state/neubot)")
	collector := fs.String("collector", version.DefaultCollector, "collector base URL (rendezvous and uploads); empty: keep results local")
	server := fs.String("server", "", "fixed test server URL (default: ask the collector's rendezvous)")
	publicAPI := fs.String("public-api", "http://127.0.0.1:8080", "Neubot's public API, to compare your results with your provider's; empty: none")
	once := fs.Bool("once", false, "run one test now, upload it, and exit")
	consent := fs.String("consent", "", "record the volunteer's choice without the web UI: accept, accept-private (collect, never publish) or decline")
	peerListen := fs.String("peer-listen", ":9777", "address other volunteers' agents test against, once serving peers is on (web UI or --serve-peers); empty: never serve")
	peerPort := fs.Int("peer-port", 0, "port other agents reach, when a router forwards another one to --peer-listen (0: the same)")
	servePeers := fs.String("serve-peers", "", "record the choice to serve tests to other volunteers' agents: on or off (default: keep)")
	testWithPeers := fs.String("test-with-peers", "", "record the choice to test against other volunteers' agents too: on or off (default: keep)")
	tests := fs.String("tests", "", "comma-separated tests to run, in turn (default: "+strings.Join(registry.Defaults(), ", ")+"; also known: replay)")
	logFormat := fs.String("log-format", "json", "log format: json or text")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.SetOutput(usageOut)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s agent [flags]\n\nRuns the background agent: tests at random times (mean 2 h, at least 15 min apart) once\nthe volunteer has consented, keeps results locally, uploads them, and serves the web UI.\n\nFlags (also read from NEUBOT_<FLAG>):\n", prog)
		fs.PrintDefaults()
	}
	if err := cli.Parse(fs, "NEUBOT", args); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "%s agent: %v\n", prog, err)
		}
		return cli.ErrUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s agent: unexpected argument %q\n", prog, fs.Arg(0))
		return cli.ErrUsage
	}
	if *stateDir == "" {
		*stateDir = defaultStateDir()
	}
	if err := checkListen(*listen, *allowRemote); err != nil {
		fmt.Fprintf(os.Stderr, "%s agent: %v\n", prog, err)
		return cli.ErrUsage
	}
	if *allowRemote && len(*remotePassword) < agent.MinRemotePassword {
		fmt.Fprintf(os.Stderr, "%s agent: --allow-remote needs --remote-password (or NEUBOT_REMOTE_PASSWORD) of at least %d characters: without it, anyone who reaches the port controls the agent\n", prog, agent.MinRemotePassword)
		return cli.ErrUsage
	}
	if !*allowRemote && *remotePassword != "" {
		fmt.Fprintf(os.Stderr, "%s agent: --remote-password is for --allow-remote\n", prog)
		return cli.ErrUsage
	}
	usage := func(format string, args ...any) error {
		fmt.Fprintf(os.Stderr, "%s agent: "+format+"\n", append([]any{prog}, args...)...)
		return cli.ErrUsage
	}
	if *peerListen != "" {
		if _, _, err := net.SplitHostPort(*peerListen); err != nil {
			return usage("--peer-listen %q: %v", *peerListen, err)
		}
	}
	if *peerPort < 0 || *peerPort > 65535 {
		return usage("--peer-port must be from 0 to 65535")
	}
	// --serve-peers and --test-with-peers: on, off, or "" (keep).
	onOff := map[string]bool{"on": true, "off": false}
	for name, v := range map[string]string{"--serve-peers": *servePeers, "--test-with-peers": *testWithPeers} {
		if _, ok := onOff[v]; v != "" && !ok {
			return usage("%s must be on or off", name)
		}
	}
	var measurers map[string]plugin.Measurer
	if *tests != "" {
		measurers = map[string]plugin.Measurer{}
		for _, name := range strings.Split(*tests, ",") {
			m, ok := registry.New(strings.TrimSpace(name))
			if !ok {
				return usage("--tests: unknown test %q (known: %s)", name, strings.Join(registry.Names(), ", "))
			}
			measurers[m.Name()] = m
		}
	}
	log, err := cli.Logger(os.Stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	a, err := agent.New(agent.Options{StateDir: *stateDir, CollectorURL: *collector, ServerURL: *server, PublicAPIURL: *publicAPI, Logger: log,
		Tests: measurers, PeerListen: *peerListen, PeerPort: *peerPort, RemotePassword: *remotePassword})
	if err != nil {
		return err
	}
	defer a.Close()
	if *servePeers != "" || *testWithPeers != "" {
		c := a.Config()
		if *servePeers != "" {
			c.ServePeers = onOff[*servePeers]
		}
		if *testWithPeers != "" {
			c.TestWithPeers = onOff[*testWithPeers]
		}
		if err := a.SetConfig(c); err != nil {
			return err
		}
	}
	switch *consent {
	case "":
	case "accept":
		err = a.SetConsent(true, true, true)
	case "accept-private":
		err = a.SetConsent(true, true, false)
	case "decline":
		err = a.SetConsent(true, false, false)
	default:
		fmt.Fprintf(os.Stderr, "%s agent: --consent must be accept, accept-private or decline\n", prog)
		return cli.ErrUsage
	}
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if *once {
		if err := a.RunOnce(ctx, 30*time.Second); err != nil {
			if errors.Is(err, agent.ErrNoConsent) {
				return fmt.Errorf("%w: open the web UI of a running agent, or pass --consent accept", err)
			}
			return err
		}
		st := a.Status(ctx)
		fmt.Printf("test done; %d result(s) waiting for upload\n", st.PendingUploads)
		return nil
	}
	srv, err := httpx.Listen(*listen, a.Handler(), log)
	if err != nil {
		return err
	}
	log.Info("agent running", "ui", srv.URL(), "state_dir", *stateDir, "collector", *collector, "agent_id", a.AgentID())
	fmt.Fprintf(os.Stderr, "neubot agent: web UI at %s/\n", srv.URL())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	select {
	case <-ctx.Done():
	case err = <-srv.Done():
		cancel()
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	<-done
	return err
}
