package processor

import "math"

// A processor's quality is a ladder of bands read top to bottom, as
// docs/domain.md §2.5 writes it ("outside 0–14 → error; calibrated and
// 3–11 → good; …; else poor"): the first band that holds gives the quality.

// bandTest is how a band compares a value with its bounds.
type bandTest int

const (
	inside  bandTest = iota // lo ≤ v ≤ hi
	outside                 // v < lo or v > hi
	under                   // v < hi
)

// calibrationGate ties a band to the sensor's calibration (pH and EC).
type calibrationGate int

const (
	anyCalibration calibrationGate = iota // the bounds alone decide
	andCalibrated                         // calibrated and within the bounds
	orCalibrated                          // calibrated, or within the bounds
)

// band is one rung of a quality ladder.
type band struct {
	test    bandTest
	lo, hi  float64
	gate    calibrationGate
	quality string
}

func within(lo, hi float64, quality string) band {
	return band{
		test:    inside,
		lo:      lo,
		hi:      hi,
		quality: quality,
	}
}

func beyond(lo, hi float64, quality string) band {
	return band{
		test:    outside,
		lo:      lo,
		hi:      hi,
		quality: quality,
	}
}

func below(hi float64, quality string) band {
	return band{
		test:    under,
		lo:      math.Inf(-1),
		hi:      hi,
		quality: quality,
	}
}

func exactly(v float64, quality string) band { return within(v, v, quality) }

// ifCalibrated is the band only for a calibrated sensor.
func (b band) ifCalibrated() band {
	b.gate = andCalibrated
	return b
}

// orCalibrated is the band for a calibrated sensor whatever its value.
func (b band) orCalibrated() band {
	b.gate = orCalibrated
	return b
}

func (b band) holds(v float64, calibrated bool) bool {
	var in bool
	switch b.test {
	case inside:
		in = b.lo <= v && v <= b.hi
	case outside:
		in = v < b.lo || v > b.hi
	case under:
		in = v < b.hi
	}
	switch b.gate {
	case andCalibrated:
		return calibrated && in
	case orCalibrated:
		return calibrated || in
	}
	return in
}

// ladder is a processor's quality table.
type ladder struct {
	bands    []band
	fallback string // docs/domain.md §2.5's "else"
}

// grade is the quality of v from a sensor whose calibration does not matter.
func (l ladder) grade(v float64) string { return l.gradeCalibrated(v, false) }

// gradeCalibrated is the quality of v: the first band that holds, else the
// fallback.
func (l ladder) gradeCalibrated(v float64, calibrated bool) string {
	for _, b := range l.bands {
		if b.holds(v, calibrated) {
			return b.quality
		}
	}
	return l.fallback
}

// The quality tables of docs/domain.md §2.5, one per processor.
var (
	phQuality = ladder{
		bands: []band{
			beyond(0, 14, "error"),
			within(3, 11, "good").ifCalibrated(),
			within(4, 10, "fair").orCalibrated(),
		},
		fallback: "poor",
	}

	// ecQuality grades µS/cm, before any unit conversion.
	ecQuality = ladder{
		bands: []band{
			beyond(0, 20000, "error"),
			within(100, 15000, "good").ifCalibrated(),
			within(100, 15000, "fair").orCalibrated(),
		},
		fallback: "poor",
	}

	humidityQuality = ladder{
		bands: []band{
			beyond(5, 95, "poor"),
			within(20, 80, "good"),
		},
		fallback: "fair",
	}

	// pressureQuality grades hPa, before any unit conversion.
	pressureQuality = ladder{
		bands: []band{
			beyond(300, 1100, "error"),
			within(950, 1050, "good"),
		},
		fallback: "fair",
	}

	moistureQuality = ladder{
		bands: []band{
			beyond(10, 95, "poor"),
			within(20, 80, "good"),
		},
		fallback: "fair",
	}

	lightQuality = ladder{
		bands: []band{
			below(50, "poor"),
			below(200, "fair"),
			below(1000, "good"),
			below(100000, "excellent"),
		},
		fallback: "bad",
	}

	co2Quality = ladder{
		bands: []band{
			below(400, "excellent"),
			below(1000, "good"),
			below(1500, "fair"),
			below(2000, "poor"),
		},
		fallback: "bad",
	}

	flowQuality = ladder{
		bands: []band{
			exactly(0, "good"),
			below(0.1, "fair"),
			below(1, "good"),
			below(10, "excellent"),
			below(20, "good"),
		},
		fallback: "fair",
	}
)

// temperatureQuality is the temperature processors' table: outside the
// sensor's valid range an error, within its good band good, else fair.
func temperatureQuality(validLo, validHi, goodLo, goodHi float64) ladder {
	return ladder{
		bands: []band{
			beyond(validLo, validHi, "error"),
			within(goodLo, goodHi, "good"),
		},
		fallback: "fair",
	}
}
