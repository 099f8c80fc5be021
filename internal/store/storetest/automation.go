package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

func zonesAndSubzones(t *testing.T, s Subject) {
	c := ctx(t)
	z := store.Zone{ZoneID: "house-1", Name: "House 1", Description: "tomatoes", Status: "active",
		CreatedAt: base, UpdatedAt: base}
	must(t, s.Store.SaveZone(c, z))
	z.Status, z.UpdatedAt = "archived", base.Add(time.Hour)
	must(t, s.Store.SaveZone(c, z))
	must(t, s.Store.SaveZone(c, store.Zone{ZoneID: "gone", Name: "x", Status: "active", CreatedAt: base,
		UpdatedAt: base}))
	must(t, s.Store.DeleteZone(c, "gone"))
	zones, err := s.Store.LoadZones(c)
	must(t, err)
	if !reflect.DeepEqual(zones, []store.Zone{z}) {
		t.Fatalf("zones %+v", zones)
	}

	sz := store.Subzone{EspID: "ESP_Z1", SubzoneID: "bed-a", Name: "Bed A", ParentZoneID: "house-1",
		GPIOs: []int{4, 5}, SafeMode: true, Status: "error", ErrorCode: ptr(int64(2503)), ErrorMessage: "busy",
		LastAckAt: ptr(base), CreatedAt: base, UpdatedAt: base}
	must(t, s.Store.SaveSubzone(c, sz))
	must(t, s.Store.SaveSubzone(c, store.Subzone{EspID: "ESP_Z1", SubzoneID: "bed-b", Status: "pending",
		CreatedAt: base, UpdatedAt: base}))
	must(t, s.Store.DeleteSubzone(c, "ESP_Z1", "bed-b"))
	subs, err := s.Store.LoadSubzones(c)
	must(t, err)
	if !reflect.DeepEqual(subs, []store.Subzone{sz}) {
		t.Fatalf("subzones\n got %+v\nwant %+v", subs, []store.Subzone{sz})
	}

	ch := store.ZoneChange{EspID: "ESP_Z1", FromZoneID: "", ToZoneID: "house-1", Strategy: "transfer",
		Actor: "op", CorrelationID: "c1", At: base}
	must(t, s.Store.AppendZoneChange(c, ch))
	changes, err := s.Store.ZoneChanges(c, "ESP_Z1")
	must(t, err)
	if !reflect.DeepEqual(changes, []store.ZoneChange{ch}) {
		t.Fatalf("zone changes %+v", changes)
	}
}

func rulesAndTheirHistory(t *testing.T, s Subject) {
	c := ctx(t)
	r := store.Rule{ID: "r1", Name: "night pump", Enabled: true, Priority: 2, Doc: []byte(`{"conditions":[]}`),
		CreatedAt: base, UpdatedAt: base}
	must(t, s.Store.SaveRule(c, r))
	if err := s.Store.SaveRule(c, store.Rule{ID: "r2", Name: "night pump", Doc: []byte(`{}`), CreatedAt: base,
		UpdatedAt: base}); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("a second rule of one name: %v", err)
	}
	must(t, s.Store.SetRuleTriggered(c, "r1", base.Add(time.Minute)))
	exec := func(id string, at time.Time, ok bool, finished bool) store.RuleExecution {
		e := store.RuleExecution{ID: id, RuleID: "r1", RuleName: "night pump", TriggeredAt: at,
			TriggerReason: "timer", Trigger: []byte(`{}`), ConditionResults: []byte(`[]`), ActionResults: []byte(`[]`),
			ActionsExecuted: 1, Success: ok}
		if finished {
			e.FinishedAt, e.ExecutionMS = ptr(at.Add(time.Second)), ptr(int64(1000))
		}
		return e
	}
	must(t, s.Store.SaveRuleExecution(c, exec("e1", base, false, true)))
	must(t, s.Store.SaveRuleExecution(c, exec("e2", base.Add(time.Minute), true, false)))
	must(t, s.Store.SaveRuleExecution(c, exec("e2", base.Add(time.Minute), true, true))) // finishes it
	must(t, s.Store.SaveRuleExecution(c, store.RuleExecution{ID: "x", RuleID: "missing", TriggeredAt: base,
		Trigger: []byte(`{}`), ConditionResults: []byte(`[]`), ActionResults: []byte(`[]`)}))
	must(t, s.Store.SaveHysteresis(c, store.HysteresisState{RuleID: "r1", Path: "0", Active: true,
		LastValue: ptr(21.5), LastActivation: ptr(base)}))
	must(t, s.Store.SaveContinuation(c, store.RuleContinuation{ID: "k1", RuleID: "r1", ExecutionID: "e2",
		DueAt: base.Add(time.Hour), Doc: []byte(`{"next":1}`)}))
	flush(t, s.Store)

	rules, err := s.Store.LoadRules(c)
	must(t, err)
	r.LastTriggered = ptr(base.Add(time.Minute))
	if !reflect.DeepEqual(rules, []store.Rule{r}) {
		t.Fatalf("rules\n got %+v\nwant %+v", rules, []store.Rule{r})
	}
	page, err := s.Store.QueryRuleExecutions(c, store.RuleExecutionFilter{From: base.Add(-time.Hour), Limit: 10})
	must(t, err)
	if page.Total != 2 || page.Succeeded != 1 || len(page.Entries) != 2 ||
		!reflect.DeepEqual(page.Entries[0], exec("e2", base.Add(time.Minute), true, true)) {
		t.Fatalf("executions %+v (the row of a missing rule is not written)", page)
	}
	stats, err := s.Store.RuleStats(c)
	must(t, err)
	if st := stats["r1"]; st.Count != 2 || st.LastSuccess == nil || !*st.LastSuccess {
		t.Fatalf("stats %+v", stats)
	}
	hs, err := s.Store.LoadHysteresis(c)
	must(t, err)
	ks, err := s.Store.LoadContinuations(c)
	must(t, err)
	if len(hs) != 1 || *hs[0].LastValue != 21.5 || len(ks) != 1 || string(ks[0].Doc) != `{"next":1}` {
		t.Fatalf("hysteresis %+v continuations %+v", hs, ks)
	}
	must(t, s.Store.DeleteContinuation(c, "k1"))
	must(t, s.Store.ResetHysteresis(c, "r1"))
	flush(t, s.Store)
	hs, _ = s.Store.LoadHysteresis(c)
	ks, _ = s.Store.LoadContinuations(c)
	if len(hs) != 0 || len(ks) != 0 {
		t.Fatalf("left %d hysteresis states, %d continuations", len(hs), len(ks))
	}

	must(t, s.Store.DeleteRule(c, "r1"))
	page, err = s.Store.QueryRuleExecutions(c, store.RuleExecutionFilter{From: base.Add(-time.Hour), Limit: 10})
	must(t, err)
	if rules, _ := s.Store.LoadRules(c); len(rules) != 0 || page.Total != 0 {
		t.Fatalf("after delete: %d rules, %d executions", len(rules), page.Total)
	}
}

