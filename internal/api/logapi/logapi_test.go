package logapi

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kaiserhub/kaiser/internal/api/apitest"
	"github.com/kaiserhub/kaiser/internal/observe"
)

// newFixture serves the log routes over real log files: what the hub's
// logger writes, plus a rotated file and a file that is not the hub's.
func newFixture(t *testing.T, maxBytes int64) (*apitest.Fixture, *observe.Logs) {
	t.Helper()
	logs, err := observe.NewLogs(t.TempDir(), slog.LevelDebug, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := logs.Logger.With("component", "api")
	log.Info("request served", "request_id", "req-1", "path", "/api/v1/esp/devices")
	log.Warn("slow request", "request_id", "req-2")
	logs.Logger.With("component", "store").Error("commit failed", "error", "Disk full")
	if err := logs.Close(); err != nil {
		t.Fatal(err)
	}
	rotated := `{"time":"2026-01-05T09:00:00Z","level":"INFO","msg":"older","component":"device"}` + "\nnot json\n"
	for name, body := range map[string]string{"kaiser.log.1": rotated, "notes.txt": "private"} {
		if err := os.WriteFile(filepath.Join(logs.Dir, name), []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
	}

	f := apitest.New(t)
	Register(f.Srv, Deps{Logs: logs, Dir: logs.Dir, MaxBytes: maxBytes})
	return f, logs
}

func messagesOf(r apitest.Response) string {
	var out []string
	for _, e := range r.Items("logs") {
		out = append(out, e.(map[string]any)["message"].(string))
	}
	return strings.Join(out, ",")
}

func TestLogRoutesAreForAdmins(t *testing.T) {
	f, _ := newFixture(t, 0)
	for _, path := range []string{"/api/v1/logs", "/api/v1/logs/files", "/api/v1/debug/logs", "/api/v1/debug/logs/files"} {
		if r := f.Do(t, "GET", path, apitest.OperatorToken, nil); r.Status != 403 || r.Code() != "FORBIDDEN" {
			t.Errorf("%s as operator: %d %s", path, r.Status, r.Raw)
		}
		if r := f.Do(t, "GET", path, "", nil); r.Status != 401 {
			t.Errorf("%s without token: %d", path, r.Status)
		}
	}
	for _, rt := range f.Srv.Routes() {
		if strings.Contains(rt.Path, "/logs") && rt.Deprecated != strings.HasPrefix(rt.Path, "/api/v1/debug/") {
			t.Errorf("%s: deprecated %v (only the /debug aliases are)", rt.Path, rt.Deprecated)
		}
	}
}

func TestLogFilesListsTheHubsFilesByName(t *testing.T) {
	f, logs := newFixture(t, 0)
	for _, path := range []string{"/api/v1/logs/files", "/api/v1/debug/logs/files/"} {
		r := f.Do(t, "GET", path, apitest.AdminToken, nil)
		files := r.Items("files")
		if r.Status != 200 || r.Body["log_directory"] != "logs" || len(files) != 2 || strings.Contains(r.Raw, logs.Dir) {
			t.Fatalf("%s: %d %s", path, r.Status, r.Raw)
		}
		cur, old := files[0].(map[string]any), files[1].(map[string]any)
		if cur["name"] != "kaiser.log" || cur["is_current"] != true || cur["size_bytes"].(float64) <= 0 ||
			old["name"] != "kaiser.log.1" || old["is_current"] != false || old["size_human"] != "91 B" ||
			cur["modified"] == nil {
			t.Fatalf("%s: files %v", path, files)
		}
	}
}

func TestLogQuery(t *testing.T) {
	f, logs := newFixture(t, 0)
	tests := []struct {
		query string
		want  string
	}{
		{"", "commit failed,slow request,request served,older"},
		{"?level=warning", "commit failed,slow request"},
		{"?level=CRITICAL", "commit failed"},
		{"?component=ap", "slow request,request served"},
		{"?module=store", "commit failed"},
		{"?search=DISK", "commit failed"},
		{"?request_id=req-1", "request served"},
		{"?file=kaiser.log.1", "older"},
		{"?end_time=2026-01-05T09:30:00Z", "older"},
		{"?page_size=2&page=2", "request served,older"},
		{"?page=9", ""},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := f.Do(t, "GET", "/api/v1/logs"+tt.query, apitest.AdminToken, nil)
			if r.Status != 200 || messagesOf(r) != tt.want {
				t.Fatalf("%d: got %q, want %q: %s", r.Status, messagesOf(r), tt.want, r.Raw)
			}
		})
	}

	r := f.Do(t, "GET", "/api/v1/debug/logs?page_size=1", apitest.AdminToken, nil)
	e := r.Items("logs")[0].(map[string]any)
	if r.Body["total_count"] != 4.0 || r.Body["has_more"] != true || r.Body["skipped_lines"] != 1.0 ||
		r.Body["truncated"] != false || r.Body["page_size"] != 1.0 {
		t.Fatalf("meta: %s", r.Raw)
	}
	if e["level"] != "ERROR" || e["component"] != "store" || e["error"] != "Disk full" || e["file"] != "kaiser.log" ||
		e["request_id"] != nil || e["timestamp"] == nil {
		t.Fatalf("entry %v", e)
	}
	r = f.Do(t, "GET", "/api/v1/logs?request_id=req-1", apitest.AdminToken, nil)
	attrs := r.Items("logs")[0].(map[string]any)["attributes"].(map[string]any)
	if attrs["path"] != "/api/v1/esp/devices" || strings.Contains(r.Raw, filepath.Dir(logs.Dir)) {
		t.Fatalf("attributes %v (or the data directory revealed): %s", attrs, r.Raw)
	}
}

