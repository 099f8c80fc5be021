package backtest

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/kaiserhub/kaiser/internal/rule"
	"github.com/kaiserhub/kaiser/internal/sensor/processor"
	"github.com/kaiserhub/kaiser/internal/store"
)

const minute = int64(60_000)

func normalised(sensorType string) string {
	k, _ := processor.NormaliseType(sensorType)
	return k
}

// matches reports a series a leaf reads (docs/domain.md §6.6: same device
// and pin, type absent or equal).
func matches(ref rule.SensorRef, k store.SeriesKey) bool {
	return ref.EspID == k.EspID && ref.GPIO == k.GPIO && (ref.SensorType == "" || ref.SensorType == k.SensorType)
}

// phase is one span of a series read from one table.
type phase struct {
	minutes  bool // rollup_1m, else raw readings
	from, to int64
}

// stream yields one series' values in time order, a page at a time: at
// most pageSize values of a series are held, whatever the range.
type stream struct {
	series int64
	key    store.SeriesKey
	src    *SensorSource
	phases []phase
	start  int64 // values outside [start, end) are dropped
	end    int64
	buf    []store.Sample
	pos    int
	full   bool // the last page was full: the phase may have more
}

// open plans a stream for every series the rule's leaves read, with the
// table each part of the range comes from.
func (s *Service) open(ctx context.Context, r *rule.Rule, start, end time.Time) ([]*stream, []*SensorSource, error) {
	all, err := s.d.History.LoadSeries(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("load series: %w", err)
	}
	from, to := start.UnixMilli(), end.UnixMilli()
	var streams []*stream
	var sources []*SensorSource
	seen := map[int64]bool{}
	for _, ref := range r.Sensors() {
		found := false
		for _, k := range sortedKeys(all) {
			id := all[k]
			if !matches(ref, k) {
				continue
			}
			found = true
			if seen[id] {
				continue
			}
			seen[id] = true
			if len(streams) == MaxSeries {
				return nil, nil, &LimitError{Msg: fmt.Sprintf(
					"the rule's leaves read more than %d sensor series; name the sensor_type of each leaf", MaxSeries)}
			}
			st, err := s.plan(ctx, id, k, from, to)
			if err != nil {
				return nil, nil, err
			}
			streams = append(streams, st)
			sources = append(sources, st.src)
		}
		if !found {
			sources = append(sources, &SensorSource{
				EspID:      ref.EspID,
				GPIO:       ref.GPIO,
				SensorType: ref.SensorType,
				Source:     SourceNone,
			})
		}
	}
	// Values of the same instant replay by series id.
	sort.Slice(streams, func(i, j int) bool { return streams[i].series < streams[j].series })
	return streams, sources, nil
}

// sortedKeys orders series by id, so a replay is the same every time.
func sortedKeys(m map[store.SeriesKey]int64) []store.SeriesKey {
	out := make([]store.SeriesKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return m[out[i]] < m[out[j]] })
	return out
}

// plan picks the sources of one series: raw readings from the oldest one
// left in the range, the minute rollups before it (retention deletes raw
// readings oldest first and keeps the rollups longer).
func (s *Service) plan(ctx context.Context, id int64, k store.SeriesKey, from, to int64) (*stream, error) {
	st := &stream{
		series: id,
		key:    k,
		start:  from,
		end:    to,
		src: &SensorSource{
			EspID:      k.EspID,
			GPIO:       k.GPIO,
			SensorType: k.SensorType,
			Address:    k.Address,
			Source:     SourceNone,
		},
	}
	first, err := s.d.History.RawSamples(ctx, id, from, to, 1)
	if err != nil {
		return nil, err
	}
	minutesTo := to
	if len(first) == 1 {
		minutesTo = first[0].TS - first[0].TS%minute
	}
	if minutesTo > from-from%minute {
		m, err := s.d.History.MinuteSamples(ctx, id, from-from%minute, minutesTo, 1)
		if err != nil {
			return nil, err
		}
		if len(m) == 1 {
			st.phases = append(st.phases, phase{minutes: true, from: from - from%minute, to: minutesTo})
			st.src.Source = SourceRollup
		}
	}
	if len(first) == 1 {
		st.phases = append(st.phases, phase{from: first[0].TS, to: to})
		at := time.UnixMilli(first[0].TS).UTC()
		st.src.RawFrom = &at
		if st.src.Source == SourceRollup {
			st.src.Source = SourceRollupRaw
		} else {
			st.src.Source = SourceRaw
		}
	}
	return st, nil
}

// peek returns the stream's next value, reading a page when needed; nil
// at its end.
func (st *stream) peek(ctx context.Context, h History) (*store.Sample, error) {
	for {
		for st.pos < len(st.buf) {
			x := &st.buf[st.pos]
			if x.TS >= st.start && x.TS < st.end {
				return x, nil
			}
			st.pos++ // a minute average timed outside the range
		}
		if len(st.phases) == 0 {
			return nil, nil
		}
		if err := st.fill(ctx, h); err != nil {
			return nil, err
		}
	}
}

// fill reads the next page of the current phase, or moves to the next phase.
func (st *stream) fill(ctx context.Context, h History) error {
	ph := &st.phases[0]
	if len(st.buf) > 0 && !st.full {
		st.phases, st.buf, st.pos = st.phases[1:], nil, 0
		return nil
	}
	if len(st.buf) > 0 {
		last := st.buf[len(st.buf)-1]
		if ph.minutes {
			ph.from = last.Bucket + minute
		} else {
			ph.from = last.TS + 1
		}
	}
	var page []store.Sample
	var err error
	if ph.minutes {
		page, err = h.MinuteSamples(ctx, st.series, ph.from, ph.to, pageSize)
	} else {
		page, err = h.RawSamples(ctx, st.series, ph.from, ph.to, pageSize)
	}
	if err != nil {
		return fmt.Errorf("read history of series %d: %w", st.series, err)
	}
	if len(page) == 0 {
		st.phases, st.buf, st.pos = st.phases[1:], nil, 0
		return nil
	}
	st.buf, st.pos, st.full = page, 0, len(page) == pageSize
	return nil
}
