package trace

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/neubot/neubot/internal/looptest"
)

// TestRecordBuild records a real TLS session (crypto/tls on both ends,
// real sockets) through Record's relay: the server sends three segments of
// 200 kB 300 ms apart after the client's request. Build makes a trace that
// Parse accepts, opening with the ClientHello, carrying the server's bytes
// (TLS records and all) in packets of at most the MSS, with the pauses.
func TestRecordBuild(t *testing.T) {
	const segment, segments = 200_000, 3
	cert, _ := looptest.SelfSigned(t, "video.example.net")
	srvAddr := looptest.ServeOne(t, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		req := make([]byte, 4)
		if _, err := io.ReadFull(tc, req); err != nil {
			return
		}
		buf := make([]byte, segment)
		for i := 0; i < segments; i++ {
			if i > 0 {
				time.Sleep(300 * time.Millisecond)
			}
			tc.Write(buf)
		}
		tc.CloseWrite()
		io.Copy(io.Discard, tc)
	})
	recL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer recL.Close()
	type recorded struct {
		events []Event
		err    error
	}
	done := make(chan recorded, 1)
	go func() {
		c, err := recL.Accept()
		if err != nil {
			done <- recorded{err: err}
			return
		}
		up, err := net.Dial("tcp", srvAddr)
		if err != nil {
			done <- recorded{err: err}
			return
		}
		ev, err := Record(c, up)
		done <- recorded{ev, err}
	}()
	c, err := tls.Dial("tcp", recL.Addr().String(), &tls.Config{ServerName: "video.example.net", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET!"))
	got, err := io.Copy(io.Discard, c)
	if err != nil || got != segment*segments {
		t.Fatalf("client read %d bytes, %v", got, err)
	}
	c.Close()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	tr, err := Build("tls-test", 1, "a test", r.events, 1448)
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Packets[0].ClientHello {
		t.Fatalf("first packet %+v, want the ClientHello", tr.Packets[0])
	}
	_, server := tr.Bytes()
	if server < segment*segments || server > segment*segments*11/10 {
		t.Fatalf("server bytes %d, want the %d of the segments plus TLS overhead", server, segment*segments)
	}
	pauses := 0
	for _, p := range tr.Packets {
		if p.Size > 1448 {
			t.Fatalf("packet of %d bytes above the MSS", p.Size)
		}
		if p.From == "server" && p.AtMs >= 250 {
			pauses++
		}
	}
	if pauses != segments-1 {
		t.Fatalf("%d pauses of the server, want %d: %+v", pauses, segments-1, tr.Packets)
	}
	b, err := tr.Encode()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(b)
	if err != nil || len(again.Packets) != len(tr.Packets) {
		t.Fatalf("the encoded trace does not parse back: %v\n%s", err, b)
	}
	for i := range tr.Packets {
		if again.Packets[i] != tr.Packets[i] {
			t.Fatalf("packet %d: %+v, encoded and parsed %+v", i, tr.Packets[i], again.Packets[i])
		}
	}
}

// TestRecordedTraces: the traces recorded with tracerec load as the
// replay loads them, and carry a ClientHello and server bytes.
func TestRecordedTraces(t *testing.T) {
	tr, err := Load("tls-download", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, server := tr.Bytes(); !tr.Packets[0].ClientHello || server < 4_000_000 {
		t.Fatalf("tls-download v1: first %+v, %d server bytes", tr.Packets[0], server)
	}
}
