package hub

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// The ingest figures of GET /health/detailed come from the running
// pipeline and store (docs/api.md §13): a malformed heartbeat shows up as a
// bad_json drop, both database files are measured by name.
func TestDetailedHealthIngestFigures(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	_, _, viewer := setupUsers(t, c)

	dev := mustDial(t, h.MQTTAddr(), "ESP_0BAD01")
	dev.subscribe(t, "kaiser/+/esp/ESP_0BAD01/system/heartbeat/ack")
	hb := "kaiser/god/esp/ESP_0BAD01/system/heartbeat"
	// The PUBACK of a QoS 1 message leaves once it is stored or dropped
	// with a counted reason; an MQTT 5 client learns a drop from its
	// reason code (docs/decisions/0015-durable-ack.md).
	if err := dev.publish(hb, `{"ts":`, false); err == nil {
		t.Fatal("a malformed heartbeat was acknowledged as accepted")
	}
	if err := dev.publish(hb, heartbeat(61), false); err != nil {
		t.Fatal(err)
	}
	// One device's messages are handled in order: the ack of the second
	// means the first has been dropped.
	if m := dev.next(t, 5*time.Second); !strings.Contains(m.payload, "pending_approval") {
		t.Fatalf("ack: %s", m.payload)
	}

	r := c.do("GET", "/api/v1/health/detailed", viewer, nil)
	in, _ := r.body["ingest"].(map[string]any)
	if r.status != 200 || in == nil {
		t.Fatalf("detailed: %d %s", r.status, r.raw)
	}
	if in["dropped"].(map[string]any)["bad_json"] != 1.0 {
		t.Fatalf("drops: %v", in["dropped"])
	}
	if _, ok := in["messages_per_second"].(float64); !ok {
		t.Fatalf("rate: %v", in["messages_per_second"])
	}
	depths := in["queue_depths"].(map[string]any)
	for _, q := range []string{"ingest", "readings", "store_main", "store_control"} {
		if _, ok := depths[q].(float64); !ok {
			t.Errorf("queue depth %s missing: %v", q, depths)
		}
	}
	db := r.body["database"].(map[string]any)
	files := db["files"].([]any)
	if len(files) != 2 || files[0].(map[string]any)["name"] != "kaiser.db" ||
		files[1].(map[string]any)["name"] != "control.db" || files[1].(map[string]any)["size_bytes"].(float64) <= 0 {
		t.Fatalf("database files: %v", files)
	}
	if db["size_bytes"].(float64) < files[0].(map[string]any)["size_bytes"].(float64) {
		t.Fatalf("total size %v", db["size_bytes"])
	}
}

func TestDebugConfigMasksTheSecretAndMaintenanceConfigListsTheJobs(t *testing.T) {
	const secret = "a-jwt-secret-of-more-than-32-bytes-for-the-test"
	h, c := apiHub(t, Config{JWTSecret: secret, HeartbeatTimeout: 200 * time.Second})
	defer stopHub(t, h)
	admin, operator, _ := setupUsers(t, c)

	if r := c.do("GET", "/api/v1/debug/config", operator, nil); r.status != 403 || errCode(r) != "FORBIDDEN" {
		t.Fatalf("operator: %d %s", r.status, r.raw)
	}
	r := c.do("GET", "/api/v1/debug/config", admin, nil)
	if r.status != 200 || strings.Contains(r.raw, secret) {
		t.Fatalf("config: %d %s", r.status, r.raw)
	}
	jwt := r.body["jwt_secret"].(map[string]any)
	if jwt["source"] != "environment" || jwt["value"] != "***MASKED***" {
		t.Fatalf("jwt_secret %v", jwt)
	}
	if r.body["mqtt_addr"] != h.MQTTAddr() || r.body["heartbeat_timeout_seconds"] != 200.0 ||
		r.body["ingest"].(map[string]any)["workers"] != 8.0 ||
		r.body["websocket"].(map[string]any)["max_connections"] != 100.0 {
		t.Fatalf("effective values: %s", r.raw)
	}
	if origins := r.body["cors_origins"].([]any); len(origins) != 2 {
		t.Fatalf("default origins: %v", origins)
	}

	r = c.do("GET", "/api/v1/debug/maintenance/config", admin, nil)
	jobs := map[string]map[string]any{}
	for _, j := range r.body["jobs"].([]any) {
		jobs[j.(map[string]any)["job_id"].(string)] = j.(map[string]any)
	}
	if r.status != 200 || r.body["timezone"] != "UTC" || len(jobs) != len(h.jobs()) {
		t.Fatalf("maintenance config: %d %s", r.status, r.raw)
	}
	if j := jobs["liveness_check"]; j["trigger"] != "interval" || j["every_seconds"] != 10.0 {
		t.Fatalf("liveness_check %v", j)
	}
	if j := jobs["token_blacklist_purge"]; j["trigger"] != "cron" || j["cron"] != "10 3 * * *" {
		t.Fatalf("token_blacklist_purge %v", j)
	}
	// The status carries each job's statistics.
	r = c.do("GET", "/api/v1/debug/maintenance/status", admin, nil)
	if r.body["service_running"] != true || len(r.body["jobs"].([]any)) != len(jobs) {
		t.Fatalf("maintenance status: %s", r.raw)
	}
	if _, ok := r.body["jobs"].([]any)[0].(map[string]any)["runs"].(float64); !ok {
		t.Fatalf("job statistics: %s", r.raw)
	}
}

