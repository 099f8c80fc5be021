package sensor

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Bands are effective thresholds; nil = not set (0 is a valid bound).
type Bands struct {
	CriticalMin, CriticalMax, WarningMin, WarningMax *float64
}

func fnum(m map[string]any, keys ...string) *float64 {
	for _, k := range keys {
		if v, ok := num(m, k); ok {
			return &v
		}
	}
	return nil
}

// EffectiveBands applies DOMAIN §3.1's priority: alert_config.custom_thresholds
// when any value is set, else the config's thresholds.
func EffectiveBands(c *Config) Bands {
	if ct, ok := c.AlertConfig["custom_thresholds"].(map[string]any); ok {
		b := Bands{fnum(ct, "critical_min", "critical_low"), fnum(ct, "critical_max", "critical_high"),
			fnum(ct, "warning_min", "warning_low"), fnum(ct, "warning_max", "warning_high")}
		if b.CriticalMin != nil || b.CriticalMax != nil || b.WarningMin != nil || b.WarningMax != nil {
			return b
		}
	}
	return Bands{c.ThresholdMin, c.ThresholdMax, c.WarningMin, c.WarningMax}
}

// Severity classifies v (bounds exclusive: equal is inside).
func (b Bands) Severity(v float64) string {
	switch {
	case b.CriticalMin != nil && v < *b.CriticalMin, b.CriticalMax != nil && v > *b.CriticalMax:
		return "critical"
	case b.WarningMin != nil && v < *b.WarningMin, b.WarningMax != nil && v > *b.WarningMax:
		return "warning"
	}
	return ""
}

func alertKey(prefix string, k store.SeriesKey) string {
	key := fmt.Sprintf("%s_%s_%d_%s", prefix, k.EspID, k.GPIO, k.SensorType)
	if k.Address != "" {
		key += "_" + k.Address
	}
	return key
}

// suppressed implements DOMAIN §3.5 on the sensor's (or device's) alert_config.
func suppressed(ac map[string]any, now time.Time) bool {
	if ac == nil {
		return false
	}
	if en, ok := ac["alerts_enabled"].(bool); !ok || en {
		return false
	}
	if until, ok := ac["suppression_until"].(string); ok && until != "" {
		if t, err := time.Parse(time.RFC3339, until); err == nil && !t.After(now) {
			return false
		}
	}
	return true
}

// evaluate checks a usable reading against the bands (DOMAIN §3.2–3.3).
func (s *Service) evaluate(ctx context.Context, k store.SeriesKey, c *Config, v float64, unit string, dev device.Device) {
	if s.alerts == nil {
		return
	}
	bands := EffectiveBands(c)
	sev := bands.Severity(v)
	key := alertKey("threshold", k)
	if sev == "" {
		if err := s.alerts.Clear(ctx, key); err != nil {
			s.log.Error("resolving threshold alert failed", "key", key, "error", err)
		}
		return
	}
	if o, ok := c.AlertConfig["severity_override"].(string); ok && o != "" {
		sev = o
	}
	now := s.now()
	devAC, _ := dev.Metadata["alert_config"].(map[string]any)
	sup := suppressed(c.AlertConfig, now)
	if prop, ok := devAC["propagate_to_children"].(bool); !ok || prop {
		sup = sup || suppressed(devAC, now)
	}
	name := c.Name
	if name == "" {
		name = fmt.Sprintf("%s GPIO %d", k.SensorType, k.GPIO)
	}
	err := s.alerts.Raise(ctx, notify.Spec{Key: key, Severity: sev, Category: "data_quality", Source: "sensor_threshold",
		Title: fmt.Sprintf("%s %s threshold exceeded", strings.ToUpper(sev[:1])+sev[1:], name),
		Body:  fmt.Sprintf("%s on %s reads %g %s, outside its %s band", name, k.EspID, v, unit, sev),
		Metadata: map[string]any{"esp_id": k.EspID, "gpio": k.GPIO, "sensor_type": k.SensorType, "value": v,
			"thresholds": map[string]any{"critical_min": bands.CriticalMin, "critical_max": bands.CriticalMax,
				"warning_min": bands.WarningMin, "warning_max": bands.WarningMax}},
		Suppressed: sup})
	if err != nil {
		s.log.Error("raising threshold alert failed", "key", key, "error", err)
	}
}

