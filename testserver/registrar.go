package testserver

// The registrar keeps a test server listed in the collector's rendezvous:
// it registers at once, then heartbeats at the interval the collector's
// acknowledgement asks for. It speaks only the wire types of schemas, so
// that test servers never import the collector.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/proto/rendezvous"
)

// Timing of the registrar, in units of one second (see Registrar.unit).
const (
	// registerTimeout bounds one registration attempt.
	registerTimeout = 15
	// backoffMin and backoffMax bound the wait after a failed attempt; it
	// doubles at each consecutive failure. The cap is the collector's
	// default expiry, so that a server is listed again within about one
	// expiry after the collector comes back.
	backoffMin = 1
	backoffMax = 30
	// minHeartbeat and maxHeartbeat clamp the interval an ack asks for,
	// so that a bad ack can neither flood the collector nor silence us.
	minHeartbeat = 1
	maxHeartbeat = 600
	// maxAckBytes bounds the read of an answer of the collector.
	maxAckBytes = 64 << 10
)

// Registrar keeps a test server registered with the collector's rendezvous.
// Fill its fields and call Run.
type Registrar struct {
	// CollectorURL is the collector's base URL, e.g. http://127.0.0.1:9773.
	CollectorURL string
	// Token, when set, is sent as Authorization: Bearer <token>; the
	// collector requires it when it has a registration token.
	Token string
	// Key, when set, signs every registration and heartbeat (with a time
	// and a nonce, spec/trust.md): the collector admits a test server only
	// with the key its operator enrolled. Peers register unsigned.
	Key *identity.Key
	// Path is the collector's endpoint (default rendezvous.RegisterPath;
	// volunteers' agents serving peers use rendezvous.PeerRegisterPath).
	Path string
	// OnAck, when set, gets every acknowledgement, and OnError every
	// failed attempt (a peer shows both to its volunteer).
	OnAck   func(rendezvous.RegistrationAck)
	OnError func(error)
	// Info returns the registration to send; it is called before every
	// attempt, so that each heartbeat carries the current load.
	Info func() rendezvous.ServerRegistration
	// Client sends the requests; nil means http.DefaultClient. Each
	// attempt has its own deadline anyway.
	Client *http.Client
	// Logger gets one line per state change (registered, failing,
	// registered again) and Debug lines per heartbeat; nil discards.
	Logger *slog.Logger

	// unit is one second of the registrar's timing and of the ack's
	// intervals; zero means time.Second. Tests shorten it.
	unit time.Duration
}

// StatusError is the error of a registration the collector refused.
type StatusError struct {
	// Code is the HTTP status code of the answer.
	Code int
	// Reason is the collector's explanation (its "error" field, or the
	// start of the body).
	Reason string
	// RetryAfter is the wait the collector asked for, 0 if none.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("collector answered %d %s: %s", e.Code, http.StatusText(e.Code), e.Reason)
}

// Run registers at once, then every HeartbeatS seconds of the last ack
// (rendezvous.DefaultHeartbeatS when the ack does not say), until ctx ends.
// A failed attempt is retried after a capped exponential backoff with
// jitter. Run returns an error only when the Registrar is misconfigured;
// otherwise it returns nil when ctx ends.
func (r *Registrar) Run(ctx context.Context) error {
	if _, err := r.endpoint(); err != nil {
		return err
	}
	if r.Info == nil {
		return errors.New("testserver: Registrar.Info is nil")
	}
	log := r.logger()
	failures, registered := 0, false
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		ack, err := r.Register(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		if err != nil && r.OnError != nil {
			r.OnError(err)
		}
		if err == nil && r.OnAck != nil {
			r.OnAck(ack)
		}
		if err != nil {
			failures++
			wait = r.backoff(failures)
			level := slog.LevelWarn
			var se *StatusError
			if errors.As(err, &se) {
				wait = max(wait, se.RetryAfter)
				if se.Code/100 == 4 && se.Code != http.StatusTooManyRequests {
					level = slog.LevelError // our registration or token is wrong
				}
			}
			log.Log(ctx, level, "cannot register with the collector", "collector", r.CollectorURL,
				"err", err, "failures", failures, "retry_in", wait.String())
		} else {
			wait = r.heartbeat(ack)
			switch {
			case !registered:
				log.Info("registered with the collector", "collector", r.CollectorURL, "heartbeat", wait.String())
			case failures > 0:
				log.Info("registered again with the collector", "collector", r.CollectorURL,
					"after_failures", failures, "heartbeat", wait.String())
			default:
				log.Debug("heartbeat sent to the collector", "collector", r.CollectorURL, "heartbeat", wait.String())
			}
			failures, registered = 0, true
		}
		timer.Reset(wait)
	}
}

