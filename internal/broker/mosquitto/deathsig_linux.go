package mosquitto

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the broker end with the test process, also when a
// test panics and no cleanup runs.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
