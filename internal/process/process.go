// Package process stops the child processes that tests and benchmarks
// start (a server under test, a whole stack): politely first, then for
// sure, never leaving one behind.
package process

import (
	"os"
	"os/exec"
	"time"
)

// Stop sends sig to cmd's process and waits for it to exit; if it has not
// within grace, it kills the process and waits for that. It returns what
// cmd.Wait returned. cmd must have been started, and not waited for.
func Stop(cmd *exec.Cmd, sig os.Signal, grace time.Duration) error {
	_ = cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		return <-done
	}
}