// CheckStale marks continuous sensors without a recent reading as stale
// (DOMAIN §3.6); it is a scheduled job.
func (s *Service) CheckStale(ctx context.Context) error {
	now := s.now()
	type hit struct {
		k      store.SeriesKey
		c      Config
		last   *time.Time
		reason string
	}
	var hits []hit
	online := map[string]bool{}
	for _, c := range s.All() {
		if _, seen := online[c.EspID]; !seen {
			d, err := s.devices.Get(c.EspID)
			online[c.EspID] = err == nil && d.Status == device.StatusOnline
		}
	}
	s.mu.Lock()
	for _, c := range s.configs {
		if !c.Enabled || c.OperatingMode != "continuous" || c.TimeoutSeconds <= 0 || !online[c.EspID] {
			continue
		}
		k := keyOf(c)
		st := s.series[k]
		timeout := time.Duration(c.TimeoutSeconds) * time.Second
		var last *time.Time
		reason := "no_data"
		if st != nil {
			if l := s.latest[st.id]; l != nil {
				t := time.UnixMilli(l.r.ReceivedAt)
				last, reason = &t, "timeout_exceeded"
			}
		}
		if last != nil && now.Sub(*last) <= timeout || last == nil && now.Sub(c.CreatedAt) <= timeout {
			continue
		}
		if st == nil {
			st = &seriesState{id: -1}
		}
		if st.stale {
			continue
		}
		st.stale = true
		if st.id >= 0 {
			s.series[k] = st
		}
		hits = append(hits, hit{k, *c, last, reason})
	}
	s.mu.Unlock()
	for _, h := range hits {
		var lastAt *string
		if h.last != nil {
			at := h.last.UTC().Format(time.RFC3339)
			lastAt = &at
		}
		s.events.Publish(event.Event{Time: now, Data: event.SensorHealth{
			EspID:          h.k.EspID,
			GPIO:           h.k.GPIO,
			SensorType:     h.k.SensorType,
			Status:         "stale",
			Reason:         &h.reason,
			LastReadingAt:  lastAt,
			TimeoutSeconds: h.c.TimeoutSeconds,
			Timestamp:      now.Unix(),
		}})
		if s.alerts != nil {
			if err := s.alerts.Raise(ctx, notify.Spec{Key: alertKey("stale", h.k), Severity: "warning", Category: "data_quality",
				Source: "sensor_threshold", Title: "Sensor stale", Body: fmt.Sprintf("no reading from %s GPIO %d (%s) for more than %d s",
					h.k.EspID, h.k.GPIO, h.k.SensorType, h.c.TimeoutSeconds),
				Metadata: map[string]any{"esp_id": h.k.EspID, "gpio": h.k.GPIO, "sensor_type": h.k.SensorType, "reason": h.reason}}); err != nil {
				s.log.Error("raising stale alert failed", "error", err)
			}
		}
	}
	return nil
}

// recovered clears the stale mark when a reading arrives.
func (s *Service) recovered(ctx context.Context, k store.SeriesKey, c *Config, now time.Time) {
	lastAt := now.UTC().Format(time.RFC3339)
	s.events.Publish(event.Event{Time: now, Data: event.SensorHealth{
		EspID:          k.EspID,
		GPIO:           k.GPIO,
		SensorType:     k.SensorType,
		Status:         "ok",
		LastReadingAt:  &lastAt,
		TimeoutSeconds: c.TimeoutSeconds,
		Timestamp:      now.Unix(),
	}})
	if s.alerts != nil {
		if err := s.alerts.Clear(ctx, alertKey("stale", k)); err != nil {
			s.log.Error("resolving stale alert failed", "error", err)
		}
	}
}
