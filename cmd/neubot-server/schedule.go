package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/robfig/cron/v3"
)

// scheduler runs a job on a cron schedule, and once at start to catch up on
// what changed while the server was down; one run at a time (a tick that
// finds the previous run still going is skipped).
type scheduler struct {
	c    *cron.Cron
	job  func(ctx context.Context)
	mu   sync.Mutex // held by the running job
	ctx  context.Context
	stop context.CancelFunc
}

// startScheduler starts job on spec; flagName names the flag of spec in the
// error of a bad spec.
func startScheduler(flagName, spec string, job func(ctx context.Context)) (*scheduler, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &scheduler{c: cron.New(), job: job, ctx: ctx, stop: cancel}
	if _, err := s.c.AddFunc(spec, s.run); err != nil {
		cancel()
		return nil, fmt.Errorf("--%s %q: %w", flagName, spec, err)
	}
	s.c.Start()
	go s.run()
	return s, nil
}

// run runs the job now, unless it is running or the scheduler is closing.
func (s *scheduler) run() {
	if s.ctx.Err() != nil || !s.mu.TryLock() {
		return
	}
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return // close() has begun: it waits for the lock, not for this run
	}
	s.job(s.ctx)
}

// close stops the ticks, cancels a running job and waits for it to end.
func (s *scheduler) close() {
	<-s.c.Stop().Done()
	s.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
}
