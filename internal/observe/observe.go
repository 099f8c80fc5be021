// Package observe sets up the hub's logs and metrics registry: slog JSON
// lines in <data-dir>/logs/kaiser.log with size-based rotation, readable
// console output, secret redaction, and a Prometheus registry with the Go
// runtime and process collectors. It also reads its log files back,
// filtered and newest first, for the logs routes.
package observe

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// ParseLevel maps a level name to slog (WARNING and CRITICAL are accepted as aliases).
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error", "critical":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (debug, info, warn, error)", s)
}

// Logs is the configured logger with its file sink.
type Logs struct {
	Logger *slog.Logger
	Dir    string
	file   *rotatingFile
}

// Close flushes and closes the log file.
func (l *Logs) Close() error {
	if l.file == nil {
		return nil
	}
	return l.file.Close()
}

// NewLogs writes JSON lines to dataDir/logs/kaiser.log (10 MiB × 5 files) and
// text to console (nil = no console output).
func NewLogs(dataDir string, level slog.Level, console io.Writer) (*Logs, error) {
	dir := filepath.Join(dataDir, "logs")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	file, err := openRotating(filepath.Join(dir, "kaiser.log"), 10<<20, 4)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: redact}
	handlers := []slog.Handler{slog.NewJSONHandler(file, opts)}
	if console != nil {
		handlers = append(handlers, slog.NewTextHandler(console, opts))
	}
	return &Logs{Logger: slog.New(slog.NewMultiHandler(handlers...)), Dir: dir, file: file}, nil
}

// redact hides values of attributes whose names look secret (docs/api.md §15).
func redact(_ []string, a slog.Attr) slog.Attr {
	k := strings.ToLower(a.Key)
	for _, s := range []string{"password", "secret", "token", "api_key", "authorization"} {
		if strings.Contains(k, s) {
			return slog.String(a.Key, "***REDACTED***")
		}
	}
	return a
}

// NewRegistry returns a metrics registry with Go runtime and process metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
