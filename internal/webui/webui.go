// Package webui is the dashboard: the grower's and operator's web UI,
// embedded in the binary and served by the hub at / (to browsers) and under
// /ui/ (docs/api.md §3). The UI is plain ES modules and hand-written CSS
// with no build step (docs/decisions/0022-dashboard.md); this package only
// serves the files: each compressed once at start, with an ETag, and the
// page itself for every client route below /ui/.
package webui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/kaiserhub/kaiser/internal/api"
)

//go:embed static
var static embed.FS

// asset is one file as served: its bytes, gzipped bytes and validator.
type asset struct {
	body, gz    []byte
	contentType string
	etag        string
}

// Dashboard serves the embedded UI.
type Dashboard struct {
	files map[string]*asset // by path below static/, e.g. "js/app.js"
	// pages are index.html in each language the page can start in, so that
	// the first paint already has the browser's language (the UI can switch
	// later, docs/decisions/0022-dashboard.md).
	pages map[string]*asset
}

// Languages the UI speaks, the first being the default.
var Languages = []string{"en", "de"}

// New reads and compresses the embedded files.
func New() (*Dashboard, error) {
	d := &Dashboard{files: map[string]*asset{}, pages: map[string]*asset{}}
	err := fs.WalkDir(static, "static", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return fmt.Errorf("webui: read %s: %w", p, err)
		}
		name := strings.TrimPrefix(p, "static/")
		a, err := newAsset(name, b)
		if err != nil {
			return err
		}
		d.files[name] = a
		return nil
	})
	if err != nil {
		return nil, err
	}
	index, ok := d.files["index.html"]
	if !ok {
		return nil, fmt.Errorf("webui: no index.html embedded")
	}
	for _, lang := range Languages {
		page := bytes.Replace(index.body, []byte(`<html lang="en"`), []byte(`<html lang="`+lang+`"`), 1)
		if d.pages[lang], err = newAsset("index.html", page); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func newAsset(name string, b []byte) (*asset, error) {
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if _, err := zw.Write(b); err != nil {
		return nil, fmt.Errorf("webui: compress %s: %w", name, err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("webui: compress %s: %w", name, err)
	}
	sum := sha256.Sum256(b)
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	if strings.HasSuffix(name, ".md") || name == "vendor/uplot/LICENSE" {
		ct = "text/plain; charset=utf-8"
	}
	return &asset{body: b, gz: gz.Bytes(), contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}, nil
}

// Register serves the UI: GET / to browsers and GET /ui/{path}.
func Register(s *api.Server, d *Dashboard) {
	s.SetDashboard(http.HandlerFunc(d.servePage))
	s.Group("dashboard").Public("GET", "/ui/{path}", "The dashboard: its files and client routes", d.serveUI, api.Subtree())
}

// serveUI answers a file below /ui/, or the page for a client route (a path
// without a file extension). A missing file is 404 in the API's error shape.
func (d *Dashboard) serveUI(w http.ResponseWriter, r *http.Request) {
	name := strings.Trim(r.PathValue("path"), "/")
	if a, ok := d.files[name]; ok && name != "index.html" {
		// Assets change with the binary; the ETag makes a reload cheap.
		w.Header().Set("Cache-Control", "no-cache")
		d.write(w, r, a)
		return
	}
	if path.Ext(name) != "" {
		api.WriteError(w, r, http.StatusNotFound, "NOT_FOUND", "route "+r.URL.Path+" not found", nil)
		return
	}
	d.servePage(w, r)
}

// servePage answers the page in the language the browser prefers.
func (d *Dashboard) servePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Add("Vary", "Accept-Language")
	// The page loads only its own files and talks only to this hub.
	w.Header().Set("Content-Security-Policy",
		"default-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; "+
			"base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
	w.Header().Set("Referrer-Policy", "no-referrer")
	d.write(w, r, d.pages[Language(r.Header.Get("Accept-Language"))])
}

func (d *Dashboard) write(w http.ResponseWriter, r *http.Request, a *asset) {
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("ETag", a.etag)
	h.Add("Vary", "Accept-Encoding")
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.body
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		body = a.gz
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			continue
		}
		k, v, _ := strings.Cut(strings.ReplaceAll(params, " ", ""), "=")
		q, err := strconv.ParseFloat(v, 64)
		return !strings.EqualFold(k, "q") || err != nil || q > 0
	}
	return false
}

// Language picks the UI language for an Accept-Language header: the first
// listed language the UI speaks, else English. Weights are not sorted:
// browsers list languages in the user's order.
func Language(header string) string {
	for _, part := range strings.Split(header, ",") {
		tag, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		primary, _, _ := strings.Cut(strings.ToLower(tag), "-")
		for _, l := range Languages {
			if primary == l {
				return l
			}
		}
	}
	return Languages[0]
}

// Files lists the embedded files with their plain and gzipped sizes, for the
// first-load budget (docs/BENCHMARKS.md).
func (d *Dashboard) Files() map[string][2]int {
	out := map[string][2]int{}
	for name, a := range d.files {
		out[name] = [2]int{len(a.body), len(a.gz)}
	}
	return out
}
