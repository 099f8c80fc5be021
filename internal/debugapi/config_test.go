package debugapi

import (
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/live"
	"github.com/kaiserhub/kaiser/internal/schedule"
)

// scheduledJobs are jobs with schedules, in the scheduler's time zone.
type scheduledJobs struct {
	fakeJobs
	schedules []schedule.Schedule
	loc       *time.Location
}

func (j scheduledJobs) Schedules() []schedule.Schedule { return j.schedules }

func (j scheduledJobs) Location() *time.Location { return j.loc }

func TestMaintenanceConfig(t *testing.T) {
	f := newFixture(t, scheduledJobs{
		schedules: []schedule.Schedule{
			{Name: "audit_retention", Cron: "30 3 * * *", Timeout: 5 * time.Minute},
			{Name: "liveness_check", Every: 10 * time.Second, Timeout: 10 * time.Second},
		},
		loc: time.FixedZone("CET", 3600),
	})
	r := f.do(t, "GET", "/api/v1/debug/maintenance/config", nil)
	if r.status != 200 || r.body["timezone"] != "CET" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	got, _ := json.Marshal(r.body["jobs"])
	want := `[{"cron":"30 3 * * *","every_seconds":null,"job_id":"audit_retention","timeout_seconds":300,"trigger":"cron"},` +
		`{"cron":null,"every_seconds":10,"job_id":"liveness_check","timeout_seconds":10,"trigger":"interval"}]`
	if string(got) != want {
		t.Fatalf("jobs %s\nwant %s", got, want)
	}

	none := newFixture(t, nil)
	if r := none.do(t, "GET", "/api/v1/debug/maintenance/config", nil); r.status != 200 ||
		len(r.body["jobs"].([]any)) != 0 || r.body["timezone"] != "UTC" {
		t.Fatalf("no scheduler: %s", r.raw)
	}
}

func TestConfigShowsTheEffectiveSettingsWithTheSecretMasked(t *testing.T) {
	f := newFixture(t, nil)
	if r := f.do(t, "GET", "/api/v1/debug/config", nil); r.status != 503 {
		t.Fatalf("without settings: %d %s", r.status, r.raw)
	}

	f.debug.settings = func() Settings {
		return Settings{
			Version:          "1.2.3",
			HTTPAddr:         "127.0.0.1:8000",
			KaiserID:         "god",
			HeartbeatTimeout: 180 * time.Second,
			LogLevel:         slog.LevelWarn,
			ProcessedEcho:    true,
			JWTSecretSource:  "file",
			JWTSecretFile:    "/etc/kaiser/jwt",
			WebSocket:        live.Config{Rate: -1, QueueMax: 1000, WriteTimeout: 5 * time.Second},
			Ingest:           ingest.Config{Workers: 8, HandlerTimeout: 5 * time.Second},
		}
	}
	r := f.do(t, "GET", "/api/v1/debug/config", nil)
	if r.status != 200 || r.body["heartbeat_timeout_seconds"] != 180.0 || r.body["log_level"] != "WARN" ||
		r.body["processed_echo"] != true || r.body["kaiser_id"] != "god" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if got, _ := json.Marshal(r.body["jwt_secret"]); string(got) != `{"file":"/etc/kaiser/jwt","source":"file","value":"***MASKED***"}` {
		t.Fatalf("jwt_secret %s", got)
	}
	ws, in := r.body["websocket"].(map[string]any), r.body["ingest"].(map[string]any)
	if ws["rate_per_second"] != 0.0 || ws["queue_max"] != 1000.0 || ws["write_timeout_seconds"] != 5.0 ||
		in["workers"] != 8.0 || in["handler_timeout_seconds"] != 5.0 {
		t.Fatalf("tuning: %v %v", ws, in)
	}
	if origins, ok := r.body["cors_origins"].([]any); !ok || len(origins) != 0 {
		t.Fatalf("cors_origins %v", r.body["cors_origins"])
	}
}
