// Package wire is the part of the BitTorrent differential test that both
// ends share (spec/bittorrent.md): the peer-wire codec (handshake and
// length-prefixed messages), the flow keys that carry the negotiated token,
// one flow as seeder or leecher in either of the two shapes (real
// BitTorrent, or random bytes of the same sizes and timing), and Analyze,
// which turns the flows' throughput samples into the comparisons and
// outcomes of the record.
package wire

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"strconv"

	spec "github.com/neubot/neubot/proto/bittorrent"
)

// Key is the 20-byte key of one flow; it is the info_hash of the
// handshake.
type Key [20]byte

// FlowKey derives the key of flow index of the given kind and direction
// from the negotiated token: HMAC-SHA256(token, label|kind|dir|index),
// truncated to 20 bytes. Without the token it is unpredictable, and it
// looks like any SHA-1 info_hash.
func FlowKey(token, kind, dir string, index int) Key {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte(spec.FlowKeyLabel + "|" + kind + "|" + dir + "|" + strconv.Itoa(index)))
	var k Key
	copy(k[:], mac.Sum(nil))
	return k
}

// random is the source of every payload byte: a buffer of random bytes
// made once, read from at random offsets (as the speedtest does), so that
// the test costs no randomness per byte and nothing compresses.
var random = func() []byte {
	b := make([]byte, 4<<20)
	if _, err := rand.Read(b); err != nil {
		panic("peer: no randomness: " + err.Error())
	}
	return b
}()

// fill fills b with random bytes.
func fill(b []byte) {
	for len(b) > 0 {
		off := mrand.IntN(len(random) - 1024)
		n := copy(b, random[off:])
		b = b[n:]
	}
}

// Handshake returns the 68 bytes of a BitTorrent handshake: <19>"BitTorrent
// protocol", eight reserved bytes (the extension-protocol bit set, as
// every current client does), the info_hash and the peer_id.
func Handshake(infoHash Key, peerID [20]byte) []byte {
	b := make([]byte, 0, spec.HandshakeLen)
	b = append(b, byte(len(spec.Protocol)))
	b = append(b, spec.Protocol...)
	b = append(b, 0, 0, 0, 0, 0, 0x10, 0, 0)
	b = append(b, infoHash[:]...)
	return append(b, peerID[:]...)
}

// RandomHandshake returns 68 random bytes carrying key at the offset of
// the info_hash: the first bytes of a random-bytes control flow.
func RandomHandshake(key Key) []byte {
	b := make([]byte, spec.HandshakeLen)
	fill(b)
	copy(b[spec.InfoHashOffset:], key[:])
	return b
}

// PeerID returns an Azureus-style peer_id: "-NB1000-" and 12 random
// alphanumeric characters.
func PeerID() [20]byte {
	const chars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	var id [20]byte
	copy(id[:], "-NB1000-")
	for i := 8; i < 20; i++ {
		id[i] = chars[mrand.IntN(len(chars))]
	}
	return id
}

// ErrNotBitTorrent is returned for a handshake without the BitTorrent
// protocol string.
var ErrNotBitTorrent = errors.New("not a BitTorrent handshake")

// ParseHandshake checks the first bytes of a flow. It returns the key at
// the info_hash offset and whether the bytes are a BitTorrent handshake;
// random-bytes flows carry their key at the same offset.
func ParseHandshake(b []byte) (key Key, bittorrent bool, err error) {
	if len(b) != spec.HandshakeLen {
		return key, false, fmt.Errorf("handshake of %d bytes, want %d", len(b), spec.HandshakeLen)
	}
	copy(key[:], b[spec.InfoHashOffset:])
	bittorrent = b[0] == byte(len(spec.Protocol)) && string(b[1:1+len(spec.Protocol)]) == spec.Protocol
	return key, bittorrent, nil
}

// Message is one peer-wire message; a keep-alive has KeepAlive set and no
// ID.
type Message struct {
	KeepAlive bool
	ID        byte
	Payload   []byte
}

// Append appends the message's encoding, <length><id><payload>.
func (m Message) Append(b []byte) []byte {
	if m.KeepAlive {
		return append(b, 0, 0, 0, 0)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(1+len(m.Payload)))
	b = append(b, m.ID)
	return append(b, m.Payload...)
}

// ErrMessage is wrapped by errors about a malformed message.
var ErrMessage = errors.New("malformed peer-wire message")

// ReadMessage reads one message from r into buf (which must hold
// spec.MaxMessage bytes; the payload aliases it). It refuses a length
// above spec.MaxMessage, so a peer cannot make it allocate or wait for more.
func ReadMessage(r io.Reader, buf []byte) (Message, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Message{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return Message{KeepAlive: true}, nil
	}
	if n > spec.MaxMessage || int(n) > len(buf) {
		return Message{}, fmt.Errorf("%w: length %d over %d", ErrMessage, n, spec.MaxMessage)
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Message{}, err
	}
	return Message{ID: buf[0], Payload: buf[1:n]}, nil
}

// Request is the payload of a request or piece header: piece index, byte
// offset in the piece, length (request) — piece messages carry index and
// offset followed by the block.
type Request struct{ Index, Begin, Length uint32 }

// ParseRequest decodes the payload of a request message.
func ParseRequest(p []byte) (Request, error) {
	if len(p) != 12 {
		return Request{}, fmt.Errorf("%w: request payload of %d bytes", ErrMessage, len(p))
	}
	r := Request{binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:]), binary.BigEndian.Uint32(p[8:])}
	if r.Length == 0 || r.Length > spec.BlockSize || r.Index >= spec.Pieces || r.Begin%spec.BlockSize != 0 || r.Begin >= spec.PieceBlocks*spec.BlockSize {
		return Request{}, fmt.Errorf("%w: request %+v out of the torrent", ErrMessage, r)
	}
	return r, nil
}

func (r Request) payload() []byte {
	b := binary.BigEndian.AppendUint32(nil, r.Index)
	b = binary.BigEndian.AppendUint32(b, r.Begin)
	return binary.BigEndian.AppendUint32(b, r.Length)
}
