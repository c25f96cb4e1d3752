package schemas_test

import (
	"testing"

	"github.com/neubot/neubot/schemas"
)

// TestEveryTestHasHeadline: the agent's history and `neubot run` show a
// test through its keys' Headline, so every registered test has one.
func TestEveryTestHasHeadline(t *testing.T) {
	for _, test := range schemas.Tests() {
		if _, ok := test.NewKeys().(schemas.Headliner); !ok {
			t.Errorf("the keys of %s do not implement schemas.Headliner", test.Name)
		}
	}
}
