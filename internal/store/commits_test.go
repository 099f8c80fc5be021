package store

import (
	"context"
	"errors"
	"testing"
)

// Wait ends only once the work is sealed and every tracked write reported;
// the first failure is the result; a write tracked after the seal is not
// waited for.
func TestCommitsWaitForSealAndEveryReport(t *testing.T) {
	c := NewCommits()
	first, second := c.Track(), c.Track()
	first(nil)
	c.Seal()
	if c.Track() != nil {
		t.Fatal("a write tracked after the seal is waited for")
	}
	select {
	case <-c.Done():
		t.Fatal("done with a write still pending")
	default:
	}
	failure := errors.New("disk full")
	second(failure)
	second(nil) // reported twice: counted once
	if err := c.Wait(context.Background()); !errors.Is(err, failure) {
		t.Fatalf("wait: %v", err)
	}

	open := NewCommits()
	open.Track()(nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := open.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait on unsealed work with an ended context: %v", err)
	}
}

func TestCommitsRideOnTheContext(t *testing.T) {
	if CommitsFrom(context.Background()) != nil {
		t.Fatal("a bare context carries commits")
	}
	c := NewCommits()
	if CommitsFrom(WithCommits(context.Background(), c)) != c {
		t.Fatal("commits lost on the context")
	}
}
