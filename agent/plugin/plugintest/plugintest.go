// Package plugintest gives the tests and benches of the agent's tests the
// environment an agent would give a run: one helper instead of a literal
// in every test.
package plugintest

import (
	"github.com/google/uuid"

	"github.com/neubot/neubot/agent/plugin"
	"github.com/neubot/neubot/schemas"
)

// Consent is a volunteer's full consent: informed, collect and publish.
var Consent = schemas.Consent{Informed: true, CanCollect: true, CanPublish: true}

// Env is the environment of a run against the test server at serverURL by
// a new agent (a random agent_id) with full consent.
func Env(serverURL string) plugin.Env {
	return plugin.Env{ServerURL: serverURL, AgentID: uuid.NewString(), Consent: Consent}
}