// Register sends the current registration once and returns the
// collector's acknowledgement. A refusal is a *StatusError.
func (r *Registrar) Register(ctx context.Context) (rendezvous.RegistrationAck, error) {
	var ack rendezvous.RegistrationAck
	endpoint, err := r.endpoint()
	if err != nil {
		return ack, err
	}
	if r.Info == nil {
		return ack, errors.New("testserver: Registrar.Info is nil")
	}
	ctx, cancel := context.WithTimeout(ctx, r.seconds(registerTimeout))
	defer cancel()
	req, body, err := httpx.NewJSONRequest(ctx, http.MethodPost, endpoint, r.Info())
	if err != nil {
		return ack, err
	}
	req.Header.Set("Accept", "application/json")
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	if r.Key != nil {
		r.Key.SignRequest(req, body, time.Now())
	}
	client := r.Client
	if client == nil {
		client = http.DefaultClient
	}
	a, err := httpx.FetchJSON(client, req, maxAckBytes, &ack)
	var refused *httpx.StatusError
	switch {
	case a == nil:
		return ack, err
	case a.Truncated:
		return ack, fmt.Errorf("the collector's answer is over %d bytes", maxAckBytes)
	case errors.As(err, &refused):
		return ack, statusError(a, r.seconds)
	case errors.Is(err, httpx.ErrNotJSON):
		return ack, fmt.Errorf("the collector's answer is not a registration ack: %w", err)
	case err != nil:
		return ack, fmt.Errorf("read the collector's answer: %w", err)
	}
	return ack, nil
}

// statusError describes a refusal from the answer's JSON "error" field, or
// from the start of its body.
func statusError(a *httpx.Answer, seconds func(int) time.Duration) *StatusError {
	e := &StatusError{Code: a.Status, Reason: a.ErrorText()}
	if len(e.Reason) > 512 {
		e.Reason = e.Reason[:512] + "..."
	}
	if s := a.RetryAfter(); s > 0 {
		e.RetryAfter = seconds(min(s, maxHeartbeat))
	}
	return e
}

func (r *Registrar) endpoint() (string, error) {
	if r.CollectorURL == "" {
		return "", errors.New("testserver: Registrar.CollectorURL is empty")
	}
	path := r.Path
	if path == "" {
		path = rendezvous.RegisterPath
	}
	u, err := url.JoinPath(r.CollectorURL, path)
	if err != nil {
		return "", fmt.Errorf("testserver: bad collector URL %q: %w", r.CollectorURL, err)
	}
	return u, nil
}

// heartbeat is the interval the ack asks for, clamped; it stays below the
// ack's expiry so that one heartbeat is always in time.
func (r *Registrar) heartbeat(ack rendezvous.RegistrationAck) time.Duration {
	s := ack.HeartbeatS
	if s <= 0 {
		s = rendezvous.DefaultHeartbeatS
	}
	d := r.seconds(min(max(s, minHeartbeat), maxHeartbeat))
	if ack.ExpiresS > 0 {
		if exp := r.seconds(ack.ExpiresS); d >= exp {
			d = max(exp/2, r.seconds(minHeartbeat)/2)
		}
	}
	return d
}

// backoff is the wait after the failures-th consecutive failure: it
// doubles from backoffMin up to backoffMax, and a random half of it is
// jitter, so that servers cut off together do not come back in step.
func (r *Registrar) backoff(failures int) time.Duration {
	d := r.seconds(backoffMax)
	if failures <= 6 { // 1<<5 > backoffMax
		d = min(r.seconds(backoffMin)<<(failures-1), d)
	}
	return d/2 + rand.N(d/2+1)
}

func (r *Registrar) seconds(n int) time.Duration {
	u := r.unit
	if u == 0 {
		u = time.Second
	}
	return time.Duration(n) * u
}

func (r *Registrar) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}
