// Package browsertest drives the dashboard (internal/webui) in Debian's
// Chromium, headless, against a real hub with simulated nodes: the tests
// walk what a grower does and save screenshots, and the benchmarks measure
// the UI budgets of docs/BENCHMARKS.md with performance marks read from the
// page. Without a Chromium the tests skip, except under CI=true, where they
// fail.
package browsertest
