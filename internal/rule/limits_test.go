package rule

import (
	"testing"
	"time"
)

// The buckets of docs/domain.md §6.9: a device's 30 tokens, then 20 a
// second; the hub's 150, shared by every device; a refused Take takes none.
func TestRateLimits(t *testing.T) {
	now := time.Date(2026, 1, 7, 6, 0, 0, 0, time.UTC)
	l := NewRateLimits()
	for i := range 30 {
		if !l.Take(now, []string{"ESP_A"}) {
			t.Fatalf("token %d of ESP_A refused", i+1)
		}
	}
	if l.WouldTake(now, []string{"ESP_A"}) || l.Take(now, []string{"ESP_A"}) {
		t.Fatal("a 31st token within the same instant")
	}
	later := now.Add(100 * time.Millisecond)
	if !l.Take(later, []string{"ESP_A"}) || !l.Take(later, []string{"ESP_A"}) || l.Take(later, []string{"ESP_A"}) {
		t.Fatal("100 ms refill exactly two tokens at 20/s")
	}

	// ESP_A is empty: a two-device Take is refused and takes nothing from ESP_B.
	if l.Take(later, []string{"ESP_B", "ESP_A"}) {
		t.Fatal("taken while ESP_A is empty")
	}
	for i := range 30 {
		if !l.TakeDevice(later, "ESP_B") {
			t.Fatalf("ESP_B's token %d was taken by the refused Take", i+1)
		}
	}

	// The hub bucket: 150 tokens across devices, then empty.
	h := NewRateLimits()
	n := 0
	for d := 0; n < 200; d++ {
		if !h.Take(now, []string{string(rune('a' + d%26))}) {
			break
		}
		n++
	}
	if n != 150 {
		t.Fatalf("the hub bucket gave %d tokens, want 150", n)
	}
}
