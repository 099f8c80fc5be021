package hub

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
)

// The whole hub on PostgreSQL (--database postgres://…): a device comes
// online through registration and approval, its readings arrive over MQTT
// and read back over REST, an actuator command is confirmed, and an
// emergency stop latched before a restart is still in force after it. No
// SQLite file is made, the SQLite-only explorer answers 501, and readiness
// goes false when the server goes away.
func TestHubOnPostgres(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Config{})
	cfg := Config{DataDir: t.TempDir(), Database: srv.NewDatabaseURL(t)}
	h, c, incident := runSite(t, cfg)
	if h.Postgres == nil || h.SQLite != nil {
		t.Fatal("the hub did not open PostgreSQL")
	}
	// What only SQLite has says so.
	if r := c.do("GET", "/api/v1/debug/db/tables", login(t, c, "admin", adminPW), nil); r.status != 501 ||
		errCode(r) != "NOT_IMPLEMENTED" {
		t.Fatalf("explorer on PostgreSQL: %d %s", r.status, r.raw)
	}
	d := c.do("GET", "/api/v1/health/detailed", login(t, c, "viewer", "Pass-word1"), nil)
	db, _ := d.body["database"].(map[string]any)
	if db["database_type"] != "postgresql" || db["connected"] != true || fmt.Sprint(db["files"]) != "[]" {
		t.Fatalf("detailed health: %s", d.raw)
	}
	stopHub(t, h)
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "kaiser.db")); !os.IsNotExist(err) {
		t.Fatalf("a SQLite file in the data directory: %v", err)
	}

	h, c = checkSite(t, cfg, incident)
	defer func() { _ = h.Stop(t.Context()) }() // the server is gone by then
	if code, _ := readiness(t, c); code != 200 {
		t.Fatalf("ready: HTTP %d", code)
	}
	// The server goes away: not ready, with the database check false.
	srv.Stop()
	if code, checks := readiness(t, c); code != 503 || checks["database"] != false {
		t.Fatalf("ready with PostgreSQL down: HTTP %d %v", code, checks)
	}
}

const siteDevice = "ESP_A1B2C3"

// runSite brings a device online through registration and approval, sends
// three readings over MQTT at QoS 1 (the PUBACK means committed, so REST
// reads them at once), has an actuator command confirmed and latches an
// emergency stop; it returns the running hub and the stop's incident.
func runSite(t *testing.T, cfg Config) (*Hub, apiClient, string) {
	t.Helper()
	h, c, n, operator, viewer := actuatorHubWith(t, cfg)
	base := time.Now().Unix() - 600
	for i := range 3 {
		if err := n.c.publish(readingTopic(siteDevice), readingAt(siteDevice, 100+i, base+int64(i)), false); err != nil {
			t.Fatal(err)
		}
	}
	if rows := siteHistory(t, c, viewer); len(rows) != 3 {
		t.Fatalf("history has %d readings, want 3", len(rows))
	}

	r := c.do("POST", "/api/v1/actuators/"+siteDevice+"/5/command", operator, map[string]any{"command": "ON"})
	if r.status != 200 || r.body["command_sent"] != true {
		t.Fatalf("command: %d %s", r.status, r.raw)
	}
	cmd := r.body["command_id"].(string)
	if got := n.next(t, 5*time.Second); got.name() != "ON" || got.body["correlation_id"] != cmd {
		t.Fatalf("the device got %+v", got.body)
	}
	pollJSON(t, c, viewer, "/api/v1/actuators/commands/"+cmd, commandIs("acknowledged"))
	pollJSON(t, c, viewer, "/api/v1/actuators/"+siteDevice+"/5/status", statusIsState("on"))

	r = c.do("POST", "/api/v1/actuators/emergency_stop", operator, map[string]any{"reason": "flood in bed 3"})
	if r.status != 200 || r.body["latch_persisted"] != true {
		t.Fatalf("stop: %d %s", r.status, r.raw)
	}
	return h, c, r.body["incident_correlation_id"].(string)
}

// checkSite starts a hub on cfg again and checks what runSite left: the
// latch of incident in force, the three readings, the users.
func checkSite(t *testing.T, cfg Config, incident string) (*Hub, apiClient) {
	t.Helper()
	h, c := apiHub(t, cfg)
	viewer := login(t, c, "viewer", "Pass-word1")
	st := c.do("GET", "/api/v1/actuators/emergency", viewer, nil)
	g, _ := st.body["global"].(map[string]any)
	if st.body["active"] != true || g["incident_correlation_id"] != incident {
		t.Fatalf("emergency after restart: %s", st.raw)
	}
	if !h.Emergency.Latched(siteDevice) {
		t.Fatal("latch not enforced after restart")
	}
	if rows := siteHistory(t, c, viewer); len(rows) != 3 {
		t.Fatalf("after restart the history has %d readings, want 3", len(rows))
	}
	return h, c
}

func siteHistory(t *testing.T, c apiClient, tok string) []any {
	t.Helper()
	r := c.do("GET", "/api/v1/sensors/data?esp_id="+siteDevice+"&gpio=34", tok, nil)
	if r.status != 200 {
		t.Fatalf("history: %d %s", r.status, r.raw)
	}
	rows, _ := r.body["readings"].([]any)
	return rows
}
