package api

import "testing"

// GET / answers HTML only to clients that prefer it (docs/api.md §3).
func TestPrefersHTML(t *testing.T) {
	for accept, want := range map[string]bool{
		"":                 false,
		"*/*":              false,
		"application/json": false,
		"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8": true,
		"text/html":                         true,
		"text/html;q=0.5, application/json": false,
		"application/json, text/html":       false,
		"text/html, application/json;q=0.9": true,
		"text/*":                            true,
		"text/html;q=0":                     false,
		"TEXT/HTML":                         true,
		"text/plain":                        false,
	} {
		if got := PrefersHTML(accept); got != want {
			t.Errorf("PrefersHTML(%q) = %v, want %v", accept, got, want)
		}
	}
}
