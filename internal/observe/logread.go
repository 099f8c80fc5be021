package observe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// This file reads the hub's own log files back for the logs routes
// (docs/api.md §15): it lists them, and filters and pages their lines
// newest first. A file is only ever opened by a name taken from the
// listing, inside the log directory (os.Root), so no user input becomes a
// path.

// logName is the current log file; rotations are logName.1 … logName.N.
const logName = "kaiser.log"

var ownLogName = regexp.MustCompile(`^kaiser\.log(\.[1-9][0-9]{0,2})?$`)

// DefaultMaxLogBytes bounds the log data one query reads (docs/api.md §15).
const DefaultMaxLogBytes = 50 << 20

// Errors of the log queries.
var (
	// ErrInvalidLogFile: the name is not a bare name of a listed log file.
	ErrInvalidLogFile = errors.New("not a log file of the hub")
)

// LogFile is one of the hub's log files.
type LogFile struct {
	Name     string
	Size     int64
	Modified time.Time
	Current  bool
	info     fs.FileInfo
}

// LogFiles lists the hub's log files, newest first: the current file, then
// its rotations in order. Symbolic links and other files in the directory
// are not the hub's and are left out.
func (l *Logs) LogFiles() ([]LogFile, error) {
	entries, err := os.ReadDir(l.Dir)
	if err != nil {
		return nil, fmt.Errorf("list log files: %w", err)
	}
	var out []LogFile
	for _, e := range entries {
		if !e.Type().IsRegular() || !ownLogName.MatchString(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // rotated away meanwhile
		}
		out = append(out, LogFile{
			Name:     e.Name(),
			Size:     info.Size(),
			Modified: info.ModTime().UTC(),
			Current:  e.Name() == logName,
			info:     info,
		})
	}
	sort.Slice(out, func(i, j int) bool { return rotation(out[i].Name) < rotation(out[j].Name) })
	return out, nil
}

// rotation is a file's place in the rotation: 0 for the current file.
func rotation(name string) int {
	_, n, _ := strings.Cut(name, logName+".")
	i, _ := strconv.Atoi(n)
	return i
}

// BareName reports whether name can name a file of the log directory at
// all: not empty, no path separator, no "..", no NUL, not absolute.
func BareName(name string) bool {
	return name != "" && !strings.ContainsAny(name, "/\\\x00") && !strings.Contains(name, "..") &&
		!filepath.IsAbs(name) && filepath.VolumeName(name) == ""
}

// LogQuery selects log entries; zero fields do not restrict.
type LogQuery struct {
	// File is one listed file's name; empty reads every file, newest first.
	File      string
	MinLevel  *slog.Level
	Component string // prefix of the component attribute
	Search    string // case-insensitive substring of msg or error
	Start     time.Time
	End       time.Time
	RequestID string
	// Offset and Limit page the matching entries, newest first.
	Offset, Limit int
	// MaxBytes bounds the data read (default DefaultMaxLogBytes).
	MaxBytes int64
}

// LogEntry is one log line. Strings equal to or under the data directory
// show it as "<data-dir>", and a source file by its base name, so no
// absolute path leaves the hub (docs/api.md §15).
type LogEntry struct {
	Time       time.Time
	Level      string
	Message    string
	Component  string
	RequestID  string
	Error      string
	Attributes map[string]any
	File       string
}

// LogPage is one page of matching entries.
type LogPage struct {
	Entries []LogEntry
	// Total is the number of matching entries in the data read.
	Total int
	// Truncated: the read stopped at MaxBytes before the oldest line.
	Truncated bool
	// Skipped counts lines that are not JSON objects.
	Skipped int
}

// lineRef is where a matching line is: file index, offset and length.
type lineRef struct {
	file     int
	off, len int64
}

