package sqlite

import (
	"context"
	"log/slog"
	"testing"
)

// BenchmarkRollupFlush is one second's rollup flush of 5,000 new minute
// buckets (plus their hour and day buckets) on a store that holds them from
// the previous flush, as the reading sink commits it.
func BenchmarkRollupFlush(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, b.TempDir(), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(ctx)
	const series = 5000
	for i := 0; b.Loop(); i++ {
		rolls := map[rollKey]*agg{}
		for sid := int64(1); sid <= series; sid++ {
			ts := int64(i) * 60_000
			for ti, rt := range rollupTables {
				rolls[rollKey{ti, sid, ts - ts%rt.width}] = &agg{n: 1, sumRaw: 7, minRaw: 7, maxRaw: 7, lastTS: ts}
			}
		}
		entries := rollupChunks(rolls, len(rolls))[0]
		err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error { return upsertRollups(tx, entries) })
		if err != nil {
			b.Fatal(err)
		}
	}
}