// A query reads at most the configured bytes, the newest first.
func TestLogQueryIsBounded(t *testing.T) {
	f, _ := newFixture(t, 200)
	r := f.Do(t, "GET", "/api/v1/logs", apitest.AdminToken, nil)
	if r.Status != 200 || r.Body["truncated"] != true || !strings.HasPrefix(messagesOf(r), "commit failed") ||
		strings.Contains(messagesOf(r), "older") {
		t.Fatalf("%d %s", r.Status, r.Raw)
	}
}

func TestLogQueryRefusesFilesThatAreNotListed(t *testing.T) {
	f, logs := newFixture(t, 0)
	if err := os.Symlink("/etc/hostname", filepath.Join(logs.Dir, "kaiser.log.2")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"notes.txt", "kaiser.log.2", "kaiser.log.3", "../logs/kaiser.log", "/etc/passwd",
		`..\kaiser.log`, "kaiser.log%00", "%2Fetc%2Fpasswd", ".."} {
		r := f.Do(t, "GET", "/api/v1/logs?file="+name, apitest.AdminToken, nil)
		if r.Status != 400 || r.Code() != "INVALID_LOG_FILE" || strings.Contains(r.Raw, "private") ||
			strings.Contains(r.Raw, logs.Dir) {
			t.Errorf("file=%s: %d %s", name, r.Status, r.Raw)
		}
	}
}

func TestLogQueryValidation(t *testing.T) {
	f, _ := newFixture(t, 0)
	for _, q := range []string{"level=loud", "page=0", "page_size=1001", "search=" + strings.Repeat("x", 201),
		"start_time=yesterday"} {
		if r := f.Do(t, "GET", "/api/v1/logs?"+q, apitest.AdminToken, nil); r.Status != 422 || r.Code() != "VALIDATION_ERROR" {
			t.Errorf("%s: %d %s", q, r.Status, r.Raw)
		}
	}
	// Validation comes before the file check (docs/api.md §1.5).
	r := f.Do(t, "GET", "/api/v1/logs?file=../x&page=0", apitest.AdminToken, nil)
	if r.Status != 422 {
		t.Fatalf("422 before 400: %d %s", r.Status, r.Raw)
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 10 << 20: "10.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanSize(n); got != want {
			t.Errorf("%d: %s, want %s", n, got, want)
		}
	}
}
