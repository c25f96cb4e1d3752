package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/neubot/neubot/agent/peer"
	"github.com/neubot/neubot/agent/web"
	"github.com/neubot/neubot/internal/httpx"
	"github.com/neubot/neubot/internal/ratelimit"
	"github.com/neubot/neubot/internal/token"
	"github.com/neubot/neubot/internal/version"
)

// CSRFHeader carries the token on state-changing requests.
const CSRFHeader = "X-Neubot-CSRF"

// maxBody bounds API request bodies.
const maxBody = 16 << 10

// Handler is the local API (API.md) and the web UI, behind the DNS
// rebinding and CSRF protections.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", a.apiStatus)
	mux.HandleFunc("GET /api/v1/results", a.apiResults)
	mux.HandleFunc("GET /api/v1/usage", a.apiUsage)
	mux.HandleFunc("POST /api/v1/run", a.apiRun)
	mux.HandleFunc("GET /api/v1/config", a.apiGetConfig)
	mux.HandleFunc("PUT /api/v1/config", a.apiPutConfig)
	mux.HandleFunc("POST /api/v1/consent", a.apiConsent)
	mux.HandleFunc("GET /api/v1/isp", a.apiISP)
	mux.Handle("/", web.Handler(a.csrf))
	return a.protect(mux)
}

// LoopbackHost reports whether a Host header names this machine's loopback.
func LoopbackHost(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// protect refuses requests for another host name (DNS rebinding), and
// state-changing requests without the CSRF token or from another origin.
//
// With a RemotePassword (--allow-remote), every request must carry it,
// whatever its Host: the API is then reachable from the network, and a
// page that learnt the CSRF token (from GET / with a forged Host) would
// otherwise control the agent. Failed attempts are rate limited per
// address (/64 for IPv6).
func (a *Agent) protect(next http.Handler) http.Handler {
	failures := ratelimit.New(0.2, 5)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.opts.RemotePassword != "" {
			key := ratelimit.Key(httpx.ClientAddr(r, false))
			_, got, ok := r.BasicAuth()
			if !ok || !token.Equal(got, a.opts.RemotePassword) {
				if !failures.Allow(key, time.Now()) {
					w.Header().Set("Retry-After", strconv.Itoa(int(failures.RetryAfter(key)/time.Second)))
					httpx.WriteJSON(w, http.StatusTooManyRequests, apiError{Error: "too many wrong passwords from this address: wait"})
					return
				}
				w.Header().Set("WWW-Authenticate", `Basic realm="neubot agent", charset="UTF-8"`)
				httpx.WriteJSON(w, http.StatusUnauthorized, apiError{Error: "this agent's API needs the password its volunteer set (--remote-password)"})
				return
			}
		} else if !LoopbackHost(r.Host) {
			httpx.WriteJSON(w, http.StatusMisdirectedRequest, apiError{Error: "this agent answers only to 127.0.0.1, [::1] or localhost"})
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !httpx.SameOrigin(r) {
				httpx.WriteJSON(w, http.StatusForbidden, apiError{Error: "cross-origin request refused"})
				return
			}
			if !token.Equal(r.Header.Get(CSRFHeader), a.csrf) {
				httpx.WriteJSON(w, http.StatusForbidden, apiError{Error: "missing or wrong " + CSRFHeader + " token"})
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		next.ServeHTTP(w, r)
	})
}

// Status is the answer of GET /api/v1/status.
type Status struct {
	AgentID        string     `json:"agent_id"`
	Version        string     `json:"version"`
	Consent        ConsentDoc `json:"consent"`
	Paused         bool       `json:"paused"`
	Running        bool       `json:"running"`
	Progress       *Progress  `json:"progress"`
	NextTest       *time.Time `json:"next_test"`
	LastError      string     `json:"last_error"`
	PendingUploads int        `json:"pending_uploads"`
	DataUsed       DataUsed   `json:"data_used"`
	// Peers is serving other agents' tests (peer-to-peer mode).
	Peers PeersDoc `json:"peers"`
	// Update is set when the collector's rendezvous announced a release
	// newer than this agent; the agent never updates itself.
	Update *UpdateDoc `json:"update,omitempty"`
}

// UpdateDoc says that a newer release of the agent exists.
type UpdateDoc struct {
	Latest  string `json:"latest"`
	Current string `json:"current"`
	// File is the name of the latest release's file for this machine, as
	// make dist names it: neubot_0.2.0_amd64.deb, neubot_0.2.0_darwin_arm64.
	File string `json:"file"`
}

// PeersDoc is the peer-to-peer part of the status.
type PeersDoc struct {
	// Serving is true while the agent accepts other agents' tests;
	// Status then says whether the collector lists it, and its caps
	// and volume.
	Serving bool         `json:"serving"`
	Status  *peer.Status `json:"status,omitempty"`
	// Error says why serving could not start.
	Error string `json:"error,omitempty"`
}

// ConsentDoc is the consent part of the status.
type ConsentDoc struct {
	Decided    bool `json:"decided"`
	Informed   bool `json:"informed"`
	CanCollect bool `json:"can_collect"`
	CanPublish bool `json:"can_publish"`
}

// DataUsed is the data part of the status.
type DataUsed struct {
	TodayBytes      int64 `json:"today_bytes"`
	MonthBytes      int64 `json:"month_bytes"`
	MonthlyCapBytes int64 `json:"monthly_cap_bytes"`
	CapReached      bool  `json:"cap_reached"`
}

// Status returns the agent's state.
func (a *Agent) Status(ctx context.Context) Status {
	reached, month, capBytes := a.capReached(ctx)
	ps, perr := a.peerStatus()
	now := time.Now().UTC()
	today, _ := a.store.BytesSince(ctx, time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC))
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Status{
		AgentID: a.st.AgentID, Version: version.Version,
		Consent:   ConsentDoc{a.st.Consent.Decided, a.st.Consent.Informed, a.st.Consent.CanCollect, a.st.Consent.CanPublish},
		Paused:    a.cfg.Paused,
		Running:   a.running,
		LastError: a.lastErr,
		DataUsed:  DataUsed{TodayBytes: today, MonthBytes: month, MonthlyCapBytes: capBytes, CapReached: reached},
		Peers:     PeersDoc{Serving: ps != nil, Status: ps, Error: perr},
	}
	if a.progress != nil {
		p := *a.progress
		s.Progress = &p
	}
	if a.latest != "" && version.Compare(a.latest, version.Version) > 0 {
		file := fmt.Sprintf("neubot_%s_%s_%s", a.latest, runtime.GOOS, runtime.GOARCH)
		if runtime.GOOS == "linux" {
			file = fmt.Sprintf("neubot_%s_%s.deb", a.latest, runtime.GOARCH)
		}
		s.Update = &UpdateDoc{Latest: a.latest, Current: version.Version, File: file}
	}
	if !a.nextTest.IsZero() {
		t := a.nextTest.UTC().Truncate(time.Second)
		s.NextTest = &t
	}
	s.PendingUploads = a.fw.Pending()
	return s
}

