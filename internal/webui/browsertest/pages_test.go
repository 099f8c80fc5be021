package browsertest

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kaiserhub/kaiser/internal/hub"
)

// signIn creates the admin through the API and logs the browser in.
func signIn(t *testing.T, p page, base string) rest {
	t.Helper()
	api := rest{tb: t, base: base}
	api.must("POST", "/api/v1/auth/setup", "", map[string]any{"username": "admin", "email": "admin@example.org", "password": adminPW}, 200)
	p.do("open the login", chromedp.Navigate(base+"/ui/login"))
	p.await("the login form", `!!document.getElementById('login-form')`, 20*time.Second)
	p.do("log in",
		chromedp.SendKeys(chromedp.CSS("#username"), "admin"),
		chromedp.SendKeys(chromedp.CSS("#password"), adminPW),
		chromedp.Click(chromedp.CSS("#login-form button[type=submit]")))
	p.await("the overview", `document.querySelector('main h1')?.textContent === 'Overview'`, 20*time.Second)
	return api
}

// The operator's and admin's pages in a real browser: a rule written in the
// form, saved, dry-run and backtested with its firings on the chart; an
// alert acknowledged and resolved; the audit log; a user created and given
// a role; system health with ingest, queues, database and jobs; the logs.
func TestOperatorPages(t *testing.T) {
	h := startHub(t, hub.Config{ActuatorSecond: second})
	base := "http://" + h.HTTPAddr()
	p := page{tb: t, ctx: browser(t, 1280, 900), shots: newScreens(t)}
	api := signIn(t, p, base)
	admin := api.login("admin", adminPW)
	const wait = 20 * time.Second

	// A node with a pH sensor and a pump, and a month of history.
	const espID = "ESP_0A0B0C"
	node(t, h, espID)
	p.await("the node pending", `!!document.querySelector('[data-approve="`+espID+`"]')`, wait)
	api.must("POST", "/api/v1/esp/devices/"+espID+"/approve", admin, map[string]any{}, 200)
	api.must("POST", "/api/v1/sensors/"+espID+"/34", admin, map[string]any{"sensor_type": "ph", "name": "pH"}, 200)
	api.must("POST", "/api/v1/actuators/"+espID+"/26", admin, map[string]any{"actuator_type": "pump", "name": "Dosing pump"}, 200)
	seedMonth(t, h, espID)

	// A stranger is rejected with a reason, in the page's dialog.
	node(t, h, "ESP_0D0E0F")
	p.await("the stranger pending", `!!document.querySelector('[data-reject="ESP_0D0E0F"]')`, wait)
	p.do("reject", chromedp.Click(chromedp.CSS(`[data-reject="ESP_0D0E0F"]`)))
	p.await("the reason dialog", `document.getElementById('dialog').open && !!document.getElementById('ask-input')`, wait)
	p.fill("#ask-input", "not ours")
	p.do("confirm", chromedp.Click(chromedp.CSS("#ask-ok")))
	p.await("the stranger gone", `!document.querySelector('[data-pending="ESP_0D0E0F"]')`, wait)
	if _, d := api.do("GET", "/api/v1/esp/devices/ESP_0D0E0F", admin, nil); d["status"] != "rejected" || d["rejection_reason"] != "not ours" {
		t.Fatalf("the stranger: %v / %v", d["status"], d["rejection_reason"])
	}

	// A rule in the form: pH above 6.5 → pump ON for 30 s.
	p.do("open the rules", chromedp.Click(chromedp.CSS(`nav a[href="/ui/rules"]`)))
	p.await("the rules page", `!!document.getElementById('new-rule')`, wait)
	p.do("new rule", chromedp.Click(chromedp.CSS("#new-rule")))
	p.await("the rule form", `!!document.getElementById('rule-name') && !!document.querySelector('[data-condition="0"] select')`, wait)
	p.do("name the rule", chromedp.SendKeys(chromedp.CSS("#rule-name"), "Dose when pH is high"))
	p.fill(`[data-condition="0"] input[type=number]`, "6.5")
	p.fill(`[data-action="0"] input[type=number]`, "30")
	p.shot("rule-form")
	p.do("look at the JSON", chromedp.Click(chromedp.CSS("#tab-json")))
	p.await("the JSON with the form's values", `(() => { const d = JSON.parse(document.getElementById('rule-json').value);
		return d.name === 'Dose when pH is high' && d.conditions[0].value === 6.5 && d.conditions[0].esp_id === '`+espID+`' && d.actions[0].duration_seconds === 30; })()`, wait)
	p.do("back to the form", chromedp.Click(chromedp.CSS("#tab-form")))
	p.do("save", chromedp.Click(chromedp.CSS("#rule-save")))
	p.await("the saved rule", `location.pathname.startsWith('/ui/rules/') && !location.pathname.endsWith('/new') && !!document.getElementById('rule-dry-run')`, wait)
	p.do("dry run", chromedp.Click(chromedp.CSS("#rule-dry-run")))
	p.await("the dry run", `document.getElementById('rule-results').textContent.includes('Dry run')`, wait)
	p.do("backtest", chromedp.Click(chromedp.CSS("#rule-backtest")))
	p.await("the backtest on the chart", `!!document.getElementById('backtest-summary') && Number(document.getElementById('rule-chart').dataset.markers) > 0 &&
		!!document.querySelector('#rule-chart canvas')`, 60*time.Second)
	p.shot("rule-backtest")

	// An emergency stop raises alerts; acknowledge and resolve one.
	api.must("POST", "/api/v1/actuators/emergency_stop", admin, map[string]any{"reason": "alert test"}, 200)
	p.do("open the alerts", chromedp.Click(chromedp.CSS(`nav a[href="/ui/alerts"]`)))
	p.await("an active alert", `!!document.querySelector('[data-ack]')`, wait)
	p.shot("alerts")
	alertID := eval[string](p, `document.querySelector('[data-ack]').dataset.ack`)
	p.press(`[data-ack="` + alertID + `"]`)
	p.await("acknowledged", `!document.querySelector('[data-ack="`+alertID+`"]')`, wait)
	p.do("the acknowledged tab", chromedp.Click(chromedp.CSS(`#main .tabs button:nth-child(2)`)))
	p.await("the alert acknowledged", `!!document.querySelector('[data-resolve="`+alertID+`"]')`, wait)
	p.press(`[data-resolve="` + alertID + `"]`)
	p.await("resolved", `!document.querySelector('[data-resolve="`+alertID+`"]')`, wait)
	p.do("the resolved tab", chromedp.Click(chromedp.CSS(`#main .tabs button:nth-child(3)`)))
	p.await("the alert resolved", `!!document.querySelector('[data-alert="`+alertID+`"]')`, wait)

	// The audit log names the stop and the logins.
	p.do("open the audit log", chromedp.Click(chromedp.CSS(`nav a[href="/ui/audit"]`)))
	p.await("audit entries", `document.getElementById('audit').textContent.includes('emergency_stop') && document.getElementById('audit').textContent.includes('login_success')`, wait)
	p.shot("audit")

	// Users: create an operator in the form, then make them a viewer.
	p.do("open users", chromedp.Click(chromedp.CSS(`nav a[href="/ui/users"]`)))
	p.await("the users page", `!!document.getElementById('user-form')`, wait)
	p.do("create a user",
		chromedp.SendKeys(chromedp.CSS(`#user-form input[name=username]`), "gardener"),
		chromedp.SendKeys(chromedp.CSS(`#user-form input[name=email]`), "gardener@example.org"),
		chromedp.SendKeys(chromedp.CSS(`#user-form input[name=password]`), "Garden-pass1"),
		chromedp.SetValue(chromedp.CSS(`#user-form select[name=role]`), "operator"),
		chromedp.Click(chromedp.CSS(`#user-form button[type=submit]`)))
	p.await("the new user", `document.querySelector('[data-user="gardener"] select')?.value === 'operator'`, wait)
	p.fill(`[data-user="gardener"] select`, "viewer")
	p.await("saved", `document.querySelector('main p.ok')?.textContent === 'Saved.'`, wait)
	_, users := api.do("GET", "/api/v1/users", admin, nil)
	for _, u := range users["users"].([]any) {
		if m := u.(map[string]any); m["username"] == "gardener" && m["role"] != "viewer" {
			t.Errorf("gardener's role is %v, want viewer", m["role"])
		}
	}
	p.shot("users")

	// System health and jobs; the logs.
	p.do("open health", chromedp.Click(chromedp.CSS(`nav a[href="/ui/health"]`)))
	p.await("health figures", `!!document.getElementById('ingest-rate') && document.getElementById('db-size').textContent.includes('MiB') &&
		document.getElementById('jobs').querySelectorAll('tbody tr').length > 0`, wait)
	p.shot("health")
	p.do("open logs", chromedp.Click(chromedp.CSS(`nav a[href="/ui/logs"]`)))
	// The keyboard reaches the emergency stop from the top of the page,
	// Enter opens it and Escape closes it again.
	eval[bool](p, `document.activeElement?.blur(), window.scrollTo(0, 0), true`)
	reached := false
	for i := 0; i < 25 && !reached; i++ {
		p.do("tab", chromedp.KeyEvent("\t"))
		reached = eval[bool](p, `document.activeElement?.id === 'estop'`)
	}
	if !reached {
		t.Fatal("Tab never reached the emergency stop button")
	}
	p.do("enter", chromedp.KeyEvent("\r"))
	p.await("the stop dialog", `document.getElementById('dialog').open`, wait)
	p.do("escape", chromedp.KeyEvent("\u001b"))
	p.await("the dialog closed", `!document.getElementById('dialog').open`, wait)
	p.await("log lines", `document.querySelectorAll("#logs tbody tr").length > 0 && document.querySelector("#logs").textContent.includes("kaiser hub ready")`, wait)
	p.shot("logs")
}

