package main

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/neubot/neubot"

// deps returns every package cmd/neubot links, each with its imports.
func deps(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	pkgs := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) > 0 {
			pkgs[f[0]] = f[1:]
		}
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list -deps printed too little to be believed: %q", out)
	}
	return pkgs
}

// TestNoServerDeps: what volunteers install never links ClickHouse, Arrow,
// the packaging tools of make dist (nfpm)
// or a server component (collector, publish, analytics).
func TestNoServerDeps(t *testing.T) {
	for d := range deps(t) {
		for _, banned := range []string{"github.com/ClickHouse/", "github.com/apache/arrow", "github.com/goreleaser/", module + "/dist", module + "/collector", module + "/analytics", module + "/publish", module + "/internal/chdb", module + "/internal/localch"} {
			if strings.HasPrefix(d, banned) {
				t.Errorf("cmd/neubot depends on %s", d)
			}
		}
	}
}

// TestOnlyPeerImportsTestServer: the agent's clients speak the protocols of
// proto/ and never import the test server; only agent/peer (peer mode,
// which serves tests to other agents) embeds its providers.
func TestOnlyPeerImportsTestServer(t *testing.T) {
	peerSeen := false
	for pkg, imports := range deps(t) {
		if !strings.HasPrefix(pkg, module+"/agent") {
			continue
		}
		for _, imp := range imports {
			if imp != module+"/testserver" && !strings.HasPrefix(imp, module+"/testserver/") {
				continue
			}
			if pkg == module+"/agent/peer" {
				peerSeen = true
				continue
			}
			t.Errorf("%s imports %s: only agent/peer may import the test server (the clients import proto/)", pkg, imp)
		}
	}
	if !peerSeen {
		t.Error("agent/peer imports no testserver package: this test no longer sees what it checks")
	}
}
