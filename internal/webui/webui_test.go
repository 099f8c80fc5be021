package webui

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kaiserhub/kaiser/internal/api"
)

func serve(t *testing.T) *httptest.Server {
	t.Helper()
	d, err := New()
	if err != nil {
		t.Fatal(err)
	}
	s := api.New(api.Deps{Version: "test"})
	Register(s, d)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	// No transparent decompression: the test reads what went over the wire.
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		if r, err = gzip.NewReader(resp.Body); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := io.ReadAll(r)
	return resp, string(b)
}

const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

// GET / answers a browser with the dashboard and everyone else with the
// JSON service information (docs/api.md §3).
func TestRootNegotiates(t *testing.T) {
	srv := serve(t)
	resp, body := get(t, srv.URL+"/", map[string]string{"Accept": browserAccept, "Accept-Encoding": "gzip"})
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		resp.Header.Get("Content-Encoding") != "gzip" || !strings.Contains(body, `<script type="module" src="/ui/js/app.js">`) {
		t.Fatalf("browser: %d %v\n%.200s", resp.StatusCode, resp.Header, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	for _, accept := range []string{"", "*/*", "application/json"} {
		resp, body := get(t, srv.URL+"/", map[string]string{"Accept": accept})
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") ||
			!strings.Contains(body, `"service":"kaiser"`) {
			t.Errorf("Accept %q: %d %s", accept, resp.StatusCode, body)
		}
		if !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Accept") {
			t.Errorf("Accept %q: no Vary: Accept", accept)
		}
	}
}

// The page starts in the browser's language.
func TestPageLanguage(t *testing.T) {
	srv := serve(t)
	for header, want := range map[string]string{
		"de-DE,de;q=0.9,en;q=0.8": `<html lang="de"`,
		"fr-FR,de;q=0.5":          `<html lang="de"`,
		"en-GB":                   `<html lang="en"`,
		"":                        `<html lang="en"`,
	} {
		_, body := get(t, srv.URL+"/ui/", map[string]string{"Accept-Language": header})
		if !strings.Contains(body, want) {
			t.Errorf("Accept-Language %q: want %s in %.80s", header, want, body)
		}
	}
}

// Files below /ui/ are served with their types and validators, client
// routes get the page, and anything else with an extension is a 404 in
// the API's error shape.
func TestUITree(t *testing.T) {
	srv := serve(t)
	resp, body := get(t, srv.URL+"/ui/js/app.js", map[string]string{"Accept-Encoding": "gzip"})
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") ||
		resp.Header.Get("Content-Encoding") != "gzip" || !strings.Contains(body, "import") {
		t.Fatalf("app.js: %d %v", resp.StatusCode, resp.Header)
	}
	etag := resp.Header.Get("ETag")
	if again, _ := get(t, srv.URL+"/ui/js/app.js", map[string]string{"If-None-Match": etag}); again.StatusCode != 304 {
		t.Errorf("revalidation: %d, want 304", again.StatusCode)
	}
	if plain, body := get(t, srv.URL+"/ui/app.css", nil); plain.Header.Get("Content-Encoding") != "" ||
		!strings.HasPrefix(plain.Header.Get("Content-Type"), "text/css") || !strings.Contains(body, ":root") {
		t.Errorf("app.css without gzip: %v", plain.Header)
	}
	for _, route := range []string{"/ui", "/ui/", "/ui/devices/ESP_A1B2C3", "/ui/rules/new/"} {
		resp, body := get(t, srv.URL+route, nil)
		if resp.StatusCode != 200 || !strings.Contains(body, "/ui/js/app.js") {
			t.Errorf("%s: %d", route, resp.StatusCode)
		}
	}
	for _, missing := range []string{"/ui/nope.js", "/ui/js/webui.go", "/ui/index.html.bak"} {
		resp, body := get(t, srv.URL+missing, nil)
		if resp.StatusCode != 404 || !strings.Contains(body, `"NOT_FOUND"`) {
			t.Errorf("%s: %d %s", missing, resp.StatusCode, body)
		}
	}
	if resp, _ := get(t, srv.URL+"/ui/vendor/uplot/uPlot.esm.js", nil); resp.StatusCode != 200 {
		t.Errorf("uPlot: %d", resp.StatusCode)
	}
}

// The whole embedded tree, gzipped as served, stays inside the first-load
// budget of 250 KB (issue 12); the first load itself is smaller, since
// uPlot and the views load when used (docs/BENCHMARKS.md).
func TestCompressedSizeBudget(t *testing.T) {
	d, err := New()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for name, sizes := range d.Files() {
		if strings.HasSuffix(name, ".js") || strings.HasSuffix(name, ".css") || strings.HasSuffix(name, ".html") {
			total += sizes[1]
		}
	}
	if total > 250_000 {
		t.Fatalf("the dashboard's files are %d bytes gzipped, over the 250 KB budget", total)
	}
	t.Logf("all dashboard files: %d bytes gzipped", total)
}

func TestLanguage(t *testing.T) {
	for header, want := range map[string]string{"de": "de", "DE-at": "de", "en-US,de": "en", "it, fr": "en", "": "en"} {
		if got := Language(header); got != want {
			t.Errorf("Language(%q) = %s, want %s", header, got, want)
		}
	}
}
