package identity

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/neubot/neubot/internal/token"
	"github.com/neubot/neubot/proto/rendezvous"
)

// requestContext separates the signatures of requests from every other
// use of a key (spec/trust.md).
const requestContext = "neubot-request-v1\n"

// canonicalRequest is what a signed request's signature covers.
func canonicalRequest(method, path, ts, nonce string, body []byte) []byte {
	sum := sha256.Sum256(body)
	return []byte(requestContext + method + "\n" + path + "\n" + ts + "\n" + nonce + "\n" + hex.EncodeToString(sum[:]) + "\n")
}

// SignRequest sets the signature headers of req, whose body is body, as
// of now.
func (k *Key) SignRequest(req *http.Request, body []byte, now time.Time) {
	nonce := token.Hex(16)
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := k.Sign(canonicalRequest(req.Method, req.URL.EscapedPath(), ts, nonce, body))
	req.Header.Set(rendezvous.HeaderKey, k.pub)
	req.Header.Set(rendezvous.HeaderTime, ts)
	req.Header.Set(rendezvous.HeaderNonce, nonce)
	req.Header.Set(rendezvous.HeaderSignature, base64.RawURLEncoding.EncodeToString(sig))
}

// Errors of VerifyRequest.
var (
	ErrUnsigned     = errors.New("the request is not signed (headers " + rendezvous.HeaderKey + ", " + rendezvous.HeaderTime + ", " + rendezvous.HeaderNonce + ", " + rendezvous.HeaderSignature + ")")
	ErrNotEnrolled  = errors.New("the key is not enrolled by the collector's operator")
	ErrBadSignature = errors.New("the signature does not verify")
	ErrStale        = fmt.Errorf("the request's time is more than %d s from the collector's clock", rendezvous.MaxRequestSkewS)
	ErrReplayed     = errors.New("the request's nonce was already used")
)

// Verifier checks signed requests against an allow-list and remembers
// their nonces for the time window, so that a captured request cannot be
// sent again.
type Verifier struct {
	Allow *AllowList

	mu     sync.Mutex
	nonces map[string]time.Time // nonce -> when it may be forgotten
	next   time.Time
}

// maxNonces bounds the remembered nonces: only enrolled servers get there,
// a few requests a minute each.
const maxNonces = 1 << 20

// Signed reports whether req carries signature headers at all.
func Signed(req *http.Request) bool {
	return req.Header.Get(rendezvous.HeaderSignature) != "" || req.Header.Get(rendezvous.HeaderKey) != ""
}

// VerifyRequest checks the signature of req (body already read) and
// returns the enrolled server it comes from.
func (v *Verifier) VerifyRequest(req *http.Request, body []byte, now time.Time) (Enrolled, error) {
	key, ts, nonce, sig := req.Header.Get(rendezvous.HeaderKey), req.Header.Get(rendezvous.HeaderTime), req.Header.Get(rendezvous.HeaderNonce), req.Header.Get(rendezvous.HeaderSignature)
	if key == "" || ts == "" || nonce == "" || sig == "" {
		return Enrolled{}, ErrUnsigned
	}
	if len(nonce) < 16 || len(nonce) > 64 || len(sig) > 128 || len(ts) > 20 {
		return Enrolled{}, ErrBadSignature
	}
	e, ok := v.Allow.Lookup(key)
	if !ok {
		return Enrolled{}, ErrNotEnrolled
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return e, ErrBadSignature
	}
	if d := now.Unix() - sec; d > rendezvous.MaxRequestSkewS || d < -rendezvous.MaxRequestSkewS {
		return e, ErrStale
	}
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(raw) != ed25519.SignatureSize ||
		!ed25519.Verify(e.Key, canonicalRequest(req.Method, req.URL.EscapedPath(), ts, nonce, body), raw) {
		return e, ErrBadSignature
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.nonces == nil {
		v.nonces = map[string]time.Time{}
	}
	if now.After(v.next) || len(v.nonces) >= maxNonces {
		for n, until := range v.nonces {
			if now.After(until) {
				delete(v.nonces, n)
			}
		}
		v.next = now.Add(time.Minute)
	}
	if len(v.nonces) >= maxNonces {
		return e, errors.New("too many signed requests: retry later")
	}
	id := key + " " + nonce
	if _, seen := v.nonces[id]; seen {
		return e, ErrReplayed
	}
	v.nonces[id] = time.Unix(sec, 0).Add(2 * rendezvous.MaxRequestSkewS * time.Second)
	return e, nil
}
