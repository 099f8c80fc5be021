//go:build !linux

package bench

import "os/exec"

// dieWithParent is Linux's parent-death signal; elsewhere the bench's own
// cleanup stops the hub.
func dieWithParent(*exec.Cmd) {}