// The log routes read the hub's own log file: the start-up line is there,
// with the data directory hidden (docs/api.md §15).
func TestLogsRoutesReadTheHubsLog(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	admin, operator, _ := setupUsers(t, c)

	if r := c.do("GET", "/api/v1/logs", operator, nil); r.status != 403 {
		t.Fatalf("operator: %d", r.status)
	}
	r := c.do("GET", "/api/v1/logs/files", admin, nil)
	files := r.body["files"].([]any)
	if r.status != 200 || len(files) != 1 || files[0].(map[string]any)["name"] != "kaiser.log" {
		t.Fatalf("files: %d %s", r.status, r.raw)
	}
	r = c.do("GET", "/api/v1/logs?search=kaiser+hub+ready&level=info", admin, nil)
	logs, _ := r.body["logs"].([]any)
	if r.status != 200 || len(logs) != 1 || strings.Contains(r.raw, h.cfg.DataDir) {
		t.Fatalf("logs: %d %s", r.status, r.raw)
	}
	if attrs := logs[0].(map[string]any)["attributes"].(map[string]any); attrs["data_dir"] != "<data-dir>" ||
		attrs["http"] != h.HTTPAddr() {
		t.Fatalf("attributes %v", attrs)
	}
	if r := c.do("GET", "/api/v1/debug/logs?file=../kaiser.db", admin, nil); r.status != 400 ||
		errCode(r) != "INVALID_LOG_FILE" {
		t.Fatalf("traversal: %d %s", r.status, r.raw)
	}
}

// The explorer reads both database files of a running hub, for admins
// only, with the password hashes masked (docs/api.md §16.2).
func TestDatabaseExplorerOnTheRunningHub(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	admin, operator, _ := setupUsers(t, c)

	for _, path := range []string{"/api/v1/debug/db/tables", "/api/v1/debug/db/users", "/api/v1/debug/db/users/1",
		"/api/v1/debug/db/users/schema"} {
		if r := c.do("GET", path, operator, nil); r.status != 403 || errCode(r) != "FORBIDDEN" {
			t.Errorf("%s as operator: %d %s", path, r.status, r.raw)
		}
	}
	r := c.do("GET", "/api/v1/debug/db/tables", admin, nil)
	counts := map[string]float64{}
	for _, x := range r.body["tables"].([]any) {
		counts[x.(map[string]any)["table_name"].(string)] = x.(map[string]any)["row_count"].(float64)
	}
	if r.status != 200 || counts["users"] != 3 || counts["control.schema_migrations"] < 1 {
		t.Fatalf("tables: %d %v", r.status, counts)
	}
	if _, ok := counts["control.actuator_states"]; !ok {
		t.Fatalf("control tables missing: %v", counts)
	}
	r = c.do("GET", "/api/v1/debug/db/users?sort_by=username&sort_order=asc", admin, nil)
	rows := r.body["data"].([]any)
	if r.status != 200 || len(rows) != 3 || rows[0].(map[string]any)["username"] != "admin" ||
		strings.Contains(r.raw, "$2a$") || rows[0].(map[string]any)["password_hash"] != "***MASKED***" {
		t.Fatalf("users: %d %s", r.status, r.raw)
	}
	// Audit entries are queued for the writer: committed once flushed.
	if err := h.Store.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	r = c.do("GET", `/api/v1/debug/db/audit_log?filters={"event_type":"setup_completed"}`, admin, nil)
	if r.status != 200 || r.body["total_count"] != 1.0 {
		t.Fatalf("audit filter: %d %s", r.status, r.raw)
	}
}

// The hourly history_retention job is wired to the store: triggered by
// hand, it deletes a heartbeat older than its 7 days and keeps a new one.
func TestHistoryRetentionJobTrimsOldHeartbeats(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	admin, _, _ := setupUsers(t, c)
	ctx := context.Background()
	w := h.SQLite.Writer()
	old, recent := time.Now().Add(-8*24*time.Hour).UnixMilli(), time.Now().UnixMilli()
	err := w.Do(ctx, func(_ context.Context, tx *sqlite.Tx) error {
		_, err := tx.Exec(`INSERT INTO device_heartbeats (device_id, received_at, device_time, time_source, uptime, heap_free, rssi)
			VALUES ('ESP_0DD0DD', ?1, ?1, 'device', 1, 1, -60), ('ESP_0DD0DD', ?2, ?2, 'device', 2, 1, -60)`, old, recent)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	kept := func() (n int, oldest int64) {
		err := w.Do(ctx, func(_ context.Context, tx *sqlite.Tx) error {
			return tx.QueryRow(`SELECT count(*), coalesce(min(received_at), 0) FROM device_heartbeats
				WHERE device_id = 'ESP_0DD0DD'`).Scan(&n, &oldest)
		})
		if err != nil {
			t.Fatal(err)
		}
		return n, oldest
	}

	if r := c.do("POST", "/api/v1/debug/maintenance/trigger/history_retention", admin, nil); r.status != 200 {
		t.Fatalf("trigger: %d %s", r.status, r.raw)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, oldest := kept()
		if n == 1 && oldest == recent {
			return
		}
		if n < 1 || time.Now().After(deadline) {
			t.Fatalf("after the job: %d heartbeats, oldest %d (old %d, recent %d)", n, oldest, old, recent)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