// QueryLogs filters and pages the log entries, newest first.
func (l *Logs) QueryLogs(ctx context.Context, q LogQuery) (LogPage, error) {
	files, err := l.LogFiles()
	if err != nil {
		return LogPage{}, err
	}
	if q.File != "" {
		files, err = pick(files, q.File)
		if err != nil {
			return LogPage{}, err
		}
	}
	if q.MaxBytes <= 0 {
		q.MaxBytes = DefaultMaxLogBytes
	}
	root, err := os.OpenRoot(l.Dir)
	if err != nil {
		return LogPage{}, fmt.Errorf("open log directory: %w", err)
	}
	defer root.Close()

	var page LogPage
	var refs []lineRef
	var open []listedFile
	defer func() {
		for _, f := range open {
			f.Close()
		}
	}()
	budget := q.MaxBytes
	for _, lf := range files {
		if budget <= 0 {
			page.Truncated = true
			break
		}
		f, size, err := openListed(root, lf)
		if err != nil {
			continue // rotated or replaced since the listing
		}
		open = append(open, listedFile{File: f, name: lf.Name})
		matched, read, skipped, cut, err := scan(ctx, f, size, budget, q)
		if err != nil {
			return LogPage{}, err
		}
		budget -= read
		page.Skipped += skipped
		page.Truncated = page.Truncated || cut
		// Newest first: the file's last matching line comes first.
		for i := len(matched) - 1; i >= 0; i-- {
			matched[i].file = len(open) - 1
			refs = append(refs, matched[i])
		}
	}

	page.Total = len(refs)
	from, to := min(q.Offset, len(refs)), min(q.Offset+max(q.Limit, 0), len(refs))
	dataDir := filepath.Dir(l.Dir)
	for _, ref := range refs[from:to] {
		buf := make([]byte, ref.len)
		if _, err := open[ref.file].ReadAt(buf, ref.off); err != nil {
			return LogPage{}, fmt.Errorf("read log line: %w", err)
		}
		e, ok := parseEntry(buf, dataDir)
		if !ok {
			continue // cannot happen: the line parsed in the scan
		}
		e.File = open[ref.file].name
		page.Entries = append(page.Entries, e)
	}
	return page, nil
}

// pick is the listed file named name, or ErrInvalidLogFile.
func pick(files []LogFile, name string) ([]LogFile, error) {
	if !BareName(name) {
		return nil, ErrInvalidLogFile
	}
	for _, f := range files {
		if f.Name == name {
			return []LogFile{f}, nil
		}
	}
	return nil, ErrInvalidLogFile
}

// openListed opens a listed file inside the log directory and checks that
// it is still the file listed (a regular file, not a link put there since);
// size is its length now, the end of the read even while the hub appends.
func openListed(root *os.Root, lf LogFile) (*os.File, int64, error) {
	f, err := root.Open(lf.Name)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || !os.SameFile(st, lf.info) {
		f.Close()
		return nil, 0, ErrInvalidLogFile
	}
	return f, st.Size(), nil
}

// listedFile is an opened log file with its name in the listing.
type listedFile struct {
	*os.File
	name string
}

// filterFields are what the scan reads of each line.
type filterFields struct {
	Time      time.Time       `json:"time"`
	Level     string          `json:"level"`
	Msg       string          `json:"msg"`
	Component string          `json:"component"`
	RequestID string          `json:"request_id"`
	Error     json.RawMessage `json:"error"`
}

// maxLine is the longest line read; longer ones are skipped as bad lines.
const maxLine = 1 << 20

// scan reads the last budget bytes of the first size bytes of f and returns
// the matching lines in file order, the bytes read, the bad lines and
// whether it started after the file's first line.
func scan(ctx context.Context, f *os.File, size, budget int64, q LogQuery) (
	matched []lineRef, read int64, skipped int, cut bool, err error,
) {
	start := max(size-budget, 0)
	r := bufio.NewReaderSize(io.NewSectionReader(f, start, size-start), 64<<10)
	off := start
	cut = start > 0
	if cut && !lineStart(f, start) {
		// The budget ends inside a line: begin at the next whole one.
		partial, err := r.ReadBytes('\n')
		off += int64(len(partial))
		if err != nil {
			return nil, size - start, 0, cut, nil
		}
	}
	search := strings.ToLower(q.Search)
	for n := 0; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return nil, 0, 0, cut, ctx.Err()
		}
		line, consumed, tooLong, err := readLine(r)
		lineOff := off
		off += consumed
		if tooLong || len(bytes.TrimSpace(line)) > 0 {
			var ff filterFields
			switch {
			case tooLong || json.Unmarshal(line, &ff) != nil:
				skipped++
			case q.matches(ff, search):
				matched = append(matched, lineRef{off: lineOff, len: int64(len(line))})
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, 0, cut, fmt.Errorf("read log file: %w", err)
		}
	}
	return matched, size - start, skipped, cut, nil
}

