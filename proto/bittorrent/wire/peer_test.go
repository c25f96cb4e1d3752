package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	spec "github.com/neubot/neubot/proto/bittorrent"
	"github.com/neubot/neubot/schemas"
)

func TestHandshake(t *testing.T) {
	key := FlowKey("token", schemas.FlowBitTorrent, schemas.DirDownload, 3)
	if key == FlowKey("token", schemas.FlowBitTorrent, schemas.DirDownload, 4) || key == FlowKey("other", schemas.FlowBitTorrent, schemas.DirDownload, 3) {
		t.Fatal("flow keys of different flows or tokens collide")
	}
	h := Handshake(key, PeerID())
	if len(h) != 68 || !bytes.HasPrefix(h, []byte("\x13BitTorrent protocol")) || !bytes.HasPrefix(h[48:], []byte("-NB1000-")) {
		t.Fatalf("handshake %q", h)
	}
	got, bt, err := ParseHandshake(h)
	if err != nil || !bt || got != key {
		t.Fatalf("parse: %x %v %v", got, bt, err)
	}
	got, bt, err = ParseHandshake(RandomHandshake(key))
	if err != nil || bt || got != key {
		t.Fatalf("random handshake: %x %v %v", got, bt, err)
	}
}

func TestReadMessage(t *testing.T) {
	buf := make([]byte, spec.MaxMessage)
	var wire []byte
	wire = Message{KeepAlive: true}.Append(wire)
	wire = Message{ID: spec.MsgRequest, Payload: Request{1, spec.BlockSize, spec.BlockSize}.payload()}.Append(wire)
	r := bytes.NewReader(wire)
	if m, err := ReadMessage(r, buf); err != nil || !m.KeepAlive {
		t.Fatalf("keep-alive: %+v %v", m, err)
	}
	m, err := ReadMessage(r, buf)
	if err != nil || m.ID != spec.MsgRequest {
		t.Fatalf("request: %+v %v", m, err)
	}
	if req, err := ParseRequest(m.Payload); err != nil || req != (Request{1, spec.BlockSize, spec.BlockSize}) {
		t.Fatalf("request payload: %+v %v", req, err)
	}
	huge := binary.BigEndian.AppendUint32(nil, 1<<30)
	if _, err := ReadMessage(bytes.NewReader(huge), buf); !errors.Is(err, ErrMessage) {
		t.Fatalf("a length of 1 GiB: %v", err)
	}
	if _, err := ParseRequest(Request{spec.Pieces, 0, spec.BlockSize}.payload()); !errors.Is(err, ErrMessage) {
		t.Fatalf("a piece out of the torrent: %v", err)
	}
}

// pair returns the two ends of a real loopback TCP connection.
func pair(t *testing.T) (net.Conn, net.Conn) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// recorder keeps the first bytes a connection writes.
type recorder struct {
	net.Conn
	head []byte
}

func (r *recorder) Write(p []byte) (int, error) {
	if len(r.head) < 256 {
		r.head = append(r.head, p[:min(len(p), 256-len(r.head))]...)
	}
	return r.Conn.Write(p)
}

// TestFlow runs a seeder and a leecher over real loopback TCP in both
// shapes: the leecher measures, the streams have the same sizes, and only
// the BitTorrent one parses as peer wire.
func TestFlow(t *testing.T) {
	for _, random := range []bool{false, true} {
		a, b := pair(t)
		seedConn := &recorder{Conn: b}
		var sent, recv atomic.Int64
		seeder := &Flow{Conn: seedConn, Random: random, Sent: &sent}
		done := make(chan error, 1)
		go func() { done <- seeder.Seed() }()
		leecher := &Flow{Conn: a, Random: random, Duration: 300 * time.Millisecond, SampleEvery: 50 * time.Millisecond, Received: &recv}
		samples, err := leecher.Leech()
		a.Close()
		if err != nil {
			t.Fatalf("random=%v: leech: %v", random, err)
		}
		if err := <-done; err != nil {
			t.Fatalf("random=%v: seed: %v", random, err)
		}
		if len(samples) < 2 || samples[len(samples)-1].Bytes == 0 {
			t.Fatalf("random=%v: samples %+v", random, samples)
		}
		// Every byte sent was received, in whole pieces after the start.
		if sent.Load() != recv.Load() || (sent.Load()-bitfieldLen-shortLen)%pieceLen != 0 {
			t.Fatalf("random=%v: sent %d, received %d", random, sent.Load(), recv.Load())
		}
		m, err := ReadMessage(bytes.NewReader(seedConn.head), make([]byte, spec.MaxMessage))
		isBitfield := err == nil && m.ID == spec.MsgBitfield && len(m.Payload) == spec.Pieces/8
		if isBitfield == random {
			t.Fatalf("random=%v: the stream starts with %x", random, seedConn.head[:16])
		}
		if mbps := FlowMbps(samples, 0.1); mbps <= 0 {
			t.Fatalf("random=%v: mean %g", random, mbps)
		}
	}
}

