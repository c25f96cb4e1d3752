package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoServerDeps: what volunteers install never links ClickHouse or Arrow.
func TestNoServerDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps printed too little to be believed: %q", out)
	}
	for _, d := range deps {
		for _, banned := range []string{"github.com/ClickHouse/", "github.com/apache/arrow", "github.com/neubot/neubot/collector", "github.com/neubot/neubot/analytics", "github.com/neubot/neubot/publish", "github.com/neubot/neubot/internal/chdb", "github.com/neubot/neubot/internal/localch"} {
			if strings.HasPrefix(d, banned) {
				t.Errorf("cmd/neubot depends on %s", d)
			}
		}
	}
}
