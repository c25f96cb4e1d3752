// Package trace is the part of the replay differential test (spec/replay.md)
// that both ends share: the traces (an application's recorded traffic shape,
// sizes and timing per packet, as versioned data files embedded here), the
// TLS ClientHello that opens a TLS trace with a chosen server name, its
// bit-inverted control, the flow keys, and one flow as the server or the
// client plays it.
package trace

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"

	"github.com/neubot/neubot/schemas"
)

//go:embed data/*.json
var dataFS embed.FS

// Packet is one run of packets of a trace: Count packets (1 when 0) of
// Size bytes sent by From ("client" or "server"), the first at AtMs after
// the previous run of the same sender ended, the next ones EveryMs apart
// (0: back to back). A run with ClientHello is the TLS ClientHello that
// opens the flow (its size depends on the server name).
type Packet struct {
	From        string `json:"from"`
	AtMs        int    `json:"at_ms"`
	Size        int    `json:"size"`
	Count       int    `json:"count"`
	EveryMs     int    `json:"every_ms"`
	ClientHello bool   `json:"client_hello"`
}

// Trace is one data file.
type Trace struct {
	Name        string   `json:"name"`
	Version     int      `json:"version"`
	Description string   `json:"description"`
	Packets     []Packet `json:"packets"`
}

// Bounds of a trace.
const (
	MaxPacket  = 1 << 16
	MaxPackets = 1 << 16
)

// Names returns the names of the embedded traces, sorted, each once.
func Names() []string {
	entries, _ := fs.ReadDir(dataFS, "data")
	var out []string
	for _, e := range entries {
		n, _, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".json"), ".v")
		if ok && (len(out) == 0 || out[len(out)-1] != n) {
			out = append(out, n)
		}
	}
	return out
}

// Load returns the embedded trace name at version (0: the newest).
func Load(name string, version int) (*Trace, error) {
	entries, err := fs.ReadDir(dataFS, "data")
	if err != nil {
		return nil, err
	}
	var best *Trace
	for _, e := range entries {
		n, v, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".json"), ".v")
		ver, err := strconv.Atoi(v)
		if !ok || err != nil || n != name || (version != 0 && ver != version) || (best != nil && ver < best.Version) {
			continue
		}
		b, err := dataFS.ReadFile("data/" + e.Name())
		if err != nil {
			return nil, err
		}
		t, err := Parse(b)
		if err != nil {
			return nil, fmt.Errorf("trace %s: %w", e.Name(), err)
		}
		if t.Name != name || t.Version != ver {
			return nil, fmt.Errorf("trace %s names itself %s v%d", e.Name(), t.Name, t.Version)
		}
		best = t
	}
	if best == nil {
		return nil, fmt.Errorf("no trace %q version %d", name, version)
	}
	return best, nil
}

// Parse decodes and checks a trace.
func Parse(b []byte) (*Trace, error) {
	var t Trace
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, err
	}
	total := 0
	for i, p := range t.Packets {
		if p.Count == 0 {
			t.Packets[i].Count = 1
		}
		switch {
		case p.From != "client" && p.From != "server":
			return nil, fmt.Errorf("packet %d: from must be client or server", i)
		case p.ClientHello && (i != 0 || p.From != "client"):
			return nil, fmt.Errorf("packet %d: only the first packet, the client's, may be the ClientHello", i)
		case !p.ClientHello && (p.Size <= 0 || p.Size > MaxPacket):
			return nil, fmt.Errorf("packet %d: size %d out of (0, %d]", i, p.Size, MaxPacket)
		case p.Count < 0 || p.AtMs < 0 || p.EveryMs < 0 || p.AtMs > 60000 || p.EveryMs > 60000:
			return nil, fmt.Errorf("packet %d: bad count or times", i)
		}
		total += t.Packets[i].Count
	}
	if len(t.Packets) == 0 || total > MaxPackets {
		return nil, fmt.Errorf("%d packets, want 1 to %d", total, MaxPackets)
	}
	return &t, nil
}

// Key is a flow's key, carried at the start of the ClientHello's random.
type Key [20]byte

// FlowKey derives the key of flow index of kind from the token.
func FlowKey(token, kind string, index int) Key {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("neubot-replay-v1|" + kind + "|" + strconv.Itoa(index)))
	var k Key
	copy(k[:], mac.Sum(nil))
	return k
}

// TLS constants of the ClientHello.
var cipherSuites = []uint16{0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035}