func TestAnalyze(t *testing.T) {
	mk := func(kind, dir string, mbps float64, idx int) schemas.BitTorrentFlow {
		f := schemas.BitTorrentFlow{Index: uint16(idx), Kind: kind, Direction: dir}
		var b uint64
		for i := 1; i <= 10; i++ {
			m := mbps * (1 + 0.01*float64(i%3))
			b += uint64(m * 1e6 / 8 / 4)
			f.Samples = append(f.Samples, schemas.ThroughputSample{TS: float64(i) / 4, Bytes: b, Mbps: m})
		}
		return f
	}
	k := &schemas.BitTorrent{WarmupS: 0.5}
	for rep := 0; rep < 3; rep++ {
		for _, dir := range []string{schemas.DirDownload, schemas.DirUpload} {
			bt := 20.0
			if dir == schemas.DirDownload {
				bt = 4 // throttled to a fifth
			}
			k.Flows = append(k.Flows, mk(schemas.FlowBitTorrent, dir, bt, len(k.Flows)),
				mk(schemas.FlowRandom, dir, bt, len(k.Flows)+1), mk(schemas.FlowNeutral, dir, 20, len(k.Flows)+2))
		}
	}
	Analyze(k)
	if k.DownloadOutcome != schemas.OutcomeDifferentiation || k.UploadOutcome != schemas.OutcomeNone || k.Outcome != schemas.OutcomeDifferentiation {
		t.Fatalf("outcomes %s %s %s: %+v", k.DownloadOutcome, k.UploadOutcome, k.Outcome, k.Comparisons)
	}
	// Port throttling: BitTorrent equals random on its port, not neutral.
	if c := k.Comparisons[0]; c.Control != schemas.FlowRandom || c.Outcome != schemas.OutcomeNone {
		t.Fatalf("download vs random: %+v", c)
	}
	if c := k.Comparisons[1]; c.Outcome != schemas.OutcomeDifferentiation || c.Samples != 24 || c.KSD != 1 || c.DiffPct < 79 || c.Reps != 3 || c.RepsSlower != 3 {
		t.Fatalf("download vs neutral: %+v", c)
	}
	// One repetition where BitTorrent ran at full speed: the pooled
	// samples still differ, the repetitions do not agree: inconclusive.
	k.Flows[6] = mk(schemas.FlowBitTorrent, schemas.DirDownload, 20, 6)
	Analyze(k)
	if c := k.Comparisons[1]; c.Outcome != schemas.OutcomeInconclusive || c.KSP >= 0.05 || c.DiffPct < 25 || c.RepsSlower != 2 {
		t.Fatalf("download vs neutral, one repetition unthrottled: %+v", c)
	}
}

// FuzzPeerWire feeds arbitrary bytes to a seeder, as the server's listener
// would: it must end (error or EOF) without panicking or over-reading.
func FuzzPeerWire(f *testing.F) {
	var good []byte
	good = Message{ID: spec.MsgInterested}.Append(good)
	for i := uint32(0); i < 3; i++ {
		good = Message{ID: spec.MsgRequest, Payload: Request{i, 0, spec.BlockSize}.payload()}.Append(good)
	}
	f.Add(good, false)
	f.Add(good[:11], false)
	f.Add(binary.BigEndian.AppendUint32(nil, 1<<31), false)
	f.Add(bytes.Repeat([]byte{0}, 40), true)
	f.Fuzz(func(t *testing.T, data []byte, random bool) {
		if len(data) > 1<<16 {
			return
		}
		if len(data) >= spec.HandshakeLen {
			ParseHandshake(data[:spec.HandshakeLen])
		}
		if _, err := ParseRequest(data[:min(len(data), 12)]); err == nil && len(data) < 12 {
			t.Fatal("short request accepted")
		}
		client, server := net.Pipe()
		go io.Copy(io.Discard, client)
		go func() { client.Write(data); client.Close() }()
		server.SetDeadline(time.Now().Add(5 * time.Second))
		// Garbage ends in an error, a clean close in nil; either way
		// Seed returns, within its deadline.
		_ = (&Flow{Conn: server, Random: random}).Seed()
		server.Close()
	})
}
