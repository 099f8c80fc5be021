package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// A running sequence is found again after a reopen; the sweep removes only
// the sequences that ended before its bound.
func TestSequencesRoundTripAndSweep(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir)
	now := time.Now().UTC().Truncate(time.Millisecond)
	old, recent := now.Add(-2*time.Hour), now.Add(-10*time.Minute)
	for _, q := range []store.Sequence{
		{ID: "run", RuleID: "r1", Status: "pending", StartedAt: now, Doc: []byte(`{"step":0}`)},
		{ID: "old", RuleID: "r1", Status: "completed", StartedAt: old.Add(-time.Minute), FinishedAt: &old, Doc: []byte(`{}`)},
		{ID: "new", RuleID: "r2", Status: "failed", StartedAt: recent.Add(-time.Minute), FinishedAt: &recent, Doc: []byte(`{}`)},
	} {
		if err := s.SaveSequence(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	// An upsert replaces the progress.
	if err := s.SaveSequence(ctx, store.Sequence{ID: "run", RuleID: "r1", Status: "running", StartedAt: now,
		Doc: []byte(`{"step":2}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	defer s.Close(ctx)
	got, err := s.LoadSequences(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ID != "old" || got[2].ID != "run" || got[2].Status != "running" ||
		got[2].FinishedAt != nil || string(got[2].Doc) != `{"step":2}` || !got[1].FinishedAt.Equal(recent) {
		t.Fatalf("loaded %+v", got)
	}
	n, err := s.DeleteSequencesFinishedBefore(ctx, now.Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("swept %d, %v", n, err)
	}
	got, _ = s.LoadSequences(ctx)
	if len(got) != 2 || got[0].ID != "new" || got[1].ID != "run" {
		t.Fatalf("after the sweep %+v", got)
	}
}
