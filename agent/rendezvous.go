package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/proto/rendezvous"
)

// MaxCandidates bounds the servers (or peers) one test tries in turn when
// the first ones are busy or unreachable.
const MaxCandidates = 3

// Rendezvous asks the collector at collectorURL which live test servers
// serve req's tests (spec/rendezvous.md). It is the one client of the
// rendezvous: the agent's tests and `neubot run` without --server use it.
func Rendezvous(ctx context.Context, client *http.Client, collectorURL string, req rendezvous.RendezvousRequest) (*rendezvous.RendezvousResponse, error) {
	if collectorURL == "" {
		return nil, errors.New("no test server: give a server URL or a collector URL")
	}
	hreq, _, err := httpx.NewJSONRequest(ctx, http.MethodPost, strings.TrimRight(collectorURL, "/")+rendezvous.RendezvousPath, req)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: %w", err)
	}
	var rr rendezvous.RendezvousResponse
	a, err := httpx.FetchJSON(client, hreq, rendezvous.MaxRendezvousBodyBytes, &rr)
	switch {
	case a != nil && a.Status != http.StatusOK:
		return nil, fmt.Errorf("rendezvous: the collector at %s answered %s", collectorURL, a.StatusLine())
	case errors.Is(err, httpx.ErrNotJSON):
		return nil, fmt.Errorf("rendezvous: the collector's answer: %w", err)
	case err != nil:
		return nil, fmt.Errorf("rendezvous: %w", err)
	}
	return &rr, nil
}

// Candidates are the first MaxCandidates servers the rendezvous answer rr
// lists for test, least loaded first, without the peer whose ID is self
// (an agent serving peers must not test against itself; "" skips none).
func Candidates(rr *rendezvous.RendezvousResponse, test, self string) ([]rendezvous.ServerInfo, error) {
	var out []rendezvous.ServerInfo
	for _, s := range rr.Servers[test] {
		if s.Peer && self != "" && s.ID == self {
			continue
		}
		if len(out) < MaxCandidates {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("rendezvous: no test server serves %s now", test)
	}
	return out, nil
}

// TryNext says whether a test that failed with err may try the next
// candidate: the server was busy or refused it, or could not be reached.
func TryNext(err error) bool {
	var pe *plugin.ProtocolError
	if errors.As(err, &pe) {
		return pe.Status == http.StatusTooManyRequests || pe.Status == http.StatusServiceUnavailable
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}
