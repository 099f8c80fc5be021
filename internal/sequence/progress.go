package sequence

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// List returns the kept sequences, newest first, at most limit of them
// (running only when asked), with the totals of docs/api.md §11: every kept
// sequence, the running ones, the completed ones and the failed ones
// (failed or timed out).
func (s *Service) List(runningOnly bool, limit int) (views []View, total, running, completed, failed int) {
	for _, rn := range s.all() {
		v := rn.view()
		switch v.Status {
		case StatusPending, StatusRunning:
			running++
		case StatusCompleted:
			completed++
		case StatusFailed, StatusTimeout:
			failed++
		}
		if runningOnly && !v.Active() {
			continue
		}
		total++
		views = append(views, v)
	}
	sort.Slice(views, func(i, j int) bool {
		if !views[i].StartedAt.Equal(views[j].StartedAt) {
			return views[i].StartedAt.After(views[j].StartedAt)
		}
		return views[i].SequenceID < views[j].SequenceID
	})
	if limit > 0 && len(views) > limit {
		views = views[:limit]
	}
	return views, total, running, completed, failed
}

// Get returns one sequence's progress.
func (s *Service) Get(id string) (View, error) {
	s.mu.Lock()
	rn := s.runs[id]
	s.mu.Unlock()
	if rn == nil {
		return View{}, ErrNotFound
	}
	return rn.view(), nil
}

// Stats are the figures of GET /sequences/stats.
type Stats struct {
	Total             int
	Running           int
	CompletedLastHour int
	FailedLastHour    int // failed or timed out
	// AverageDurationSeconds is over the sequences that ended in the last
	// hour, 0 without any.
	AverageDurationSeconds float64
}

// Stats counts the kept sequences.
func (s *Service) Stats() Stats {
	var st Stats
	hour := time.Now().Add(-time.Hour)
	var sum float64
	ended := 0
	for _, rn := range s.all() {
		p := rn.progress()
		st.Total++
		if p.Active() {
			st.Running++
			continue
		}
		if p.CompletedAt == nil || p.CompletedAt.Before(hour) {
			continue
		}
		switch p.Status {
		case StatusCompleted:
			st.CompletedLastHour++
		case StatusFailed, StatusTimeout:
			st.FailedLastHour++
		}
		sum += p.CompletedAt.Sub(p.StartedAt).Seconds()
		ended++
	}
	if ended > 0 {
		st.AverageDurationSeconds = sum / float64(ended)
	}
	return st
}

// Sweep drops the progress of sequences that ended more than Retention ago
// (the sequence_sweep job, docs/domain.md §9).
func (s *Service) Sweep(ctx context.Context) error {
	bound := time.Now().Add(-Retention)
	s.mu.Lock()
	for id, rn := range s.runs {
		if p := rn.progress(); !p.Active() && p.CompletedAt != nil && p.CompletedAt.Before(bound) {
			delete(s.runs, id)
		}
	}
	s.mu.Unlock()
	n, err := s.d.Store.DeleteSequencesFinishedBefore(ctx, bound)
	if err != nil {
		return fmt.Errorf("sweep sequences: %w", err)
	}
	if n > 0 {
		s.log.Info("finished sequences swept", "count", n)
	}
	return nil
}

func (s *Service) all() []*run {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*run, 0, len(s.runs))
	for _, rn := range s.runs {
		out = append(out, rn)
	}
	return out
}
