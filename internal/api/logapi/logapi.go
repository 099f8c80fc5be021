// Package logapi serves the hub's own log files to admins (docs/api.md §15)
// under /api/v1/logs, with the /api/v1/debug/logs aliases: the listing of the
// files, and their entries filtered and paged newest first. A file is named
// only by a bare name from the listing; internal/observe opens it inside the
// log directory, so the routes never build a path from the request.
package logapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/observe"
)

// logs is what the routes need from the hub's logs.
type logs interface {
	LogFiles() ([]observe.LogFile, error)
	QueryLogs(ctx context.Context, q observe.LogQuery) (observe.LogPage, error)
}

var _ logs = (*observe.Logs)(nil)

// server is what the routes need from the HTTP core.
type server interface {
	Register(rt api.Route, h api.Authed)
	Internal(w http.ResponseWriter, r *http.Request, err error)
}

var _ server = (*api.Server)(nil)

// Deps are what the log routes need from the hub.
type Deps struct {
	Logs logs
	// Dir is the log directory; only its name is shown.
	Dir string
	// MaxBytes bounds the log data one query reads (default 50 MiB).
	MaxBytes int64
}

type handlers struct {
	srv  server
	deps Deps
}

// Register adds the log routes and their aliases to srv.
func Register(srv server, d Deps) {
	if d.MaxBytes <= 0 {
		d.MaxBytes = observe.DefaultMaxLogBytes
	}
	h := &handlers{srv: srv, deps: d}
	const primary = "/api/v1/logs"
	for _, base := range []string{primary, "/api/v1/debug/logs"} {
		alias, suffix := base != primary, ""
		if alias {
			suffix = " (alias of " + primary + ")"
		}
		h.admin("GET", base, "The hub's log entries, filtered, newest first"+suffix, h.query, alias, logsResponse{})
		if alias {
			suffix = " (alias of " + primary + "/files)"
		}
		h.admin("GET", base+"/files", "The hub's log files"+suffix, h.files, alias, filesResponse{})
	}
}

func (h *handlers) admin(method, path, summary string, fn api.Authed, deprecated bool, response any) {
	h.srv.Register(api.Route{
		Method:     method,
		Path:       path,
		MinRole:    auth.RoleAdmin,
		Summary:    summary,
		Tag:        "logs",
		Deprecated: deprecated,
		Response:   response,
	}, fn)
}

type logFile struct {
	Name      string  `json:"name"`
	SizeBytes int64   `json:"size_bytes"`
	SizeHuman string  `json:"size_human"`
	Modified  *string `json:"modified"`
	IsCurrent bool    `json:"is_current"`
}

type filesResponse struct {
	Success bool      `json:"success"`
	Files   []logFile `json:"files"`
	// LogDirectory is the directory's name only, never its path.
	LogDirectory string `json:"log_directory"`
}

func (h *handlers) files(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	files, err := h.deps.Logs.LogFiles()
	if err != nil {
		h.srv.Internal(w, r, err)
		return
	}
	out := filesResponse{Success: true, Files: []logFile{}, LogDirectory: filepath.Base(h.deps.Dir)}
	for _, f := range files {
		out.Files = append(out.Files, logFile{
			Name:      f.Name,
			SizeBytes: f.Size,
			SizeHuman: humanSize(f.Size),
			Modified:  api.Timestamp(f.Modified),
			IsCurrent: f.Current,
		})
	}
	api.WriteJSON(w, http.StatusOK, out)
}

// humanSize is n bytes in binary units with one decimal: 512 B, 1.5 KiB, 10.0 MiB.
func humanSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n)/1024, "KiB"
	for _, u := range []string{"MiB", "GiB"} {
		if v < 1024 {
			break
		}
		v, unit = v/1024, u
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

type logEntry struct {
	Timestamp  *string        `json:"timestamp"`
	Level      string         `json:"level"`
	Message    string         `json:"message"`
	Component  *string        `json:"component"`
	RequestID  *string        `json:"request_id"`
	Error      *string        `json:"error"`
	Attributes map[string]any `json:"attributes"`
	File       string         `json:"file"`
}

type logsResponse struct {
	Success      bool       `json:"success"`
	Logs         []logEntry `json:"logs"`
	TotalCount   int        `json:"total_count"`
	Page         int        `json:"page"`
	PageSize     int        `json:"page_size"`
	HasMore      bool       `json:"has_more"`
	Truncated    bool       `json:"truncated"`
	SkippedLines int        `json:"skipped_lines"`
}

// query answers GET /logs: the query's parameters are validated first
// (422), then the file name (400 INVALID_LOG_FILE).
func (h *handlers) query(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q := api.NewQuery(r)
	lq := observe.LogQuery{
		Component: q.Str("component", 200),
		Search:    q.Str("search", 200),
		Start:     q.Time("start_time"),
		End:       q.Time("end_time"),
		RequestID: q.Str("request_id", 128),
		File:      r.URL.Query().Get("file"),
		MaxBytes:  h.deps.MaxBytes,
	}
	if lq.Component == "" {
		lq.Component = q.Str("module", 200)
	}
	if q.Set("level") {
		lvl, err := observe.ParseLevel(q.Str("level", 20))
		if err != nil {
			q.Fail("level", "must be one of DEBUG, INFO, WARN (WARNING), ERROR (CRITICAL)", "enum")
		}
		lq.MinLevel = &lvl
	}
	page, size := q.Int("page", 1, 1, 1<<30), q.Int("page_size", 100, 1, 1000)
	if q.Done(w, r) {
		return
	}
	if q.Set("file") && !observe.BareName(lq.File) {
		invalidFile(w, r)
		return
	}

	lq.Offset, lq.Limit = (page-1)*size, size
	res, err := h.deps.Logs.QueryLogs(r.Context(), lq)
	switch {
	case errors.Is(err, observe.ErrInvalidLogFile):
		invalidFile(w, r)
		return
	case err != nil:
		h.srv.Internal(w, r, err)
		return
	}
	out := logsResponse{
		Success:      true,
		Logs:         make([]logEntry, 0, len(res.Entries)),
		TotalCount:   res.Total,
		Page:         page,
		PageSize:     size,
		HasMore:      lq.Offset+len(res.Entries) < res.Total,
		Truncated:    res.Truncated,
		SkippedLines: res.Skipped,
	}
	for _, e := range res.Entries {
		out.Logs = append(out.Logs, entryJSON(e))
	}
	api.WriteJSON(w, http.StatusOK, out)
}

func entryJSON(e observe.LogEntry) logEntry {
	attrs := e.Attributes
	if attrs == nil {
		attrs = map[string]any{}
	}
	return logEntry{
		Timestamp:  api.Timestamp(e.Time),
		Level:      e.Level,
		Message:    e.Message,
		Component:  api.NullString(e.Component),
		RequestID:  api.NullString(e.RequestID),
		Error:      api.NullString(e.Error),
		Attributes: attrs,
		File:       e.File,
	}
}

// invalidFile answers a file name that is not a listed log file; the name
// is not echoed, so a crafted one cannot put text into the reply.
func invalidFile(w http.ResponseWriter, r *http.Request) {
	api.WriteError(w, r, http.StatusBadRequest, "INVALID_LOG_FILE",
		"file must be the bare name of a log file listed by /logs/files", nil)
}
