package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/neubot/neubot/agent"
	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/agent/registry"
	"github.com/neubot/neubot/agent/replay"
	"github.com/neubot/neubot/agent/speedtest"
	"github.com/neubot/neubot/internal/cli"
	"github.com/neubot/neubot/internal/version"
	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/proto/replay/trace"
	"github.com/neubot/neubot/schemas"
)

// cmdRun runs one test from the command line: `neubot run speedtest`. It
// asks the rendezvous of the collector for the least loaded test server, as
// the agent does (with the agent's client), unless --server names one.
func cmdRun(args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(usageOut, "usage: %s run TEST [--server URL] [--json]\n\ntests: %s\n", prog, strings.Join(registry.Names(), ", "))
		return cli.ErrUsage
	}
	name := args[0]
	m, ok := registry.New(name)
	if !ok {
		fmt.Fprintf(os.Stderr, "%s run: unknown test %q (known: %s)\n", prog, name, strings.Join(registry.Names(), ", "))
		return cli.ErrUsage
	}
	fs := flag.NewFlagSet(prog+" run "+name, flag.ContinueOnError)
	fs.SetOutput(usageOut)
	server := fs.String("server", "", "a fixed test server, e.g. http://127.0.0.1:9775 (ndt7 also takes ws:// or wss:// for any ndt7 server); default: the least loaded one the collector's rendezvous lists")
	collectorURL := fs.String("collector", version.DefaultCollector, "collector whose rendezvous finds the test server when --server is not given")
	asJSON := fs.Bool("json", false, "print one JSON object with the result instead of the live display")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long (rendezvous and queueing included)")
	publish := fs.Bool("publish", true, "allow the result to be published (consent can_publish)")
	method := 0
	if name == schemas.SpeedtestName {
		fs.IntVar(&method, "method", 2, "speedtest methodology: 2 (spec/speedtest.md v2.0.0) or 1 (the first one)")
	}
	traceName := ""
	if name == schemas.ReplayName {
		fs.StringVar(&traceName, "trace", "tls-video", "replay trace: "+strings.Join(trace.Names(), " or ")+" (spec/replay.md)")
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s run TEST [--server URL] [--json]\n\nRuns one test now (TEST: %s) and prints the result. Running it is consent\nto collect this one result; --publish=false keeps it out of public data.\n\nFlags (also read from NEUBOT_<FLAG>):\n", prog, strings.Join(registry.Names(), ", "))
		fs.PrintDefaults()
	}
	if err := cli.Parse(fs, "NEUBOT", args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) && !strings.Contains(err.Error(), "flag provided") {
			fmt.Fprintf(os.Stderr, "%s run: %v\n", prog, err)
		}
		return cli.ErrUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s run: unexpected argument %q\n", prog, fs.Arg(0))
		return cli.ErrUsage
	}
	if *server == "" && *collectorURL == "" {
		fmt.Fprintf(os.Stderr, "%s run: give a test server with --server URL, or a collector with --collector URL\n", prog)
		return cli.ErrUsage
	}
	if name == schemas.SpeedtestName {
		if method != 1 && method != 2 {
			fmt.Fprintf(os.Stderr, "%s run: --method must be 1 or 2\n", prog)
			return cli.ErrUsage
		}
		m = speedtest.NewMeasurer(speedtest.Config{Method: method})
	}
	if name == schemas.ReplayName {
		if _, err := trace.Load(traceName, 0); err != nil {
			fmt.Fprintf(os.Stderr, "%s run: --trace %q: %v (known: %s)\n", prog, traceName, err, strings.Join(trace.Names(), ", "))
			return cli.ErrUsage
		}
		m = replay.NewMeasurer(replay.Config{Trace: traceName})
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, *timeout)
	defer cancel2()

	agentID := uuid.NewString() // one-shot runs are not linked to an installed agent
	candidates := []rendezvous.ServerInfo{{URL: *server}}
	if *server == "" {
		rr, err := agent.Rendezvous(ctx, &http.Client{Timeout: 30 * time.Second}, *collectorURL,
			rendezvous.RendezvousRequest{AgentID: agentID, Tests: []string{name}, AgentVersion: version.Version})
		if err == nil {
			candidates, err = agent.Candidates(rr, name, "")
		}
		if err != nil {
			return fmt.Errorf("%w (or give a test server with --server URL)", err)
		}
	}
	var live *liveDisplay
	if !*asJSON {
		live = &liveDisplay{w: os.Stderr, tty: isTerminal(os.Stderr), phaseS: 3.5}
		if name == schemas.NDT7Name {
			live.phaseS = 10 // the specification's subtest
		}
	}
	env := plugin.Env{
		AgentID:      agentID,
		AgentVersion: version.Version,
		Consent:      schemas.Consent{Informed: true, CanCollect: true, CanPublish: *publish},
	}
	if live != nil {
		env.Progress = live.update
	}
	var (
		rec *schemas.Record
		err error
	)
	for i, c := range candidates {
		if *server == "" && !*asJSON {
			fmt.Fprintf(os.Stderr, "server %s (the rendezvous of %s)\n", c.URL, *collectorURL)
		}
		env.ServerURL = c.URL
		rec, err = m.Run(ctx, env)
		if err == nil || !agent.TryNext(err) || ctx.Err() != nil || i == len(candidates)-1 {
			break
		}
		if live != nil {
			live.finish()
			fmt.Fprintf(os.Stderr, "%s is busy or unreachable (%v); trying the next\n", c.URL, err)
		}
	}
	if live != nil {
		live.finish()
	}
	if err != nil && rec != nil && *asJSON {
		// A failure record: what was measured, and what failed.
		_ = printJSON(os.Stdout, rec)
	}
	if err != nil {
		var pe *plugin.ProtocolError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s: the test server refused (%d): %s", name, pe.Status, pe.Msg)
		}
		return err
	}
	if *asJSON {
		return printJSON(os.Stdout, rec)
	}
	printSummary(os.Stdout, rec)
	return nil
}

