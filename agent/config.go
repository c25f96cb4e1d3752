package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/neubot/neubot/agent/peer"
	"github.com/neubot/neubot/internal/atomicfile"
	"github.com/neubot/neubot/proto/rendezvous"
)

// Config is what the volunteer can change, persisted in config.json.
type Config struct {
	// MeanIntervalMinutes is the mean time between tests (random,
	// exponential, never less than MinInterval).
	MeanIntervalMinutes int `json:"mean_interval_minutes"`
	// Cron, when set, replaces the random schedule with fixed times
	// (5-field spec, e.g. "30 */3 * * *"); still at most every 15 minutes.
	Cron string `json:"cron"`
	// MonthlyCapMB caps the data tests use per calendar month (0: none).
	MonthlyCapMB int64 `json:"monthly_cap_mb"`
	// Paused stops scheduled tests (run-now still works).
	Paused bool `json:"paused"`
	// RetentionDays is how long results are kept locally.
	RetentionDays int `json:"retention_days"`
	// ServePeers offers this agent to other volunteers' agents as a test
	// server (peer-to-peer mode), within PeerCaps. They see this
	// computer's address, as it sees theirs.
	ServePeers bool                `json:"serve_peers"`
	PeerCaps   rendezvous.PeerCaps `json:"peer_caps"`
	// TestWithPeers lets this agent's tests run against other volunteers'
	// agents as well as the platform's servers, whichever is least busy.
	TestWithPeers bool `json:"test_with_peers"`
}

// MinInterval is the shortest time between two scheduled tests (the paper).
const MinInterval = 15 * time.Minute

// DefaultConfig is the configuration of a new agent.
func DefaultConfig() Config {
	return Config{MeanIntervalMinutes: 120, RetentionDays: 365, PeerCaps: peer.DefaultCaps}
}

// ConfigError names the field of a bad config value.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Reason }

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// Validate checks every field.
func (c *Config) Validate() error {
	switch {
	case c.MeanIntervalMinutes < 15 || c.MeanIntervalMinutes > 10080:
		return &ConfigError{"mean_interval_minutes", "must be between 15 and 10080 (one week)"}
	case c.MonthlyCapMB < 0 || c.MonthlyCapMB > 10_000_000:
		return &ConfigError{"monthly_cap_mb", "must be between 0 (no cap) and 10000000"}
	case c.RetentionDays < 1 || c.RetentionDays > 3650:
		return &ConfigError{"retention_days", "must be between 1 and 3650"}
	case len(c.Cron) > 100:
		return &ConfigError{"cron", "is too long"}
	}
	if err := c.PeerCaps.Validate(); err != nil {
		var me *rendezvous.MessageError
		if errors.As(err, &me) && len(me.Fields) > 0 {
			return &ConfigError{"peer_caps." + me.Fields[0].Path, me.Fields[0].Reason}
		}
		return &ConfigError{"peer_caps", err.Error()}
	}
	if c.Cron != "" {
		if _, err := cronParser.Parse(c.Cron); err != nil {
			return &ConfigError{"cron", fmt.Sprintf("is not a 5-field cron spec: %v", err)}
		}
	}
	return nil
}

// state is what the agent keeps about itself, in state.json.
type state struct {
	AgentID string `json:"agent_id"`
	// PeerID is the identity under which the agent serves peers: random,
	// apart from AgentID so that records do not link the two.
	PeerID  string `json:"peer_id,omitempty"`
	Consent struct {
		Decided    bool      `json:"decided"`
		Informed   bool      `json:"informed"`
		CanCollect bool      `json:"can_collect"`
		CanPublish bool      `json:"can_publish"`
		At         time.Time `json:"at"`
	} `json:"consent"`
}

// readJSON reads path into v; a missing file leaves v as it is.
func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(b) > 1<<20 {
		return fmt.Errorf("%s is too large", path)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// writeJSON writes v to path atomically (internal/atomicfile).
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'))
}
