package store

import (
	"context"
	"sync"
)

// Commits collects the outcomes of the writes one piece of work queued, so
// that whoever waits on that work learns when they are durable without
// making the work itself wait. The PUBACK of a QoS 1 message waits for
// this (docs/protocol.md M3): the handler queues its writes and returns at
// once, so live events and rule triggers never wait for a commit.
//
// It rides on the context, like a trace: every write a handler makes
// through a context carrying it is tracked by the store, without each
// domain service having to hand back what it queued.
type Commits struct {
	mu      sync.Mutex
	pending int
	sealed  bool
	err     error
	done    chan struct{}
}

// NewCommits returns an empty collection.
func NewCommits() *Commits { return &Commits{done: make(chan struct{})} }

type commitsKey struct{}

// WithCommits returns ctx carrying c: writes queued with it are tracked.
func WithCommits(ctx context.Context, c *Commits) context.Context {
	return context.WithValue(ctx, commitsKey{}, c)
}

// CommitsFrom returns the collection ctx carries, or nil.
func CommitsFrom(ctx context.Context) *Commits {
	c, _ := ctx.Value(commitsKey{}).(*Commits)
	return c
}

// Track registers one queued write and returns the function its writer
// calls exactly once with the commit's outcome. After Seal it returns nil:
// a write queued once the work has ended is not the work's to wait for.
func (c *Commits) Track() func(error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sealed {
		return nil
	}
	c.pending++
	var once sync.Once
	return func(err error) { once.Do(func() { c.report(err) }) }
}

func (c *Commits) report(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil && c.err == nil {
		c.err = err
	}
	c.pending--
	c.closeIfDone()
}

// Seal ends the tracking: the work has queued everything it will.
func (c *Commits) Seal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.sealed {
		c.sealed = true
		c.closeIfDone()
	}
}

func (c *Commits) closeIfDone() {
	if c.sealed && c.pending == 0 {
		close(c.done)
	}
}

// Done is closed once the collection is sealed and every tracked write
// has reported.
func (c *Commits) Done() <-chan struct{} { return c.done }

// Err is the first failure reported; nil while none has been (or before Done).
func (c *Commits) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Wait returns once the collection is sealed and every tracked write has
// reported, with the first failure; or ctx's error when it ends first.
func (c *Commits) Wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}
