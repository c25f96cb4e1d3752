// Package version holds the software version, the commit it was built from
// and the default collector of the volunteer's binary, all set at build time
// with -ldflags "-X github.com/neubot/neubot/internal/version.Version=..."
// (`make dist` sets them; see dist/mkdist).
package version

import (
	"strconv"
	"strings"
)

// Base is the release this tree is heading for; development builds are
// Base-dev and `make dist` snapshots Base~DATE.COMMIT.
const Base = "0.1.0"

// Version of this build.
var Version = Base + "-dev"

// Commit is the git commit of this build ("" when not built by make dist).
var Commit = ""

// DefaultCollector is the collector the agent and `neubot run` ask when no
// --collector (NEUBOT_COLLECTOR) is given: its rendezvous finds the test
// servers and it receives the results. A build for a deployment sets it
// (make dist COLLECTOR=https://...); the default is the local platform of
// `neubot-server up`.
var DefaultCollector = "http://127.0.0.1:9773"

// Compare orders two versions of this project: -1 if a is older than b, 0 if
// they are the same release, +1 if a is newer. A version is dot-separated
// numbers, optionally followed by a pre-release part after "-" or "~" (which
// comes before the release itself, as in semver and Debian: 0.1.0-dev and
// 0.1.0~20261203.abc1234 are older than 0.1.0) and build metadata after "+"
// (ignored). Missing numbers count as 0; a part that is not a number
// compares as text. Pre-releases of the same numbers compare as text.
func Compare(a, b string) int {
	an, ap := split(a)
	bn, bp := split(b)
	for i := 0; i < max(len(an), len(bn)); i++ {
		x, y := "0", "0"
		if i < len(an) {
			x = an[i]
		}
		if i < len(bn) {
			y = bn[i]
		}
		if c := comparePart(x, y); c != 0 {
			return c
		}
	}
	switch {
	case ap == bp:
		return 0
	case ap == "": // a release is newer than its pre-releases
		return 1
	case bp == "":
		return -1
	}
	return strings.Compare(ap, bp)
}

// split returns the numbers of v and its pre-release part, without a
// leading "v" and the build metadata.
func split(v string) ([]string, string) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	if i := strings.IndexByte(v, '+'); i >= 0 {
		v = v[:i]
	}
	pre := ""
	if i := strings.IndexAny(v, "-~"); i >= 0 {
		v, pre = v[:i], v[i+1:]
	}
	return strings.Split(v, "."), pre
}

func comparePart(x, y string) int {
	xi, xerr := strconv.ParseUint(x, 10, 64)
	yi, yerr := strconv.ParseUint(y, 10, 64)
	if xerr == nil && yerr == nil {
		switch {
		case xi < yi:
			return -1
		case xi > yi:
			return 1
		}
		return 0
	}
	return strings.Compare(x, y)
}

// String is "VERSION (commit COMMIT)", or VERSION alone when the commit is
// not known.
func String() string {
	if Commit == "" {
		return Version
	}
	return Version + " (commit " + Commit + ")"
}
