package sensor

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/sensor/processor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Bands are effective thresholds; nil = not set (0 is a valid bound).
type Bands struct {
	CriticalMin, CriticalMax, WarningMin, WarningMax *float64
}

func fnum(m map[string]any, keys ...string) *float64 {
	for _, k := range keys {
		if v, ok := processor.Number(m, k); ok {
			return &v
		}
	}
	return nil
}

// EffectiveBands applies docs/domain.md §3.1's priority: alert_config.custom_thresholds
// when any value is set, else the config's thresholds.
func EffectiveBands(c *Config) Bands {
	if ct, ok := c.AlertConfig["custom_thresholds"].(map[string]any); ok {
		b := Bands{
			CriticalMin: fnum(ct, "critical_min", "critical_low"),
			CriticalMax: fnum(ct, "critical_max", "critical_high"),
			WarningMin:  fnum(ct, "warning_min", "warning_low"),
			WarningMax:  fnum(ct, "warning_max", "warning_high"),
		}
		if b.CriticalMin != nil || b.CriticalMax != nil || b.WarningMin != nil || b.WarningMax != nil {
			return b
		}
	}
	return Bands{
		CriticalMin: c.ThresholdMin,
		CriticalMax: c.ThresholdMax,
		WarningMin:  c.WarningMin,
		WarningMax:  c.WarningMax,
	}
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

// eventAddress splits a series key's bus address (busAddress) into the
// fields the sensor events carry.
func eventAddress(addr string) (i2c *int, oneWire string) {
	switch {
	case strings.HasPrefix(addr, "i2c:"):
		if n, err := strconv.Atoi(addr[len("i2c:"):]); err == nil {
			return &n, ""
		}
	case strings.HasPrefix(addr, "ow:"):
		return nil, addr[len("ow:"):]
	}
	return nil, ""
}

// atAddress names a bus sensor's address in an alert's text as a grower
// knows it (I2C in hex, as on the sensor's board), "" for a sensor alone on
// its pin.
func atAddress(addr string) string {
	switch i2c, rom := eventAddress(addr); {
	case i2c != nil:
		return fmt.Sprintf(" at I2C 0x%02X", *i2c)
	case rom != "":
		return " at OneWire " + rom
	}
	return ""
}

// withAddress adds a bus sensor's address to an alert's metadata.
func withAddress(md map[string]any, addr string) map[string]any {
	if addr != "" {
		md["address"] = addr
	}
	return md
}

func alertKey(prefix string, k store.SeriesKey) string {
	key := fmt.Sprintf("%s_%s_%d_%s", prefix, k.EspID, k.GPIO, k.SensorType)
	if k.Address != "" {
		key += "_" + k.Address
	}
	return key
}

// Suppressed implements docs/domain.md §3.5 on one alert_config (a sensor's,
// an actuator's or a device's): alerts are off and the window, if any, has
// not passed.
func Suppressed(ac map[string]any, now time.Time) bool { return suppressed(ac, now) }

// suppressed implements docs/domain.md §3.5 on the sensor's (or device's) alert_config.
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

// evaluate checks a usable reading against the bands (docs/domain.md §3.2–3.3).
// The reading's device, whose alert_config may suppress the alert, is
// looked up only for an alert to raise: a copy per reading cost more than
// everything else the hub's own code allocated for it.
func (s *Service) evaluate(ctx context.Context, k store.SeriesKey, c *Config, v float64, unit string) {
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

	d, err := s.devices.Get(k.EspID)
	if err != nil {
		return // deleted meanwhile: nothing to alert on
	}
	name := c.Name
	if name == "" {
		name = fmt.Sprintf("%s GPIO %d%s", k.SensorType, k.GPIO, atAddress(k.Address))
	}
	err = s.alerts.Raise(ctx, notify.Spec{
		Key:      key,
		Severity: sev,
		Category: "data_quality",
		Source:   "sensor_threshold",
		Title:    fmt.Sprintf("%s %s threshold exceeded", strings.ToUpper(sev[:1])+sev[1:], name),
		Body:     fmt.Sprintf("%s on %s reads %g %s, outside its %s band", name, k.EspID, v, unit, sev),
		Metadata: withAddress(map[string]any{
			"esp_id":      k.EspID,
			"gpio":        k.GPIO,
			"sensor_type": k.SensorType,
			"value":       v,
			"thresholds": map[string]any{
				"critical_min": bands.CriticalMin,
				"critical_max": bands.CriticalMax,
				"warning_min":  bands.WarningMin,
				"warning_max":  bands.WarningMax,
			},
		}, k.Address),
		Suppressed: alertsSuppressed(c, d, s.now()),
	})
	if err != nil {
		s.log.Error("raising threshold alert failed", "key", key, "error", err)
	}
}

// alertsSuppressed applies the sensor's alert_config and, unless it stops
// propagation, the device's (docs/domain.md §3.5).
func alertsSuppressed(c *Config, dev device.Device, now time.Time) bool {
	devAC, _ := dev.Metadata["alert_config"].(map[string]any)
	sup := suppressed(c.AlertConfig, now)
	if prop, ok := devAC["propagate_to_children"].(bool); !ok || prop {
		sup = sup || suppressed(devAC, now)
	}
	return sup
}

// CheckStale marks continuous sensors without a recent reading as stale
// (docs/domain.md §3.6), and announces the recovery of stale sensors whose
// readings came in through another replica; it is a scheduled job.
func (s *Service) CheckStale(ctx context.Context) error {
	now := s.now()
	hits, back := s.markStale(s.onlineDevices(), now)
	for _, h := range back {
		s.recovered(ctx, h.k, &h.c, *h.last)
	}
	for _, h := range hits {
		var lastAt *string
		if h.last != nil {
			at := h.last.UTC().Format(time.RFC3339)
			lastAt = &at
		}
		health := event.SensorHealth{
			EspID:          h.k.EspID,
			GPIO:           h.k.GPIO,
			SensorType:     h.k.SensorType,
			Status:         "stale",
			Reason:         &h.reason,
			LastReadingAt:  lastAt,
			TimeoutSeconds: h.c.TimeoutSeconds,
			Timestamp:      now.Unix(),
		}
		health.I2CAddress, health.OneWireAddress = eventAddress(h.k.Address)
		s.events.Publish(event.Event{Time: now, Data: health})
		s.raiseStale(ctx, h)
	}
	return nil
}

// staleHit is a sensor CheckStale has just marked stale.
type staleHit struct {
	k      store.SeriesKey
	c      Config
	last   *time.Time // receive time of its latest reading; nil: none
	reason string     // no_data or timeout_exceeded
}

// onlineDevices tells, per device with a sensor config, whether it is online.
func (s *Service) onlineDevices() map[string]bool {
	online := map[string]bool{}
	for _, c := range s.All() {
		if _, seen := online[c.EspID]; !seen {
			d, err := s.devices.Get(c.EspID)
			online[c.EspID] = err == nil && d.Status == device.StatusOnline
		}
	}
	return online
}

// markStale marks the enabled continuous sensors of online devices whose
// latest reading (or, without one, whose config) is older than their
// timeout, and returns those not marked before. It also returns the
// sensors marked stale whose latest reading is recent again without the
// recovery having been announced: a reading another replica ingested
// (ApplyRemote) renews the latest, while the stale alert is this
// replica's to resolve.
func (s *Service) markStale(online map[string]bool, now time.Time) (hits, back []staleHit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.configs {
		if !c.Enabled || c.OperatingMode != "continuous" || c.TimeoutSeconds <= 0 || !online[c.EspID] {
			continue
		}
		k := keyOf(c)
		st := s.series[k]
		last := s.lastReceived(st)
		since := c.CreatedAt
		if last != nil {
			since = *last
		}
		if now.Sub(since) <= time.Duration(c.TimeoutSeconds)*time.Second {
			if st != nil && st.stale && last != nil {
				st.stale = false
				back = append(back, staleHit{k: k, c: *c, last: last})
			}
			continue
		}

		if st == nil {
			st = &seriesState{id: -1}
		}
		if st.stale {
			continue
		}
		st.stale = true
		reason := "no_data"
		if last != nil {
			reason = "timeout_exceeded"
		}
		hits = append(hits, staleHit{
			k:      k,
			c:      *c,
			last:   last,
			reason: reason,
		})
	}
	return hits, back
}

// lastReceived is when the series' latest reading arrived; s.mu is held.
func (s *Service) lastReceived(st *seriesState) *time.Time {
	if st == nil {
		return nil
	}
	l := s.latest[st.id]
	if l == nil {
		return nil
	}
	t := time.UnixMilli(l.r.ReceivedAt)
	return &t
}

// raiseStale opens the stale alert of a sensor (docs/domain.md §3.6).
func (s *Service) raiseStale(ctx context.Context, h staleHit) {
	if s.alerts == nil {
		return
	}
	err := s.alerts.Raise(ctx, notify.Spec{
		Key:      alertKey("stale", h.k),
		Severity: "warning",
		Category: "data_quality",
		Source:   "sensor_threshold",
		Title:    "Sensor stale",
		Body: fmt.Sprintf("no reading from %s GPIO %d (%s%s) for more than %d s",
			h.k.EspID, h.k.GPIO, h.k.SensorType, atAddress(h.k.Address), h.c.TimeoutSeconds),
		Metadata: withAddress(map[string]any{
			"esp_id":      h.k.EspID,
			"gpio":        h.k.GPIO,
			"sensor_type": h.k.SensorType,
			"reason":      h.reason,
		}, h.k.Address),
	})
	if err != nil {
		s.log.Error("raising stale alert failed", "error", err)
	}
}

// recovered clears the stale mark when a reading arrives.
func (s *Service) recovered(ctx context.Context, k store.SeriesKey, c *Config, now time.Time) {
	lastAt := now.UTC().Format(time.RFC3339)
	health := event.SensorHealth{
		EspID:          k.EspID,
		GPIO:           k.GPIO,
		SensorType:     k.SensorType,
		Status:         "ok",
		LastReadingAt:  &lastAt,
		TimeoutSeconds: c.TimeoutSeconds,
		Timestamp:      now.Unix(),
	}
	health.I2CAddress, health.OneWireAddress = eventAddress(k.Address)
	s.events.Publish(event.Event{Time: now, Data: health})
	if s.alerts != nil {
		if err := s.alerts.Clear(ctx, alertKey("stale", k)); err != nil {
			s.log.Error("resolving stale alert failed", "error", err)
		}
	}
}
