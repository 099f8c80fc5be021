package api

import (
	"strconv"
	"strings"
)

// PrefersHTML reports whether an Accept header asks for HTML before JSON
// (docs/api.md §3): text/html (or text/*) must be acceptable and weigh more
// than application/json does, explicitly or through a wildcard. A tie, an
// empty header and curl's */* keep the JSON service information, so scripts
// and the reference clients see what they always saw; browsers send
// text/html at q=1 and */* at q=0.8.
func PrefersHTML(accept string) bool {
	html, json := -1.0, -1.0
	htmlSpec, jsonSpec := 0, 0 // how specific the match that set each weight was
	for _, part := range strings.Split(accept, ",") {
		fields := strings.Split(part, ";")
		media := strings.ToLower(strings.TrimSpace(fields[0]))
		q := 1.0
		for _, p := range fields[1:] {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		set := func(weight *float64, spec *int, s int) {
			if s > *spec {
				*weight, *spec = q, s
			}
		}
		switch media {
		case "text/html":
			set(&html, &htmlSpec, 3)
		case "text/*":
			set(&html, &htmlSpec, 2)
		case "application/json":
			set(&json, &jsonSpec, 3)
		case "application/*":
			set(&json, &jsonSpec, 2)
		case "*/*":
			set(&json, &jsonSpec, 1)
		}
	}
	return html > 0 && html > json
}