func (a *Agent) apiStatus(w http.ResponseWriter, r *http.Request) {
	httpx.WriteJSON(w, http.StatusOK, a.Status(r.Context()))
}

func (a *Agent) apiResults(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			httpx.WriteJSON(w, http.StatusBadRequest, apiError{Error: "limit must be an integer from 1 to 1000", Field: "limit"})
			return
		}
		limit = n
	}
	rs, err := a.store.Results(r.Context(), limit)
	if err != nil {
		httpx.WriteJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"results": rs})
}

func (a *Agent) apiUsage(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UTC()
	days, err := a.store.UsageBy(r.Context(), "%Y-%m-%d", now.AddDate(0, 0, -30).Truncate(24*time.Hour))
	if err == nil {
		for i := range days {
			days[i].Day = days[i].Period
		}
	}
	months, err2 := a.store.UsageBy(r.Context(), "%Y-%m", monthStart(now).AddDate(0, -11, 0))
	if err2 == nil {
		for i := range months {
			months[i].Month = months[i].Period
		}
	}
	if err := errors.Join(err, err2); err != nil {
		httpx.WriteJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"days": days, "months": months, "monthly_cap_bytes": a.Config().MonthlyCapMB * 1_000_000})
}

func (a *Agent) apiRun(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	// The test outlives the request: it runs on the agent's context.
	err := a.StartTest(a.ctx, nil)
	switch {
	case err == nil:
		httpx.WriteJSON(w, http.StatusAccepted, map[string]bool{"started": true})
	case errors.Is(err, ErrNoConsent):
		httpx.WriteJSON(w, http.StatusForbidden, apiError{Error: "consent required"})
	case errors.Is(err, ErrRunning):
		httpx.WriteJSON(w, http.StatusConflict, apiError{Error: err.Error()})
	case errors.Is(err, ErrCapReached):
		httpx.WriteJSON(w, http.StatusTooManyRequests, apiError{Error: err.Error()})
	default:
		httpx.WriteJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
	}
}

func (a *Agent) apiGetConfig(w http.ResponseWriter, _ *http.Request) {
	httpx.WriteJSON(w, http.StatusOK, a.Config())
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpx.WriteJSON(w, http.StatusRequestEntityTooLarge, apiError{Error: "body too large"})
			return false
		}
		field := ""
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field = te.Field
		}
		httpx.WriteJSON(w, http.StatusBadRequest, apiError{Error: "bad JSON: " + strings.TrimPrefix(err.Error(), "json: "), Field: field})
		return false
	}
	return true
}

func (a *Agent) apiPutConfig(w http.ResponseWriter, r *http.Request) {
	c := a.Config() // missing fields keep their value
	if !decodeBody(w, r, &c) {
		return
	}
	if err := a.SetConfig(c); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			httpx.WriteJSON(w, http.StatusBadRequest, apiError{Error: ce.Error(), Field: ce.Field})
			return
		}
		httpx.WriteJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	httpx.WriteJSON(w, http.StatusOK, a.Config())
}

func (a *Agent) apiConsent(w http.ResponseWriter, r *http.Request) {
	var c struct {
		Informed   *bool `json:"informed"`
		CanCollect *bool `json:"can_collect"`
		CanPublish *bool `json:"can_publish"`
	}
	if !decodeBody(w, r, &c) {
		return
	}
	if c.Informed == nil || c.CanCollect == nil || c.CanPublish == nil {
		httpx.WriteJSON(w, http.StatusBadRequest, apiError{Error: "informed, can_collect and can_publish are all required"})
		return
	}
	if err := a.SetConsent(*c.Informed, *c.CanCollect, *c.CanPublish); err != nil {
		httpx.WriteJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	httpx.WriteJSON(w, http.StatusOK, a.Status(r.Context()).Consent)
}
