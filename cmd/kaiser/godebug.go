package main

import (
	"os"
	"strings"
	"syscall"
)

// keepStacksSetting stops the garbage collector from shrinking goroutine
// stacks. The embedded broker runs two goroutines per device connection;
// each message grows a reader's stack again after every collection shrank
// it, which at 1,000 devices cost some 20 MB of resident memory and a tenth
// of the hub's CPU in stack copies (docs/decisions/0028-footprint-per-message.md).
// The runtime reads this setting only at start and //go:debug does not
// accept it, so `kaiser serve` starts itself once more with it set.
const keepStacksSetting = "gcshrinkstackoff=1"

func init() {
	if len(os.Args) < 2 || os.Args[1] != "serve" {
		return
	}
	env, ok := withKeptStacks(os.Environ())
	if !ok {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return // run as is: the setting saves memory, nothing depends on it
	}
	_ = syscall.Exec(exe, os.Args, env) // returns only on failure: run as is
}

// withKeptStacks returns env with keepStacksSetting added to GODEBUG, and
// false when there is nothing to do: GODEBUG already decides about stack
// shrinking (an operator's choice, or this process after its restart).
func withKeptStacks(env []string) ([]string, bool) {
	for i, kv := range env {
		v, found := strings.CutPrefix(kv, "GODEBUG=")
		if !found {
			continue
		}
		if strings.Contains(v, "gcshrinkstackoff=") {
			return nil, false
		}
		out := append([]string(nil), env...)
		if v == "" {
			out[i] = "GODEBUG=" + keepStacksSetting
		} else {
			out[i] = "GODEBUG=" + v + "," + keepStacksSetting
		}
		return out, true
	}
	return append(append([]string(nil), env...), "GODEBUG="+keepStacksSetting), true
}