// RandomOffset is where the ClientHello's 32-byte random starts: after the
// record header (5), the handshake header (4) and the version (2).
const RandomOffset = 5 + 4 + 2

// SNIOffset is where the server name starts in ClientHello's bytes: the
// server_name extension comes first, so the offset does not depend on the
// name (what a middlebox matching a fixed offset relies on).
var SNIOffset = RandomOffset + 32 + 1 + 32 + 2 + 2*len(cipherSuites) + 2 + 2 + 2 + 2 + 2 + 1 + 2

// ClientHello returns a TLS 1.3 ClientHello record (as current browsers
// send, with TLS 1.2 fallback) for serverName, carrying key in the first
// 20 bytes of its random. crypto/tls parses it (trace_test.go).
func ClientHello(serverName string, key Key) []byte {
	rnd := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	u16 := func(b []byte, v int) []byte { return binary.BigEndian.AppendUint16(b, uint16(v)) }
	ext := func(b []byte, typ int, body []byte) []byte {
		b = u16(b, typ)
		b = u16(b, len(body))
		return append(b, body...)
	}
	var exts []byte
	name := u16(nil, len(serverName)+3)
	name = append(name, 0)
	name = u16(name, len(serverName))
	name = append(name, serverName...)
	exts = ext(exts, 0x0000, name)                                                 // server_name
	exts = ext(exts, 0x000a, []byte{0, 4, 0, 0x1d, 0, 0x17})                       // supported_groups: x25519, P-256
	exts = ext(exts, 0x000b, []byte{1, 0})                                         // ec_point_formats
	exts = ext(exts, 0x000d, []byte{0, 8, 4, 3, 8, 4, 4, 1, 5, 1})                 // signature_algorithms
	exts = ext(exts, 0x0010, append([]byte{0, 12, 2, 'h', '2', 8}, "http/1.1"...)) // ALPN
	exts = ext(exts, 0x002b, []byte{4, 3, 4, 3, 3})                                // supported_versions: 1.3, 1.2
	ks := append([]byte{0, 36, 0, 0x1d, 0, 32}, rnd(32)...)
	exts = ext(exts, 0x0033, ks) // key_share
	var body []byte
	body = append(body, 3, 3)
	random := rnd(32)
	copy(random, key[:])
	body = append(body, random...)
	body = append(body, 32)
	body = append(body, rnd(32)...)
	body = u16(body, 2*len(cipherSuites))
	for _, c := range cipherSuites {
		body = u16(body, int(c))
	}
	body = append(body, 1, 0)
	body = u16(body, len(exts))
	body = append(body, exts...)
	hs := []byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	hs = append(hs, body...)
	rec := []byte{0x16, 3, 1}
	rec = u16(rec, len(hs))
	return append(rec, hs...)
}

// Invert returns b with every bit inverted: Wehe's control, the same sizes
// and timing without anything a classifier could read.
func Invert(b []byte) []byte {
	out := make([]byte, len(b))
	for i, x := range b {
		out[i] = ^x
	}
	return out
}

// ErrNotReplay is returned for first bytes that are not a replay's.
var ErrNotReplay = fmt.Errorf("not a replay's first bytes (%w)", schemas.ErrProtocol)

// ReadFirst reads a flow's first packet from r: a TLS handshake record,
// as is or bit-inverted (at most MaxPacket bytes). It returns the key in
// the ClientHello's random and whether the bytes were inverted.
func ReadFirst(r io.Reader) (key Key, inverted bool, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return key, false, err
	}
	h := hdr[:]
	if h[0] != 0x16 {
		h = Invert(h)
		inverted = true
	}
	if h[0] != 0x16 || h[1] != 3 {
		return key, false, ErrNotReplay
	}
	n := int(binary.BigEndian.Uint16(h[3:5]))
	if n < 4+2+32 || n > MaxPacket {
		return key, false, ErrNotReplay
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return key, false, err
	}
	if inverted {
		body = Invert(body)
	}
	if body[0] != 1 {
		return key, false, ErrNotReplay
	}
	copy(key[:], body[RandomOffset-5:])
	return key, inverted, nil
}

// Bytes returns the total bytes each side sends after the first packet.
func (t *Trace) Bytes() (client, server int64) {
	for _, p := range t.Packets {
		if p.ClientHello {
			continue
		}
		if p.From == "client" {
			client += int64(p.Size * p.Count)
		} else {
			server += int64(p.Size * p.Count)
		}
	}
	return client, server
}

func randRead(b []byte) { rand.Read(b) }
