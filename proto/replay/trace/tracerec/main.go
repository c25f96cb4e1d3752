// Command tracerec records a replay trace (spec/replay.md) from a live run
// of a real application: it listens, relays the first connection it
// accepts to the real server, and writes what each side sent, sizes and
// timing, as a trace data file, so that traces are recorded rather than
// written by hand. Run the application's client against -listen, e.g.
//
//	go run ./proto/replay/trace/tracerec -listen 127.0.0.1:8443 -upstream 127.0.0.1:4433 \
//	    -name tls-download -version 1 -o proto/replay/trace/data/tls-download.v1.json
//	curl -k https://127.0.0.1:8443/file
//
// The bytes themselves are not kept: the replay sends random bytes of the
// same sizes (encrypted records look random), and its own ClientHello when
// the client opened with one.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/neubot/neubot/internal/atomicfile"
	"github.com/neubot/neubot/proto/replay/trace"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8443", "address the application's client connects to")
	upstream := flag.String("upstream", "", "the application's real server, host:port")
	name := flag.String("name", "", "the trace's name")
	version := flag.Int("version", 1, "the trace's version")
	desc := flag.String("description", "", "what the trace is: the application, how it was recorded")
	mss := flag.Int("mss", 1448, "largest packet of the trace, bytes")
	out := flag.String("o", "", "the trace file to write (default: standard output)")
	flag.Parse()
	if err := run(*listen, *upstream, *name, *version, *desc, *mss, *out); err != nil {
		slog.Error("tracerec", "err", err)
		os.Exit(1)
	}
}

func run(listen, upstream, name string, version int, desc string, mss int, out string) error {
	if upstream == "" || name == "" || desc == "" {
		return fmt.Errorf("-upstream, -name and -description are needed")
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	slog.Info("tracerec: waiting for the client", "listen", l.Addr().String())
	c, err := l.Accept()
	l.Close()
	if err != nil {
		return err
	}
	up, err := net.Dial("tcp", upstream)
	if err != nil {
		c.Close()
		return fmt.Errorf("upstream: %w", err)
	}
	events, err := trace.Record(c, up)
	if err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	tr, err := trace.Build(name, version, desc, events, mss)
	if err != nil {
		return err
	}
	b, err := tr.Encode()
	if err != nil {
		return err
	}
	client, server := tr.Bytes()
	slog.Info("tracerec: recorded", "events", len(events), "runs", len(tr.Packets), "client_bytes", client, "server_bytes", server)
	if out == "" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return atomicfile.WriteFile(out, b)
}