// summary is the --json output: the headline numbers and the whole record.
type summary struct {
	MeasurementUID string  `json:"measurement_uid"`
	Test           string  `json:"test"`
	Server         string  `json:"server_id"`
	DownloadMbps   float64 `json:"download_mbps"`
	UploadMbps     float64 `json:"upload_mbps"`
	RTTMS          float64 `json:"rtt_ms"`
	ConnectMS      float64 `json:"connect_ms"`
	DurationS      float64 `json:"duration_s"`
	// Failure: a failed speedtest's code and phase (test_keys.failure).
	Failure      string `json:"failure,omitempty"`
	FailurePhase string `json:"failure_phase,omitempty"`
	// Outcome, DownloadOutcome and UploadOutcome: differential tests.
	Outcome         string `json:"outcome,omitempty"`
	DownloadOutcome string `json:"download_outcome,omitempty"`
	UploadOutcome   string `json:"upload_outcome,omitempty"`
	// Attribution: what a difference or blocking is due to (payload,
	// port, both, host).
	Attribution string          `json:"attribution,omitempty"`
	Record      *schemas.Record `json:"record"`
}

func summarize(rec *schemas.Record) summary {
	s := summary{MeasurementUID: rec.MeasurementUID, Test: rec.TestName, Server: rec.Server.ID, DurationS: rec.DurationS, Record: rec}
	if k, ok := rec.TestKeys.(schemas.Headliner); ok {
		h := k.Headline()
		s.DownloadMbps, s.UploadMbps, s.RTTMS = h.DownloadMbps, h.UploadMbps, round3(h.RTTMS)
	}
	if k, ok := rec.TestKeys.(*schemas.Speedtest); ok {
		s.ConnectMS = round3(schemas.Median(k.ConnectMS))
		s.Failure, s.FailurePhase = k.Failure, k.FailurePhase
	}
	if k, ok := rec.TestKeys.(*schemas.BitTorrent); ok {
		s.Outcome, s.DownloadOutcome, s.UploadOutcome, s.Attribution = k.Outcome, k.DownloadOutcome, k.UploadOutcome, k.Attribution
	}
	if k, ok := rec.TestKeys.(*schemas.Replay); ok {
		s.Outcome = k.Outcome
		if k.Outcome == schemas.OutcomeDifferentiation || k.Outcome == schemas.OutcomeBlocked {
			s.Attribution = schemas.AttributionPayload
		}
	}
	return s
}

// ndt7MinRTT is the download's minimum RTT in TCP_INFO: the server's own
// view when it merged the record, else what it sent in band; 0 if none.
func printJSON(w io.Writer, rec *schemas.Record) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(summarize(rec))
}

