package process

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestStop: a process that exits on the signal is waited for; one that
// ignores it is killed once the grace has passed. Neither is left running.
func TestStop(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		want   syscall.Signal
	}{
		{"exits on the signal", "exec sleep 30", syscall.SIGTERM},
		{"ignores the signal", "trap '' TERM; echo ready; while :; do sleep 0.05; done", syscall.SIGKILL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", tc.script)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if tc.want == syscall.SIGKILL {
				// The trap must be set before the signal comes.
				if _, err := out.Read(make([]byte, 6)); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			err = Stop(cmd, syscall.SIGTERM, 300*time.Millisecond)
			took := time.Since(start)
			ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if err == nil || !ok || !ws.Signaled() || ws.Signal() != tc.want {
				t.Fatalf("Stop: %v, state %v; want ended by %v", err, cmd.ProcessState, tc.want)
			}
			if tc.want == syscall.SIGKILL && took < 300*time.Millisecond {
				t.Fatalf("killed after %v, before the grace", took)
			}
		})
	}
}
