package collector

// Abuse limits of ingest (spec/trust.md): a token bucket of requests per
// source address (an IPv6 address's /64), and one of requests per agent_id
// named in a body; past either, 429 with Retry-After and nothing of the
// body is accepted (the agent's spool sends it again later). Requests
// signed by an enrolled test server are not limited: a server forwards the
// tests of many agents from one address.

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/internal/ratelimit"
	"github.com/neubot/neubot/internal/spool"
)

// Limits are the abuse limits of ingest; a zero rate means no limit.
type Limits struct {
	// AddressRate is the ingest requests per second allowed per source
	// address (IPv6: per /64), with a burst of AddressBurst.
	AddressRate  float64
	AddressBurst int
	// AgentRate is the ingest requests per second allowed per agent_id
	// (each agent named in a body takes one token), with a burst of
	// AgentBurst.
	AgentRate  float64
	AgentBurst int
}

// Defaults of the collector command (see README): an agent uploads a few
// times a day, a retry now and then; a household or a CGNAT's address
// carries several agents.
const (
	DefaultAddressRate  = 2
	DefaultAddressBurst = 60
	DefaultAgentRate    = 0.05 // one a 20 s
	DefaultAgentBurst   = 20
)

type limiter struct {
	cfg                Limits
	byAddress, byAgent *ratelimit.Limiter
}

func newLimiter(cfg Limits) *limiter {
	l := &limiter{cfg: cfg}
	if cfg.AddressRate > 0 {
		l.byAddress = ratelimit.New(cfg.AddressRate, max(cfg.AddressBurst, 1))
	}
	if cfg.AgentRate > 0 {
		l.byAgent = ratelimit.New(cfg.AgentRate, max(cfg.AgentBurst, 1))
	}
	return l
}

type ctxKey struct{}

// fromServer says whether the ingest request in ctx was signed by an
// enrolled test server.
func fromServer(ctx context.Context) bool {
	v, _ := ctx.Value(ctxKey{}).(bool)
	return v
}

// limitIngest is the middleware of the ingest endpoint: an enrolled
// server's signed request passes; others take a token of their address.
func (c *Collector) limitIngest(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if identity.Signed(r) {
			// Ingest requests sign an empty body: their records carry
			// signatures of their own (spec/trust.md).
			if _, err := c.requests.VerifyRequest(r, nil, time.Now()); err != nil {
				c.fail(w, http.StatusUnauthorized, "signed request refused: %v", err)
				return
			}
			next(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, true)))
			return
		}
		if l := c.limits.byAddress; l != nil {
			addr := ratelimit.Key(httpx.ClientAddr(r, c.cfg.TrustProxy))
			now := time.Now()
			if !l.Allow(addr, now) {
				c.metrics.limited.WithLabelValues("address").Inc()
				w.Header().Set("Retry-After", strconv.Itoa(int(l.RetryAfter(addr)/time.Second)))
				c.fail(w, http.StatusTooManyRequests, "too many requests from this address; nothing of this body was accepted: retry later")
				return
			}
		}
		next(w, r)
	}
}

// agentsAllowed takes a token per agent named in entries (unless a server
// sent them); on a refusal it answers 429 and returns false.
func (c *Collector) agentsAllowed(w http.ResponseWriter, r *http.Request, entries []spool.Entry) bool {
	l := c.limits.byAgent
	if l == nil || fromServer(r.Context()) {
		return true
	}
	now := time.Now()
	seen := map[string]bool{}
	for _, e := range entries {
		id := e.Decoded.AgentID
		if seen[id] {
			continue
		}
		seen[id] = true
		if !l.Allow("agent "+id, now) {
			c.metrics.limited.WithLabelValues("agent").Inc()
			w.Header().Set("Retry-After", strconv.Itoa(int(l.RetryAfter("agent "+id)/time.Second)))
			c.fail(w, http.StatusTooManyRequests, "too many requests for agent %s; nothing of this body was accepted: retry later", id)
			return false
		}
	}
	return true
}
