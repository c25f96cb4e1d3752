package agent

import (
	"math/rand/v2"
	"time"
)

// NextInterval draws the time to the next test: MinInterval plus an
// exponential variable, so that the mean is the configured one and two tests
// are never closer than MinInterval. Random times sample every hour of the
// day (the Neubot paper's background tests), and the exponential makes the
// schedule memoryless, so no time is favoured.
func NextInterval(rng *rand.Rand, mean time.Duration) time.Duration {
	if mean <= MinInterval {
		return MinInterval
	}
	return MinInterval + time.Duration(rng.ExpFloat64()*float64(mean-MinInterval))
}

// nextTestTime is when the next scheduled test is due after one that ran at
// last (zero: none yet), per cfg. A cron spec gives fixed times, but never
// sooner than MinInterval after the last test.
func nextTestTime(cfg Config, now, last time.Time, rng *rand.Rand) time.Time {
	earliest := now
	if !last.IsZero() && last.Add(MinInterval).After(earliest) {
		earliest = last.Add(MinInterval)
	}
	if cfg.Cron != "" {
		if sched, err := cronParser.Parse(cfg.Cron); err == nil {
			return sched.Next(earliest.Add(-time.Second))
		}
	}
	mean := time.Duration(cfg.MeanIntervalMinutes) * time.Minute
	if last.IsZero() {
		// First test soon after start (the volunteer just installed it),
		// but not in a burst: a few minutes, random.
		return now.Add(time.Duration(30+rng.IntN(150)) * time.Second)
	}
	next := last.Add(NextInterval(rng, mean))
	if next.Before(earliest) {
		// The agent was off past the due time: draw afresh from now.
		next = now.Add(NextInterval(rng, mean))
	}
	return next
}
