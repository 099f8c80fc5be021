package bench

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the hub go with the bench, however the bench ends.
func dieWithParent(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