// A stored session whose access token the hub refuses (expired, or here
// malformed) is renewed with its refresh token on the next visit, so "stay
// signed in" holds across days; a refused refresh token ends at the login.
func TestSessionRenewedOnVisit(t *testing.T) {
	h := startHub(t, hub.Config{})
	base := "http://" + h.HTTPAddr()
	api := rest{tb: t, base: base}
	api.must("POST", "/api/v1/auth/setup", "", map[string]any{"username": "admin", "email": "admin@example.org", "password": adminPW}, 200)
	_, out := api.do("POST", "/api/v1/auth/login", "", map[string]any{"username": "admin", "password": adminPW, "remember_me": true})
	refresh := out["tokens"].(map[string]any)["refresh_token"].(string)
	p := page{tb: t, ctx: browser(t, 1280, 900), shots: newScreens(t)}
	const wait = 20 * time.Second

	p.do("an origin", chromedp.Navigate(base+"/api/v1/health"))
	eval[bool](p, `localStorage.setItem('kaiser.session', JSON.stringify({access: 'not-a-token', refresh: `+jsString(refresh)+`})), true`)
	p.do("visit", chromedp.Navigate(base+"/"))
	p.await("the overview, signed in", `document.querySelector('main h1')?.textContent === 'Overview' &&
		JSON.parse(localStorage.getItem('kaiser.session')).access !== 'not-a-token' && document.getElementById('live-state').classList.contains('up')`, wait)

	eval[bool](p, `localStorage.setItem('kaiser.session', JSON.stringify({access: 'not-a-token', refresh: 'nor-this'})), true`)
	p.do("visit again", chromedp.Reload())
	p.await("the login", `!!document.getElementById('login-form') && localStorage.getItem('kaiser.session') === null`, wait)
}
