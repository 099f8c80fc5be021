// Package faults is the fault-injection suite: it builds the real kaiser
// binary, runs `kaiser serve` as a process of its own and does to it what a
// failing machine or a hostile client would (SIGKILL under QoS 1 ingest, a
// full disk, oversized and retained floods, impostors, the SIGKILL of the
// primary of two replicas), then checks the promise each fault must not
// break. The suite has only tests; README lists each test with its promise.
package faults
