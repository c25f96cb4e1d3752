// Package speedtesttest holds what tests of other packages need of the
// speedtest client: a short methodology for functional tests on loopback.
package speedtesttest

import (
	"time"

	"github.com/neubot/neubot/agent/speedtest"
)

// Quick is a short methodology for functional tests on loopback: phases of
// 200 to 400 ms (methodology 2: at most 400 ms, a 200-ms window) and three
// latency samples. It measures nothing worth keeping.
var Quick = speedtest.Config{MinPhase: 200 * time.Millisecond, MaxPhase: 400 * time.Millisecond, LatencySamples: 3,
	V2: speedtest.V2Config{MaxPhase: 400 * time.Millisecond, MaxPhaseLongRTT: 400 * time.Millisecond, MinWindow: 200 * time.Millisecond}}
