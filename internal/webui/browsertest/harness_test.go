package browsertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kaiserhub/kaiser/internal/hub"
)

// chromium finds the browser: $KAISER_CHROMIUM, else Debian's names. A
// missing browser skips the test, except under CI, where it must be there.
func chromium(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("KAISER_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		tb.Fatal("no Chromium found, and CI=true needs it (apt-get install -y chromium)")
	}
	tb.Skip("no Chromium found: install it with `apt-get install -y chromium` to run the browser tests")
	return ""
}

// browser starts a headless Chromium with a fresh profile; the context runs
// actions in its one tab.
func browser(tb testing.TB, width, height int) context.Context {
	tb.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(tb)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(tb.TempDir()),
		chromedp.WindowSize(width, height),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	tb.Cleanup(func() { cancel(); cancelA() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		tb.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// screens is where the screenshots go: $KAISER_SCREENSHOTS, else a new
// temporary folder; either way the test prints it.
type screens struct {
	tb  testing.TB
	dir string
	n   int
}

func newScreens(tb testing.TB) *screens {
	tb.Helper()
	dir := os.Getenv("KAISER_SCREENSHOTS")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "kaiser-screens-"); err != nil {
			tb.Fatal(err)
		}
	}
	dir = filepath.Join(dir, strings.ReplaceAll(tb.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("screenshots: %s", dir)
	fmt.Fprintf(os.Stderr, "screenshots of %s: %s\n", tb.Name(), dir)
	return &screens{tb: tb, dir: dir}
}

func (s *screens) shot(ctx context.Context, name string) {
	s.tb.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		s.tb.Fatalf("screenshot %s: %v", name, err)
	}
	s.n++
	if err := os.WriteFile(filepath.Join(s.dir, fmt.Sprintf("%02d-%s.png", s.n, name)), png, 0o644); err != nil {
		s.tb.Fatal(err)
	}
}

// startHub runs a hub in this process on loopback ports.
func startHub(tb testing.TB, cfg hub.Config) *hub.Hub {
	tb.Helper()
	cfg.DataDir = tb.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.MQTTAddr = "127.0.0.1:0"
	cfg.BcryptCost = 4
	cfg.LoginLimit = 10000
	cfg.DiscoveryPerMin = 10000
	h, err := hub.Start(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := h.Stop(context.Background()); err != nil {
			tb.Errorf("stop hub: %v", err)
		}
	})
	return h
}

// rest is a JSON client for the steps a test does outside the browser.
type rest struct {
	tb   testing.TB
	base string
}

func (c rest) do(method, path, token string, body any) (int, map[string]any) {
	c.tb.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (c rest) must(method, path, token string, body any, want int) map[string]any {
	c.tb.Helper()
	code, out := c.do(method, path, token, body)
	if code != want {
		c.tb.Fatalf("%s %s: %d, want %d: %v", method, path, code, want, out)
	}
	return out
}

func (c rest) login(user, pw string) string {
	c.tb.Helper()
	out := c.must("POST", "/api/v1/auth/login", "", map[string]any{"username": user, "password": pw}, 200)
	return out["tokens"].(map[string]any)["access_token"].(string)
}

// page is a browser tab under test with its screenshots.
type page struct {
	tb    testing.TB
	ctx   context.Context
	shots *screens
}

// await polls a JavaScript predicate in the page until it is true (the
// page's own state is the event awaited; nothing sleeps). On a timeout it
// saves a screenshot and prints the page's text.
func (p page) await(what, expr string, timeout time.Duration) {
	p.tb.Helper()
	// An element not drawn yet is "not yet", not a failure.
	guarded := "(() => { try { return !!(" + expr + "); } catch (e) { return false; } })()"
	if _, err := chromedp.Run(p.ctx, chromedp.Poll[bool](guarded, chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(timeout))); err != nil {
		text, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.body.innerText`))
		if p.shots != nil {
			p.shots.shot(p.ctx, "failed")
		}
		p.tb.Fatalf("%s: %v\npage text:\n%s", what, err, text)
	}
}

func (p page) shot(name string) { p.tb.Helper(); p.shots.shot(p.ctx, name) }

func (p page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.tb.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.tb.Fatalf("%s: %v", what, err)
	}
}

// press clicks the element in one step inside the page: for lists that the
// live feed redraws, where a node found by one protocol call may be gone by
// the next.
func (p page) press(selector string) {
	p.tb.Helper()
	if !eval[bool](p, `(() => { const el = document.querySelector(`+jsString(selector)+`); if (!el) return false; el.click(); return true; })()`) {
		p.tb.Fatalf("press %s: no such element", selector)
	}
}

// fill replaces a form control's value as a user's edit does: the value,
// then the input and change events the page listens to.
func (p page) fill(selector, value string) {
	p.tb.Helper()
	expr := `(() => { const el = document.querySelector(` + jsString(selector) + `); if (!el) return false;
		el.focus(); el.value = ` + jsString(value) + `;
		el.dispatchEvent(new Event('input', {bubbles: true})); el.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`
	if !eval[bool](p, expr) {
		p.tb.Fatalf("fill %s: no such element", selector)
	}
}

func eval[T any](p page, expr string) T {
	p.tb.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.tb.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}
