package store

// RollupWidths are the rollup granularities of docs/domain.md §9 (1 minute,
// 1 hour, 1 day) in milliseconds; RollupLevels names them.
var (
	RollupWidths = [3]int64{60_000, 3_600_000, 86_400_000}
	RollupLevels = [3]string{"1m", "1h", "1d"}
)

// RollupKey is one bucket of one series at one level (an index of RollupWidths).
type RollupKey struct {
	Level  int
	Series int64
	Bucket int64 // start, unix ms
}

// RollupAgg is what a bucket accumulates from usable readings: counts,
// sums and extremes of raw and processed values, and the processed value
// of the latest reading that had one (LastTS is its time; 0 for none).
type RollupAgg struct {
	N, NP          int64
	SumRaw, SumP   float64
	MinRaw, MaxRaw float64
	MinP, MaxP     float64
	LastP          float64
	LastTS         int64
}

// Add accumulates one reading.
func (a *RollupAgg) Add(r Reading) {
	if a.N == 0 || r.Raw < a.MinRaw {
		a.MinRaw = r.Raw
	}
	if a.N == 0 || r.Raw > a.MaxRaw {
		a.MaxRaw = r.Raw
	}
	a.N++
	a.SumRaw += r.Raw
	if r.Processed == nil {
		return
	}
	p := *r.Processed
	if a.NP == 0 || p < a.MinP {
		a.MinP = p
	}
	if a.NP == 0 || p > a.MaxP {
		a.MaxP = p
	}
	a.NP++
	a.SumP += p
	if r.TS >= a.LastTS {
		a.LastP, a.LastTS = p, r.TS
	}
}

// Rollups accumulates readings into the buckets of every level, in memory,
// until a store merges them into its rollup tables (additively, so that
// several accumulators, one per hub replica, may merge into one table).
type Rollups map[RollupKey]*RollupAgg

// Add accumulates r into its bucket of each level; unusable readings
// (Reading.Usable) are left out.
func (m Rollups) Add(r Reading) {
	if !r.Usable() {
		return
	}
	for lvl, w := range RollupWidths {
		k := RollupKey{lvl, r.SeriesID, r.TS - r.TS%w}
		a := m[k]
		if a == nil {
			a = &RollupAgg{}
			m[k] = a
		}
		a.Add(r)
	}
}