func printSummary(w io.Writer, rec *schemas.Record) {
	s := summarize(rec)
	if _, ok := rec.TestKeys.(*schemas.NDT7); ok {
		server := s.Server
		if server == "" {
			server = "(not a Neubot server: the client's own record)"
		}
		fmt.Fprintf(w, "download %8.2f Mbit/s\nupload   %8.2f Mbit/s\nmin RTT  %8.2f ms (TCP_INFO of the download)\nmeasurement %s, server %s, %.1f s\n",
			s.DownloadMbps, s.UploadMbps, s.RTTMS, s.MeasurementUID, server, s.DurationS)
		return
	}
	if k, ok := rec.TestKeys.(*schemas.BitTorrent); ok {
		fmt.Fprintf(w, "%-9s %-18s %-18s %10s %10s %7s %6s %9s %6s  %s\n", "direction", "tested", "control", "Mbit/s", "control", "diff", "KS D", "p", "pairs", "outcome")
		for _, c := range k.Comparisons {
			tested := c.Tested
			if tested == "" {
				tested = schemas.FlowBitTorrent
			}
			fmt.Fprintf(w, "%-9s %-18s %-18s %10.2f %10.2f %6.1f%% %6.3f %9.2g %6s  %s\n", c.Direction, tested, c.Control, c.MedianMbps, c.ControlMedian,
				c.DiffPct, c.KSD, c.KSP, fmt.Sprintf("%d/%d", c.RepsSlower, c.Reps), c.Outcome)
		}
		for _, b := range k.Blocked {
			fmt.Fprintf(w, "blocked: %s %s, %s in %d of %d flows\n", b.Direction, b.Kind, b.Failure, b.Failed, b.Flows)
		}
		attr := ""
		if k.Attribution != "" {
			attr = ", due to " + k.Attribution
		}
		fmt.Fprintf(w, "outcome: %s%s (download %s, upload %s)\nmeasurement %s, server %s, %.1f s\n",
			k.Outcome, attr, k.DownloadOutcome, k.UploadOutcome, s.MeasurementUID, s.Server, s.DurationS)
		return
	}
	if k, ok := rec.TestKeys.(*schemas.Replay); ok {
		if c := k.Comparison; c != nil {
			fmt.Fprintf(w, "original %.2f Mbit/s, inverted %.2f Mbit/s: %.1f%% lower, KS D %.3f, p %.2g, %d/%d repetitions\n",
				c.MedianMbps, c.ControlMedian, c.DiffPct, c.KSD, c.KSP, c.RepsSlower, c.Reps)
		}
		fmt.Fprintf(w, "outcome: %s (trace %s v%d, server name %q)\nmeasurement %s, server %s, %.1f s\n",
			k.Outcome, k.Trace, k.TraceVersion, k.SNI, s.MeasurementUID, s.Server, s.DurationS)
		return
	}
	if _, ok := rec.TestKeys.(*schemas.Speedtest); !ok {
		// Any other test: its headline numbers.
		fmt.Fprintf(w, "download %8.2f Mbit/s\nupload   %8.2f Mbit/s\nRTT      %8.2f ms\nmeasurement %s, server %s, %.1f s\n",
			s.DownloadMbps, s.UploadMbps, s.RTTMS, s.MeasurementUID, s.Server, s.DurationS)
		return
	}
	fmt.Fprintf(w, "download %8.2f Mbit/s\nupload   %8.2f Mbit/s\nlatency  %8.2f ms (HEAD round trip, median)\nconnect  %8.2f ms\nmeasurement %s, server %s, %.1f s\n",
		s.DownloadMbps, s.UploadMbps, s.RTTMS, s.ConnectMS, s.MeasurementUID, s.Server, s.DurationS)
}

// liveDisplay shows the phase and the current speed on one terminal line.
type liveDisplay struct {
	w      io.Writer
	tty    bool
	phaseS float64 // the usual length of a transfer phase, for the bar
	last   string
}

func (l *liveDisplay) update(p plugin.Progress) {
	line := p.Phase
	switch {
	case p.Message != "":
		line += ": " + p.Message
	case p.Phase == "download" || p.Phase == "upload":
		bar := strings.Repeat("#", min(30, int(p.Elapsed*30/l.phaseS)))
		line = fmt.Sprintf("%-8s %8.2f Mbit/s  [%-30s]", p.Phase, p.Mbps, bar)
	default:
		line += "..."
	}
	if l.tty {
		fmt.Fprintf(l.w, "\r\033[K%s", line)
	} else if p.Phase != l.last && (p.Phase != "negotiate" || p.Message != "") {
		// Not a terminal: one line per phase, no redraws; nothing before
		// the server answered, so that an unreachable one is one line.
		fmt.Fprintln(l.w, p.Phase+"...")
	}
	l.last = p.Phase
}

func (l *liveDisplay) finish() {
	if l.tty {
		fmt.Fprint(l.w, "\r\033[K")
	}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
