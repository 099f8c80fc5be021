package device

import "testing"

// BenchmarkAdmitReading compares the two admissions of a reading of an
// online device whose heartbeats filled its metadata: Admit copies the
// device record, AdmitType (the reading path's) does not.
func BenchmarkAdmitReading(b *testing.B) {
	h := newHarness(b, Config{})
	h.online()
	m := h.message(testID, "sensor/4/data", map[string]any{"sensor_type": "ds18b20", "raw": 400, "ts": 0})

	b.Run("Admit", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := h.svc.Admit(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AdmitType", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := h.svc.AdmitType(m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
