package storetest_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
	"github.com/kaiserhub/kaiser/internal/store/storetest"
)

// BenchmarkDurableReadings stores readings of 1,000 series through each
// store's reading sink, 100,000 per operation, and counts them once the
// sink has committed them (and their rollups): SQLite in WAL mode with
// synchronous=NORMAL as the hub runs it, PostgreSQL with fsync and
// synchronous_commit on. Both run in one benchmark so that one machine
// state is measured (docs/BENCHMARKS.md).
func BenchmarkDurableReadings(b *testing.B) {
	log := slog.New(slog.DiscardHandler)
	b.Run("sqlite", func(b *testing.B) {
		ctx := context.Background()
		s, err := sqlite.Open(ctx, b.TempDir(), sqlite.Options{Logger: log})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close(ctx)
		benchSink(b, s, func() storetest.Sink { return s.NewReadingSink(0, nil) })
	})
	b.Run("postgres", func(b *testing.B) {
		ctx := context.Background()
		srv := pgtest.Start(b, pgtest.Config{Durable: true, SharedBuffers: "256MB"})
		s, err := postgres.Open(ctx, srv.NewDatabase(b), postgres.Options{Logger: log})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close(ctx)
		benchSink(b, s, func() storetest.Sink { return s.NewReadingSink(0, nil) })
	})
}

type seriesMaker interface {
	EnsureSeries(ctx context.Context, k store.SeriesKey) (int64, error)
}

func benchSink(b *testing.B, s seriesMaker, newSink func() storetest.Sink) {
	ctx := context.Background()
	const nSeries, perOp = 1000, 100_000
	ids := make([]int64, nSeries)
	for i := range ids {
		id, err := s.EnsureSeries(ctx, store.SeriesKey{EspID: "ESP_BENCH", GPIO: i, SensorType: "ph"})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = id
	}
	k := newSink()
	defer k.Close(ctx)
	start := time.Now().Add(-time.Hour).UnixMilli()
	n := 0
	p := 6.5
	for b.Loop() {
		for range perOp {
			ts := start + int64(n/nSeries)*10
			r := store.Reading{SeriesID: ids[n%nSeries], TS: ts, Raw: 2048, Processed: &p, Unit: "pH",
				Quality: "good", Mode: "raw", TimeSource: "device", ReceivedAt: ts + 40, Source: "device",
				ZoneID: "z1"}
			if err := k.Add(ctx, r); err != nil {
				b.Fatal(err)
			}
			n++
		}
		if err := k.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "readings/s")
}
