package sensor

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/sensor/processor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// What one replica learns of the others (docs/decisions/0029-replicas.md):
// the sensor configs and series they changed, from the store after a
// change notice, and the readings they ingested, from the relayed events.

// deviceLoader is a store that reads one device's configs and series (the
// PostgreSQL store does); with another store RefreshDevice reads them all.
type deviceLoader interface {
	LoadSensorConfigsOf(ctx context.Context, espID string) ([]store.Doc, error)
	LoadSeriesOf(ctx context.Context, espID string) (map[store.SeriesKey]int64, error)
}

// RefreshDevice reloads one device's sensor configs from the store after
// another replica committed a change to them: added, changed and removed
// configs take effect for the readings converted from then on. It also
// learns of the device's series another replica opened. The state of the
// series known already (dedup, latest reading, stale mark) stays. It
// publishes no events and saves nothing.
func (s *Service) RefreshDevice(ctx context.Context, espID string) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	docs, series, err := s.loadDevice(ctx, espID)
	if err != nil {
		return fmt.Errorf("refresh sensors of %s: %w", espID, err)
	}
	cfgs, err := decodeConfigs(docs)
	if err != nil {
		return fmt.Errorf("refresh sensors of %s: %w", espID, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	// The device's configs go first, and those loaded, which may have
	// belonged to another device until now; then the loaded ones come in.
	for id, c := range s.configs {
		if c.EspID == espID {
			s.forget(id)
		}
	}
	for _, c := range cfgs {
		s.forget(c.ID)
	}
	for _, c := range cfgs {
		s.configs[c.ID] = c
		s.byKey[keyOf(c)] = c
	}
	s.learnSeries(series)
	return nil
}

// RefreshAll reloads every sensor config and learns of every series, for
// when change notices may have been missed (the change listener
// reconnected). Series state stays, as in RefreshDevice.
func (s *Service) RefreshAll(ctx context.Context) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	docs, err := s.store.LoadSensorConfigs(ctx)
	if err != nil {
		return fmt.Errorf("refresh sensor configs: %w", err)
	}
	cfgs, err := decodeConfigs(docs)
	if err != nil {
		return fmt.Errorf("refresh sensor configs: %w", err)
	}
	series, err := s.store.LoadSeries(ctx)
	if err != nil {
		return fmt.Errorf("refresh series: %w", err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.configs = make(map[string]*Config, len(cfgs))
	s.byKey = make(map[store.SeriesKey]*Config, len(cfgs))
	for _, c := range cfgs {
		s.configs[c.ID] = c
		s.byKey[keyOf(c)] = c
	}
	s.learnSeries(series)
	return nil
}

// loadDevice reads one device's config documents and series.
func (s *Service) loadDevice(ctx context.Context, espID string) ([]store.Doc, map[store.SeriesKey]int64, error) {
	if l, ok := s.store.(deviceLoader); ok {
		docs, err := l.LoadSensorConfigsOf(ctx, espID)
		if err != nil {
			return nil, nil, err
		}
		series, err := l.LoadSeriesOf(ctx, espID)
		return docs, series, err
	}
	all, err := s.store.LoadSensorConfigs(ctx)
	if err != nil {
		return nil, nil, err
	}
	var docs []store.Doc
	for _, d := range all {
		if d.EspID == espID {
			docs = append(docs, d)
		}
	}
	series, err := s.store.LoadSeries(ctx)
	if err != nil {
		return nil, nil, err
	}
	for k := range series {
		if k.EspID != espID {
			delete(series, k)
		}
	}
	return docs, series, nil
}

func decodeConfigs(docs []store.Doc) ([]*Config, error) {
	out := make([]*Config, 0, len(docs))
	for _, d := range docs {
		var c Config
		if err := json.Unmarshal(d.JSON, &c); err != nil {
			return nil, fmt.Errorf("sensor config %s: %w", d.ID, err)
		}
		out = append(out, &c)
	}
	return out, nil
}

// learnSeries opens the state of the series not open yet; s.mu is held.
// Their latest readings are not loaded: those that matter come in through
// ApplyRemote or this replica's own ingest.
func (s *Service) learnSeries(series map[store.SeriesKey]int64) {
	for k, id := range series {
		if s.series[k] == nil {
			s.addSeries(k, id)
		}
	}
}

// ApplyRemote makes a reading another replica ingested and stored the
// latest of its series here, if it is newer than the latest known, so that
// Latest, LatestOf and the stale check see it, and evaluates its
// thresholds, which only the primary does (Options.NoThresholds). It
// stores nothing and raises no sensor_data event: the replica that
// ingested it did both.
//
// The series is the one of the event's device, pin, type and bus address;
// when there is none here yet (the other replica opened it a moment ago,
// and its change notice has not been applied), the reading is skipped.
// Its time has whole seconds only: it is newer only if
// its second is later than the latest reading's, so that a reading here
// in the same second is kept. A stale mark stays until CheckStale sees
// the renewed reading and announces the recovery, which is this replica's
// to do, since it raised the stale alert.
func (s *Service) ApplyRemote(d event.SensorData) {
	k, cfg, r, ok := s.applyRemote(d)
	if !ok || cfg == nil || !usable(r) {
		return
	}
	// The standbys leave thresholds to the primary (Options.NoThresholds),
	// so one replica holds every alert's state.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.evaluate(ctx, k, cfg, *r.Processed, r.Unit)
}

// applyRemote makes d the latest of its series if it is newer and returns
// the series, a copy of its config (nil without one) and the reading.
func (s *Service) applyRemote(d event.SensorData) (store.SeriesKey, *Config, store.Reading, bool) {
	key, _ := processor.NormaliseType(d.SensorType)
	now := s.now().UnixMilli()

	k := store.SeriesKey{
		EspID:      d.EspID,
		GPIO:       d.GPIO,
		SensorType: key,
		Address:    busAddress(d.I2CAddress, d.OneWireAddress),
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.series[k]
	if st == nil {
		return store.SeriesKey{}, nil, store.Reading{}, false
	}
	// The latest here gives way when it lies beyond the future bound, as
	// in dedup, so that it never pins the series ahead of the clock.
	if l := s.latest[st.id]; l != nil && d.Timestamp <= l.r.TS/1000 &&
		l.r.TS-now <= contract.MaxFuture.Milliseconds() {
		return store.SeriesKey{}, nil, store.Reading{}, false
	}

	var processed *float64
	if d.ProcessedValue != nil {
		v := *d.ProcessedValue
		processed = &v
	}
	// Received now: when this replica learned of it, which the stale check
	// measures. The device value, time source and data source are not
	// relayed; nothing that reads the latest values uses them.
	r := store.Reading{
		SeriesID:   st.id,
		TS:         d.Timestamp * 1000,
		Raw:        d.RawValue,
		Processed:  processed,
		Unit:       d.Unit,
		Quality:    d.Quality,
		Mode:       d.ProcessingMode,
		ReceivedAt: now,
		ZoneID:     d.ZoneID,
		SubzoneID:  d.SubzoneID,
	}
	s.latest[st.id] = &latest{key: k, r: r}
	var cfg *Config
	if c := s.configFor(k); c != nil {
		cp := *c
		cfg = &cp
	}
	return k, cfg, r, true
}
