package observe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// logDir is a data directory whose logs directory holds files with the
// given lines; it returns the Logs reading them.
func logDir(t *testing.T, files map[string][]string) *Logs {
	t.Helper()
	data := t.TempDir()
	dir := filepath.Join(data, "logs")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	for name, lines := range files {
		body := strings.Join(lines, "\n")
		if len(lines) > 0 {
			body += "\n"
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return &Logs{Dir: dir}
}

func line(sec int, level, component, msg string, extra ...string) string {
	at := time.Date(2026, 1, 5, 10, 0, sec, 0, time.UTC).Format(time.RFC3339Nano)
	s := fmt.Sprintf(`{"time":%q,"level":%q,"msg":%q,"component":%q`, at, level, msg, component)
	for _, e := range extra {
		s += "," + e
	}
	return s + "}"
}

func messages(p LogPage) string {
	var out []string
	for _, e := range p.Entries {
		out = append(out, e.Message)
	}
	return strings.Join(out, ",")
}

func TestLogFilesListsOnlyTheHubsOwnFilesNewestFirst(t *testing.T) {
	l := logDir(t, map[string][]string{
		"kaiser.log":    {line(3, "INFO", "api", "c")},
		"kaiser.log.2":  {line(1, "INFO", "api", "a")},
		"kaiser.log.1":  {line(2, "INFO", "api", "b")},
		"kaiser.log.10": {},
		"other.log":     {},
		"kaiser.log.x":  {},
	})
	if err := os.Symlink("/etc/hostname", filepath.Join(l.Dir, "kaiser.log.3")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(l.Dir, "kaiser.log.4"), 0o750); err != nil {
		t.Fatal(err)
	}

	files, err := l.LogFiles()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	if got := strings.Join(names, ","); got != "kaiser.log,kaiser.log.1,kaiser.log.2,kaiser.log.10" {
		t.Fatalf("files %s", got)
	}
	if !files[0].Current || files[1].Current || files[0].Size != int64(len(line(3, "INFO", "api", "c"))+1) {
		t.Fatalf("current file %+v", files[0])
	}
}

func TestBareName(t *testing.T) {
	for _, name := range []string{"", "../kaiser.log", "logs/kaiser.log", `..\kaiser.log`, "/etc/passwd",
		"kaiser.log\x00", "..", "kaiser..log"} {
		if BareName(name) {
			t.Errorf("%q accepted", name)
		}
	}
	if !BareName("kaiser.log.1") {
		t.Error("kaiser.log.1 refused")
	}
}

func TestQueryLogsFiltersAndPagesNewestFirst(t *testing.T) {
	l := logDir(t, map[string][]string{
		"kaiser.log.1": {
			line(1, "INFO", "api", "one", `"request_id":"r-1"`),
			line(2, "WARN", "store", "two", `"error":"Disk Full"`),
			"not json at all",
		},
		"kaiser.log": {
			line(3, "ERROR", "api.ws", "three"),
			"",
			line(4, "DEBUG", "api", "four", `"request_id":"r-1"`),
			`{"unterminated": `,
			line(5, "INFO", "device", "five", `"error":{"code":7}`),
		},
	})
	warn, info := slog.LevelWarn, slog.LevelInfo
	tests := []struct {
		name string
		q    LogQuery
		want string
	}{
		{"everything, newest first across files", LogQuery{}, "five,four,three,two,one"},
		{"minimum level", LogQuery{MinLevel: &warn}, "three,two"},
		{"component prefix", LogQuery{Component: "api"}, "four,three,one"},
		{"component prefix is not a substring", LogQuery{Component: "pi"}, ""},
		{"search in msg, any case", LogQuery{Search: "THR"}, "three"},
		{"search in error, any case", LogQuery{Search: "disk full"}, "two"},
		{"search in an error object", LogQuery{Search: `"code":7`}, "five"},
		{"request id", LogQuery{RequestID: "r-1"}, "four,one"},
		{"time range", LogQuery{
			Start: time.Date(2026, 1, 5, 10, 0, 2, 0, time.UTC),
			End:   time.Date(2026, 1, 5, 10, 0, 4, 0, time.UTC),
		}, "four,three,two"},
		{"one file", LogQuery{File: "kaiser.log.1"}, "two,one"},
		{"level and component", LogQuery{MinLevel: &info, Component: "api"}, "three,one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.q.Limit = 100
			p, err := l.QueryLogs(context.Background(), tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := messages(p); got != tt.want || p.Total != len(p.Entries) {
				t.Fatalf("got %q (total %d), want %q", got, p.Total, tt.want)
			}
		})
	}

	p, err := l.QueryLogs(context.Background(), LogQuery{Offset: 1, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if messages(p) != "four,three" || p.Total != 5 || p.Skipped != 2 || p.Truncated {
		t.Fatalf("page 2 of size 2: %q total %d skipped %d truncated %v", messages(p), p.Total, p.Skipped, p.Truncated)
	}
	e := p.Entries[0]
	if e.Level != "DEBUG" || e.Component != "api" || e.RequestID != "r-1" || e.File != "kaiser.log" ||
		!e.Time.Equal(time.Date(2026, 1, 5, 10, 0, 4, 0, time.UTC)) {
		t.Fatalf("entry %+v", e)
	}
	if p, _ := l.QueryLogs(context.Background(), LogQuery{Offset: 10, Limit: 5}); len(p.Entries) != 0 || p.Total != 5 {
		t.Fatalf("past the end: %+v", p)
	}
}

func TestQueryLogsRefusesFilesNotListed(t *testing.T) {
	l := logDir(t, map[string][]string{"kaiser.log": {line(1, "INFO", "api", "x")}, "secrets.txt": {"x"}})
	if err := os.Symlink("/etc/hostname", filepath.Join(l.Dir, "kaiser.log.1")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"secrets.txt", "kaiser.log.1", "../logs/kaiser.log", "/etc/hostname", "kaiser.log.2"} {
		if _, err := l.QueryLogs(context.Background(), LogQuery{File: name, Limit: 10}); !errors.Is(err, ErrInvalidLogFile) {
			t.Errorf("%q: %v", name, err)
		}
	}
}

// With a budget smaller than the data, the newest lines are read, whole.
func TestQueryLogsReadsAtMostMaxBytes(t *testing.T) {
	var lines []string
	for i := range 20 {
		lines = append(lines, line(i, "INFO", "api", fmt.Sprintf("m%02d", i)))
	}
	l := logDir(t, map[string][]string{"kaiser.log": lines[10:], "kaiser.log.1": lines[:10]})
	size := int64(len(lines[0]) + 1)

	p, err := l.QueryLogs(context.Background(), LogQuery{Limit: 100, MaxBytes: 3*size + size/2})
	if err != nil {
		t.Fatal(err)
	}
	if got := messages(p); got != "m19,m18,m17" || !p.Truncated || p.Skipped != 0 {
		t.Fatalf("got %q truncated %v skipped %d", got, p.Truncated, p.Skipped)
	}
	p, _ = l.QueryLogs(context.Background(), LogQuery{Limit: 100, MaxBytes: 12 * size})
	if got := messages(p); !strings.HasPrefix(got, "m19,") || !strings.HasSuffix(got, ",m09,m08") || !p.Truncated {
		t.Fatalf("into the second file: %q truncated %v", got, p.Truncated)
	}
	p, _ = l.QueryLogs(context.Background(), LogQuery{Limit: 100, MaxBytes: 20 * size})
	if p.Total != 20 || p.Truncated {
		t.Fatalf("exactly enough: total %d truncated %v", p.Total, p.Truncated)
	}
}

func TestLogEntriesHideTheDataDirectory(t *testing.T) {
	l := logDir(t, nil)
	data := filepath.Dir(l.Dir)
	raw := line(1, "ERROR", "store", "open "+data+"/kaiser.db failed",
		fmt.Sprintf(`"error":"open %s/kaiser.db: denied","db":%q,"source":{"file":"/build/internal/x.go","line":3}`,
			data, data+"/control.db"))
	if err := os.WriteFile(filepath.Join(l.Dir, "kaiser.log"), []byte(raw+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	p, err := l.QueryLogs(context.Background(), LogQuery{Limit: 1})
	if err != nil || len(p.Entries) != 1 {
		t.Fatalf("%v %+v", err, p)
	}
	e := p.Entries[0]
	if e.Message != "open <data-dir>/kaiser.db failed" || e.Error != "open <data-dir>/kaiser.db: denied" ||
		e.Attributes["db"] != "<data-dir>/control.db" || e.Attributes["source"].(map[string]any)["file"] != "x.go" {
		t.Fatalf("entry %+v", e)
	}
}

// The hub's own logger writes lines the reader reads back, with every
// attribute of the record.
func TestQueryLogsReadsWhatTheLoggerWrote(t *testing.T) {
	l, err := NewLogs(t.TempDir(), slog.LevelDebug, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Logger.With("component", "device").Warn("heartbeat late", "esp_id", "ESP_1", "late_ms", 1500, "api_key", "k")
	l.Logger.Info("other")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	p, err := l.QueryLogs(context.Background(), LogQuery{Component: "device", Limit: 10})
	if err != nil || len(p.Entries) != 1 {
		t.Fatalf("%v %+v", err, p)
	}
	e := p.Entries[0]
	if e.Message != "heartbeat late" || e.Level != "WARN" || e.Attributes["esp_id"] != "ESP_1" ||
		fmt.Sprint(e.Attributes["late_ms"]) != "1500" || e.Attributes["api_key"] != "***REDACTED***" || e.Time.IsZero() {
		t.Fatalf("entry %+v", e)
	}
}
