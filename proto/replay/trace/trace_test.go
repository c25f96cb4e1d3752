package trace

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"
)

// TestClientHello: crypto/tls reads the ClientHello as a real one (the
// server name it carries, TLS 1.3 offered), the name sits at SNIOffset,
// and ReadFirst finds the key in it and in its inversion.
func TestClientHello(t *testing.T) {
	key := FlowKey("token", "original", 3)
	hello := ClientHello("video.example.net", key)
	if got := string(hello[SNIOffset : SNIOffset+len("video.example.net")]); got != "video.example.net" {
		t.Fatalf("at SNIOffset: %q", got)
	}
	a, b := net.Pipe()
	go func() { a.Write(hello); a.Close() }()
	got := make(chan *tls.ClientHelloInfo, 1)
	srv := tls.Server(b, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		got <- h
		return nil, errors.New("enough")
	}})
	srv.SetDeadline(time.Now().Add(5 * time.Second))
	srv.Handshake()
	select {
	case h := <-got:
		if h.ServerName != "video.example.net" || len(h.SupportedVersions) == 0 || h.SupportedVersions[0] != tls.VersionTLS13 {
			t.Fatalf("crypto/tls read name %q, versions %x", h.ServerName, h.SupportedVersions)
		}
	default:
		t.Fatal("crypto/tls did not parse the ClientHello")
	}
	for _, inv := range []bool{false, true} {
		b := hello
		if inv {
			b = Invert(hello)
		}
		k, inverted, err := ReadFirst(bytes.NewReader(b))
		if err != nil || k != key || inverted != inv {
			t.Fatalf("inverted %v: key %x, %v, %v", inv, k, inverted, err)
		}
	}
	if _, _, err := ReadFirst(bytes.NewReader([]byte("GET / HTTP/1.1\r\n\r\n"))); !errors.Is(err, ErrNotReplay) {
		t.Fatalf("HTTP: %v", err)
	}
}

func TestLoad(t *testing.T) {
	tr, err := Load("tls-video", 0)
	if err != nil {
		t.Fatal(err)
	}
	if c, s := tr.Bytes(); tr.Version != 1 || !tr.Packets[0].ClientHello || c == 0 || s < 1<<20 {
		t.Fatalf("trace %+v, bytes %d/%d", tr, c, s)
	}
	if _, err := Load("tls-video", 9); err == nil {
		t.Fatal("a missing version loaded")
	}
	for _, bad := range []string{`{"packets":[]}`, `{"packets":[{"from":"x","size":1}]}`, `{"packets":[{"from":"server","size":0}]}`,
		`{"packets":[{"from":"client","size":5},{"from":"client","client_hello":true}]}`, `{"packets":[{"from":"server","size":1,"count":100000}]}`} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%s parsed", bad)
		}
	}
}

// FuzzReadFirst: arbitrary first bytes end in a key or an error, never a
// panic or a read past what the header announced.
func FuzzReadFirst(f *testing.F) {
	f.Add(ClientHello("a.example", Key{}))
	f.Add(Invert(ClientHello("b.example", Key{1})))
	f.Add([]byte{0x16, 3, 1, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		ReadFirst(bytes.NewReader(b))
	})
}

// FuzzParse: arbitrary trace files parse or fail cleanly.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"name":"x","version":1,"packets":[{"from":"client","client_hello":true},{"from":"server","size":10,"count":3}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		Parse(b)
	})
}
