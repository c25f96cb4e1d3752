package linkbench

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill cmd when the thread that started it
// ends: the bench never ends its threads, so when the bench dies.
// `ip netns exec` and chrt exec the tool, which keeps the setting.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
