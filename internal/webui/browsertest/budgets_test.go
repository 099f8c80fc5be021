package browsertest

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kaiserhub/kaiser/internal/hub"
)

// The UI budgets of issue 12, measured in headless Chromium with the
// browser's own clocks and byte counts (Resource Timing, performance
// marks the views set); recorded in docs/BENCHMARKS.md. They are
// measurements, not assertions: run with
//
//	go test -run '^$' -bench . -benchtime 1x ./internal/webui/browsertest/

// session signs the browser in without the login page, so the next
// navigation is a first load with a cold cache.
func session(b *testing.B, p page, base string, api rest) {
	b.Helper()
	_, out := api.do("POST", "/api/v1/auth/login", "", map[string]any{"username": "admin", "password": adminPW})
	tok := out["tokens"].(map[string]any)
	s, _ := json.Marshal(map[string]string{"access": tok["access_token"].(string), "refresh": tok["refresh_token"].(string)})
	p.do("an origin for localStorage", chromedp.Navigate(base+"/api/v1/health"))
	eval[bool](p, `localStorage.setItem('kaiser.session', `+jsString(string(s))+`), localStorage.setItem('kaiser.lang', 'en'), true`)
}

// freshTab is a new browser, signed in, whose cache is still empty.
func freshTab(b *testing.B, h *hub.Hub, api rest) (page, string) {
	b.Helper()
	base := "http://" + h.HTTPAddr()
	p := page{tb: b, ctx: browser(b, 1280, 900)}
	session(b, p, base, api)
	return p, base
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// fleet starts a hub with n approved devices in 10 zones, each with a pH
// sensor and a pump configured.
func fleet(b testing.TB, n int) (*hub.Hub, rest) {
	b.Helper()
	h := startHub(b, hub.Config{})
	api := rest{tb: b, base: "http://" + h.HTTPAddr()}
	api.must("POST", "/api/v1/auth/setup", "", map[string]any{"username": "admin", "email": "admin@example.org", "password": adminPW}, 200)
	admin := api.login("admin", adminPW)
	for z := 0; z < 10; z++ {
		api.must("POST", "/api/v1/zones", admin, map[string]any{"zone_id": fmt.Sprintf("bay-%d", z), "name": fmt.Sprintf("Bay %d", z)}, 201)
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("ESP_%06X", i)
		api.must("POST", "/api/v1/esp/devices", admin, map[string]any{"device_id": id, "name": fmt.Sprintf("Bench %d", i),
			"zone_id": fmt.Sprintf("bay-%d", i%10)}, 201)
		api.must("POST", "/api/v1/sensors/"+id+"/34", admin, map[string]any{"sensor_type": "ph", "name": "pH"}, 200)
		api.must("POST", "/api/v1/actuators/"+id+"/26", admin, map[string]any{"actuator_type": "pump", "name": "Pump"}, 200)
	}
	return h, api
}

// BenchmarkFirstLoad: the bytes a browser fetches, compressed as sent, to
// show the overview of 5 devices the first time (a cold cache), split into
// the dashboard's files and the API's answers.
func BenchmarkFirstLoad(b *testing.B) {
	h, api := fleet(b, 5)
	for range b.N {
		p, base := freshTab(b, h, api)
		p.do("first load", chromedp.Navigate(base+"/"))
		p.await("the overview", `performance.getEntriesByName('overview-interactive').length > 0`, 30*time.Second)
		type sizes struct{ UI, API, Files, Requests float64 }
		s := eval[sizes](p, `(() => {
			const nav = performance.getEntriesByType('navigation')[0];
			let ui = nav.encodedBodySize, api = 0, files = 1, requests = 1;
			for (const r of performance.getEntriesByType('resource')) {
				requests++;
				if (new URL(r.name).pathname.startsWith('/api/')) api += r.encodedBodySize; else { ui += r.encodedBodySize; files++; }
			}
			return { UI: ui, API: api, Files: files, Requests: requests };
		})()`)
		b.ReportMetric(s.UI, "ui-bytes")
		b.ReportMetric(s.API, "api-bytes")
		b.ReportMetric(s.Files, "ui-files")
		b.ReportMetric(s.Requests, "requests")
	}
}

// BenchmarkOverview500: milliseconds from navigation start to the
// overview of 500 devices in 10 zones being drawn with its handlers bound
// (the view's overview-interactive mark): the first load with a cold
// cache, then the median of 5 reloads.
func BenchmarkOverview500(b *testing.B) {
	h, api := fleet(b, 500)
	for range b.N {
		p, base := freshTab(b, h, api)
		var warm []float64
		for i := 0; i < 6; i++ {
			if i == 0 {
				p.do("first load", chromedp.Navigate(base+"/"))
			} else {
				p.do("reload", chromedp.Reload())
			}
			p.await("the overview", `performance.getEntriesByName('overview-interactive').length > 0 && document.querySelectorAll('.device').length === 500`, 60*time.Second)
			ms := eval[float64](p, `performance.getEntriesByName('overview-interactive')[0].startTime`)
			b.Logf("load %d: %s", i, eval[string](p, `['overview-start', 'overview-data', 'overview-interactive'].map((n) => n + ' ' + Math.round(performance.getEntriesByName(n)[0].startTime)).join(', ')`))
			if i == 0 {
				b.ReportMetric(ms, "ms-cold")
			} else {
				warm = append(warm, ms)
			}
		}
		b.ReportMetric(median(warm), "ms-warm-median")
		b.ReportMetric(slices.Max(warm), "ms-warm-max")
	}
}

// BenchmarkChart30d: milliseconds from the 30-day history's response
// (parsed) to uPlot having drawn it (the chart's draw hook): the median and
// the worst of 10 switches between 7 and 30 days on a device page; and,
// beside it, the median of the request itself (sent to parsed).
func BenchmarkChart30d(b *testing.B) {
	h, api := fleet(b, 1)
	points := seedMonth(b, h, "ESP_000000")
	for range b.N {
		p, base := freshTab(b, h, api)
		p.do("device page", chromedp.Navigate(base+"/ui/devices/ESP_000000"))
		p.await("a chart", `!!document.querySelector('#chart canvas')`, 30*time.Second)
		var draws, fetches []float64
		for i := 0; i < 10; i++ {
			p.do("7 days", chromedp.Click(chromedp.CSS(`button[data-range="7d"]`)))
			p.await("the 7-day chart", `document.getElementById('chart').dataset.range === '7d'`, 30*time.Second)
			p.do("30 days", chromedp.Click(chromedp.CSS(`button[data-range="30d"]`)))
			p.await("the 30-day chart", `document.getElementById('chart').dataset.range === '30d' && performance.getEntriesByName('chart-30d').length === `+fmt.Sprint(i+1), 30*time.Second)
			draws = append(draws, eval[float64](p, `performance.getEntriesByName('chart-30d').at(-1).duration`))
			fetches = append(fetches, eval[float64](p, `performance.getEntriesByName('chart-30d-fetch').at(-1).duration`))
		}
		b.ReportMetric(median(draws), "ms-median")
		b.ReportMetric(slices.Max(draws), "ms-max")
		b.ReportMetric(median(fetches), "ms-fetch-median")
		b.ReportMetric(float64(points), "readings")
		buckets := eval[float64](p, `Number(document.getElementById('chart').dataset.points)`)
		if buckets < 300 {
			b.Fatalf("the 30-day chart drew %v buckets; the seeded month should give 360", buckets)
		}
		b.ReportMetric(buckets, "buckets")
	}
}