// lineStart reports whether a line begins at off (the byte before is a newline).
func lineStart(f *os.File, off int64) bool {
	b := make([]byte, 1)
	_, err := f.ReadAt(b, off-1)
	return err == nil && b[0] == '\n'
}

// readLine reads one line without its newline and the bytes it took; a
// line longer than maxLine is consumed and reported as too long.
func readLine(r *bufio.Reader) (line []byte, consumed int64, tooLong bool, err error) {
	for {
		chunk, err := r.ReadSlice('\n')
		consumed += int64(len(chunk))
		switch {
		case tooLong:
		case len(line)+len(chunk) > maxLine:
			tooLong, line = true, nil
		default:
			line = append(line, chunk...) // a copy: ReadSlice reuses its buffer
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return bytes.TrimSuffix(line, []byte("\n")), consumed, tooLong, err
		}
	}
}

func (q LogQuery) matches(ff filterFields, search string) bool {
	if q.MinLevel != nil {
		lvl, err := ParseLevel(ff.Level)
		if err != nil || lvl < *q.MinLevel {
			return false
		}
	}
	switch {
	case q.Component != "" && !strings.HasPrefix(ff.Component, q.Component):
		return false
	case q.RequestID != "" && ff.RequestID != q.RequestID:
		return false
	case !q.Start.IsZero() && ff.Time.Before(q.Start):
		return false
	case !q.End.IsZero() && ff.Time.After(q.End):
		return false
	}
	if search == "" {
		return true
	}
	return strings.Contains(strings.ToLower(ff.Msg), search) ||
		strings.Contains(strings.ToLower(errorText(ff.Error)), search)
}

// errorText is an error attribute as text: a string as is, else its JSON.
func errorText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// parseEntry decodes a line into an entry, hiding the data directory.
func parseEntry(line []byte, dataDir string) (LogEntry, bool) {
	var attrs map[string]any
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if dec.Decode(&attrs) != nil || attrs == nil {
		return LogEntry{}, false
	}
	scrub := pathScrubber(dataDir)
	take := func(key string) string {
		v, _ := attrs[key].(string)
		delete(attrs, key)
		return scrub(v)
	}
	e := LogEntry{
		Level:     take("level"),
		Message:   take("msg"),
		Component: take("component"),
		RequestID: take("request_id"),
	}
	e.Time, _ = time.Parse(time.RFC3339Nano, take("time"))
	switch v := attrs["error"].(type) {
	case string:
		e.Error = scrub(v)
		delete(attrs, "error")
	case nil:
	default:
		b, _ := json.Marshal(v)
		e.Error = scrub(string(b))
		delete(attrs, "error")
	}
	if src, ok := attrs["source"].(map[string]any); ok {
		if file, ok := src["file"].(string); ok {
			src["file"] = filepath.Base(file)
		}
	}
	e.Attributes = scrubValues(attrs, scrub).(map[string]any)
	return e, true
}

// pathScrubber replaces the data directory in a string by "<data-dir>".
func pathScrubber(dataDir string) func(string) string {
	if dataDir == "" || dataDir == "." || dataDir == string(filepath.Separator) {
		return func(s string) string { return s }
	}
	return func(s string) string { return strings.ReplaceAll(s, dataDir, "<data-dir>") }
}

func scrubValues(v any, scrub func(string) string) any {
	switch x := v.(type) {
	case string:
		return scrub(x)
	case map[string]any:
		for k, c := range x {
			x[k] = scrubValues(c, scrub)
		}
	case []any:
		for i, c := range x {
			x[i] = scrubValues(c, scrub)
		}
	}
	return v
}
