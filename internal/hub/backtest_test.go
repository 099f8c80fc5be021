package hub

import (
	"context"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// POST /logic/backtest over a real hub (docs/api.md §10.3): the heater of
// docs/domain.md §6.13, saved over REST, replayed over the readings of its
// example (19.0, 17.5, 19.9, 21.3 a minute apart) stored in the hub's
// database; an unsaved document is checked like a save; the range and the
// rule id are checked; and nothing is recorded.
func TestBacktestRoute(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	_, op, _ := setupUsers(t, c)
	ctx := context.Background()

	id, err := h.Store.EnsureSeries(ctx, store.SeriesKey{EspID: "ESP_12AB34", GPIO: 4, SensorType: "ds18b20"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2024, 3, 6, 4, 0, 0, 0, time.UTC)
	for i, v := range []float64{19.0, 17.5, 19.9, 21.3} {
		ts := t0.Add(time.Duration(i) * time.Minute).UnixMilli()
		err := h.Readings.Add(ctx, store.Reading{SeriesID: id, TS: ts, Raw: v, Processed: &v, Unit: "°C",
			Quality: "good", Mode: "raw", TimeSource: "device", ReceivedAt: ts, Source: "production"})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Readings.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	created := c.do("POST", "/api/v1/logic/rules", op, heaterRule)
	if created.status != 201 {
		t.Fatalf("create: %d %s", created.status, created.raw)
	}
	ruleID := created.body["id"].(string)

	rep := c.do("POST", "/api/v1/logic/backtest", op, map[string]any{
		"rule_id":    ruleID,
		"start_time": "2024-03-06T04:00:00Z",
		"end_time":   "2024-03-06T06:00:00+01:00",
	})
	if rep.status != 200 || rep.body["success"] != true || rep.body["saved"] != true || rep.body["rule_id"] != ruleID {
		t.Fatalf("backtest: %d %s", rep.status, rep.raw)
	}
	firings := rep.body["firings"].([]any)
	if len(firings) != 2 {
		t.Fatalf("firings: %s", rep.raw)
	}
	on, off := firings[0].(map[string]any), firings[1].(map[string]any)
	onAct := on["actions"].([]any)[0].(map[string]any)
	if on["at"] != "2024-03-06T04:01:00.000Z" || on["kind"] != "fired" || onAct["command"] != "ON" ||
		onAct["duration_seconds"] != 3600.0 || onAct["auto_off_at"] != "2024-03-06T05:01:00.000Z" ||
		on["trigger"].(map[string]any)["value"] != 17.5 {
		t.Fatalf("the ON: %v", on)
	}
	if off["at"] != "2024-03-06T04:03:00.000Z" || off["kind"] != "hysteresis_off" ||
		off["actions"].([]any)[0].(map[string]any)["command"] != "OFF" {
		t.Fatalf("the OFF: %v", off)
	}
	sum := rep.body["summary"].(map[string]any)
	if sum["samples_replayed"] != 4.0 || sum["skipped_cooldown"] != 1.0 || sum["firings"] != 1.0 {
		t.Fatalf("summary %v", sum)
	}
	heater := rep.body["actuators"].([]any)[0].(map[string]any)
	if heater["on_seconds"] != 120.0 || heater["switch_count"] != 2.0 || heater["configured"] != false {
		t.Fatalf("heater %v", heater)
	}
	sensors := rep.body["sensors"].([]any)
	if s := sensors[0].(map[string]any); s["source"] != "raw" || s["raw_from"] != "2024-03-06T04:00:00.000Z" {
		t.Fatalf("sensors %v", sensors)
	}
	if as, _ := rep.body["assumptions"].([]any); len(as) == 0 {
		t.Fatalf("no assumptions: %s", rep.raw)
	}
	if hist := c.do("GET", "/api/v1/logic/execution_history?rule_id="+ruleID+"&start_time=2024-01-01T00:00:00Z",
		op, nil); hist.status != 200 || hist.body["total_count"] != 0.0 {
		// A backtest records nothing (and the run at creation had no data).
		t.Fatalf("history after the backtest: %s", hist.raw)
	}

	inline := c.do("POST", "/api/v1/logic/backtest", op, map[string]any{
		"rule": map[string]any{"name": "Broken", "conditions": []any{map[string]any{"type": "time",
			"start_time": "06:00", "end_time": "07:00", "timezone": "Mars/Base"}},
			"actions": []any{map[string]any{"type": "actuator", "esp_id": "ESP_12AB34", "gpio": 26}}},
		"start_time": "2024-03-06T00:00:00Z",
		"end_time":   "2024-03-07T00:00:00Z",
	})
	e, _ := inline.body["error"].(map[string]any)
	d, _ := e["details"].(map[string]any)
	errs, _ := d["errors"].([]any)
	if inline.status != 400 || errCode(inline) != "RULE_VALIDATION_FAILED" || len(errs) != 1 ||
		errs[0].(map[string]any)["path"] != "conditions.0.timezone" {
		t.Fatalf("inline document: %d %s", inline.status, inline.raw)
	}

	for name, body := range map[string]map[string]any{
		"31 days":     {"rule_id": ruleID, "start_time": "2024-03-01T00:00:00Z", "end_time": "2024-04-01T00:00:01Z"},
		"backwards":   {"rule_id": ruleID, "start_time": "2024-03-02T00:00:00Z", "end_time": "2024-03-01T00:00:00Z"},
		"no rule":     {"start_time": "2024-03-01T00:00:00Z", "end_time": "2024-03-02T00:00:00Z"},
		"bad time":    {"rule_id": ruleID, "start_time": "yesterday", "end_time": "2024-03-02T00:00:00Z"},
		"bad rule id": {"rule_id": "heater", "start_time": "2024-03-01T00:00:00Z", "end_time": "2024-03-02T00:00:00Z"},
	} {
		if r := c.do("POST", "/api/v1/logic/backtest", op, body); r.status != 422 || errCode(r) != "VALIDATION_ERROR" {
			t.Errorf("%s: %d %s", name, r.status, r.raw)
		}
	}
	missing := c.do("POST", "/api/v1/logic/backtest", op, map[string]any{
		"rule_id":    "00000000-0000-4000-8000-000000000000",
		"start_time": "2024-03-06T00:00:00Z",
		"end_time":   "2024-03-07T00:00:00Z",
	})
	if missing.status != 404 || errCode(missing) != "RULE_NOT_FOUND" {
		t.Fatalf("unknown rule: %d %s", missing.status, missing.raw)
	}
}