func sequencesAndCredentials(t *testing.T, s Subject) {
	c := ctx(t)
	run := store.Sequence{ID: "seq-1", RuleID: "r1", Status: "running", StartedAt: base, Doc: []byte(`{"step":1}`)}
	must(t, s.Store.SaveSequence(c, run))
	done := store.Sequence{ID: "seq-2", RuleID: "r1", Status: "completed", StartedAt: base.Add(time.Second),
		FinishedAt: ptr(base.Add(time.Minute)), Doc: []byte(`{}`)}
	must(t, s.Store.SaveSequence(c, done))
	seqs, err := s.Store.LoadSequences(c)
	must(t, err)
	if !reflect.DeepEqual(seqs, []store.Sequence{run, done}) {
		t.Fatalf("sequences %+v", seqs)
	}
	if n, err := s.Store.DeleteSequencesFinishedBefore(c, base.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("swept %d %v", n, err)
	}

	cred := store.DeviceCredential{EspID: "ESP_K1", PasswordHash: []byte("$2a$10$abc"), Version: 1,
		IssuedBy: "admin", IssuedAt: base}
	must(t, s.Store.SaveDeviceCredential(c, cred))
	cred.PasswordHash, cred.Version = []byte("$2a$10$def"), 2
	must(t, s.Store.SaveDeviceCredential(c, cred))
	must(t, s.Store.SaveDeviceCredential(c, store.DeviceCredential{EspID: "ESP_K2", PasswordHash: []byte("x"),
		Version: 1, IssuedAt: base}))
	must(t, s.Store.DeleteDeviceCredential(c, "ESP_K2"))
	creds, err := s.Store.LoadDeviceCredentials(c)
	must(t, err)
	if !reflect.DeepEqual(creds, []store.DeviceCredential{cred}) {
		t.Fatalf("credentials %+v", creds)
	}

	sc := store.Doc{ID: "s1", EspID: "ESP_K1", GPIO: 34, Kind: "ph", JSON: []byte(`{"interval":30}`),
		CreatedAt: base, UpdatedAt: base}
	must(t, s.Store.SaveSensorConfig(c, sc))
	dup := sc
	dup.ID = "s2"
	if err := s.Store.SaveSensorConfig(c, dup); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("a second config of one sensor: %v", err)
	}
	docs, err := s.Store.LoadSensorConfigs(c)
	must(t, err)
	if !reflect.DeepEqual(docs, []store.Doc{sc}) {
		t.Fatalf("sensor configs %+v", docs)
	}
	must(t, s.Store.DeleteSensorConfig(c, "s1"))
	if docs, _ := s.Store.LoadSensorConfigs(c); len(docs) != 0 {
		t.Fatal("sensor config not deleted")
	}
}
