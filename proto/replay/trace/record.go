package trace

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// Event is one read of a recorded connection: what one side sent, when
// (since the connection began) and how many bytes. The first bytes of
// each side are kept (the ClientHello's, to recognise it).
type Event struct {
	From string
	At   time.Duration
	Size int
	Head []byte
}

// MaxRecord bounds a recording: events and bytes.
const (
	MaxEvents      = MaxPackets
	MaxRecordBytes = 1 << 30
)

// Record relays one connection between client and upstream (a real
// application's client and server) until both sides have closed, or
// either fails, and returns every read of each side, in order. Each side's
// half-close is passed on. It is the "record" half of record-and-replay:
// Build turns the events into a trace.
func Record(client, upstream net.Conn) ([]Event, error) {
	start := time.Now()
	var mu sync.Mutex
	var events []Event
	total := 0
	relay := func(from string, src, dst net.Conn) error {
		buf := make([]byte, 64<<10)
		first := true
		for {
			n, err := src.Read(buf)
			if n > 0 {
				mu.Lock()
				e := Event{From: from, At: time.Since(start), Size: n}
				if first {
					e.Head, first = append([]byte(nil), buf[:min(n, 8)]...), false
				}
				events = append(events, e)
				total += n
				over := len(events) > MaxEvents || total > MaxRecordBytes
				mu.Unlock()
				if over {
					return fmt.Errorf("recording over %d events or %d bytes", MaxEvents, MaxRecordBytes)
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return werr
				}
			}
			if errors.Is(err, io.EOF) {
				if tc, ok := dst.(interface{ CloseWrite() error }); ok {
					tc.CloseWrite()
				}
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	errs := make(chan error, 2)
	go func() { errs <- relay("client", client, upstream) }()
	go func() { errs <- relay("server", upstream, client) }()
	var first error
	for range 2 {
		if err := <-errs; err != nil && first == nil {
			first = err
			client.Close()
			upstream.Close()
		}
	}
	client.Close()
	upstream.Close()
	return events, first
}

// Build turns recorded events into a trace: each read becomes packets of
// at most mss bytes (the first at the read's time after the same side's
// previous one, the rest back to back), and consecutive packets of one
// side with the same size and spacing become one run. When the client
// speaks first with a TLS handshake record, its first read is the trace's
// ClientHello (the replay sends its own, with the server name chosen at
// run time). The trace is checked as Parse checks a data file.
func Build(name string, version int, description string, events []Event, mss int) (*Trace, error) {
	if mss <= 0 || mss > MaxPacket {
		return nil, fmt.Errorf("mss %d out of (0, %d]", mss, MaxPacket)
	}
	t := &Trace{Name: name, Version: version, Description: description}
	last := map[string]time.Duration{}
	add := func(from string, gapMs, size int) {
		if n := len(t.Packets); n > 0 {
			r := &t.Packets[n-1]
			if r.From == from && !r.ClientHello && r.Size == size && (r.Count == 1 || r.EveryMs == gapMs) {
				r.EveryMs = gapMs
				r.Count++
				return
			}
		}
		t.Packets = append(t.Packets, Packet{From: from, AtMs: gapMs, Size: size, Count: 1})
	}
	for i, e := range events {
		gap := int((e.At - last[e.From] + time.Millisecond/2) / time.Millisecond)
		last[e.From] = e.At
		if i == 0 && e.From == "client" && len(e.Head) >= 2 && e.Head[0] == 0x16 && e.Head[1] == 0x03 {
			t.Packets = append(t.Packets, Packet{From: "client", ClientHello: true, Count: 1})
			continue
		}
		for left := e.Size; left > 0; left -= mss {
			add(e.From, gap, min(left, mss))
			gap = 0
		}
	}
	b, err := t.Encode()
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// Encode writes the trace as a data file: one run of packets a line,
// fields at their zero value left out.
func (t *Trace) Encode() ([]byte, error) {
	var b strings.Builder
	head, err := json.Marshal(struct {
		Name        string `json:"name"`
		Version     int    `json:"version"`
		Description string `json:"description"`
	}{t.Name, t.Version, t.Description})
	if err != nil {
		return nil, err
	}
	b.Write(head[:len(head)-1])
	b.WriteString(",\n  \"packets\": [\n")
	for i, p := range t.Packets {
		line, err := json.Marshal(struct {
			From        string `json:"from"`
			AtMs        int    `json:"at_ms"`
			ClientHello bool   `json:"client_hello,omitempty"`
			Size        int    `json:"size,omitempty"`
			Count       int    `json:"count,omitempty"`
			EveryMs     int    `json:"every_ms,omitempty"`
		}{p.From, p.AtMs, p.ClientHello, p.Size, max(p.Count, 1) * boolInt(p.Count > 1), p.EveryMs})
		if err != nil {
			return nil, err
		}
		b.WriteString("    ")
		b.Write(line)
		if i < len(t.Packets)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("  ]\n}\n")
	return []byte(b.String()), nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
