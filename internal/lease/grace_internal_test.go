package lease

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

// A term that was not renewed in time keeps half the margin as its grace,
// whether its timer ended it or a caller found it over first.
func TestGraceIsHalfTheMargin(t *testing.T) {
	cfg := Config{
		Holder:     "holder",
		Names:      []string{Jobs},
		TTL:        2 * time.Second,
		RenewEvery: 250 * time.Millisecond,
		RetryEvery: 100 * time.Millisecond,
		Margin:     500 * time.Millisecond,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	ends := map[string]func(m *Manager, st *state, term *Term){
		"by its timer": func(m *Manager, st *state, term *Term) { m.expire(st, term) },
		"by a look":    func(m *Manager, _ *state, _ *Term) { m.Held(Jobs) },
	}
	for name, end := range ends {
		t.Run(name, func(t *testing.T) {
			m, err := New(nil, cfg)
			if err != nil {
				t.Fatal(err)
			}
			st := m.leases[Jobs]
			m.gain(st, 1, time.Now())
			term, _ := m.Held(Jobs)

			// The deadline passes without a renewal.
			m.mu.Lock()
			deadline := time.Now().Add(-time.Millisecond)
			st.deadline = deadline
			m.mu.Unlock()
			end(m, st, term)

			until, ok := term.Grace()
			if !ok {
				t.Fatal("no grace")
			}
			if want := deadline.Add(cfg.Margin / 2); !until.Equal(want) {
				t.Fatalf("grace until %v, want the deadline + half the margin, %v", until, want)
			}
		})
	}
}
