package processor

import (
	"errors"
	"fmt"
	"time"
)

// Point is one calibration point: what the sensor read and the true value.
type Point struct {
	Raw       float64 `json:"raw"`
	Reference float64 `json:"reference"`
}

// ErrCalibration marks degenerate or unsupported calibration input.
var ErrCalibration = errors.New("calibration failed")

// CalibrationMethod is the method each processor uses (chosen by processor,
// never by point count).
func CalibrationMethod(key string) string {
	switch key {
	case "ph", "ec":
		return "linear"
	case "moisture":
		return "dry_wet"
	case "flow":
		return ""
	}
	return "offset"
}

// Calibrate computes the calibration object for a processor (docs/domain.md §2.6).
func Calibrate(key string, points []Point, now time.Time) (map[string]any, error) {
	method := CalibrationMethod(key)
	out := map[string]any{}
	need := 2
	if method == "offset" {
		need = 1
	}
	switch {
	case method == "":
		return nil, fmt.Errorf("%w: %s is calibrated by setting calibration_factor directly", ErrCalibration, key)
	case len(points) < need:
		return nil, fmt.Errorf("%w: %s needs at least %d points", ErrCalibration, key, need)
	}
	switch method {
	case "linear":
		maxRaw, vref := 4095.0, 3.3
		if key == "ec" {
			out["adc_type"] = "12bit"
			for _, p := range points {
				if p.Raw > 4095 {
					maxRaw, vref = 32767, 5.0
					out["adc_type"] = "16bit"
				}
			}
		}
		v1, v2 := points[0].Raw/maxRaw*vref, points[1].Raw/maxRaw*vref
		if v1 == v2 {
			return nil, fmt.Errorf("%w: the two points have the same raw value", ErrCalibration)
		}
		slope := (points[1].Reference - points[0].Reference) / (v2 - v1)
		out["slope"] = round(slope, 6)
		out["offset"] = round(points[0].Reference-slope*v1, 6)
	case "dry_wet":
		var dry, wet *Point
		for i := range points {
			switch points[i].Reference {
			case 0:
				dry = &points[i]
			case 100:
				wet = &points[i]
			}
		}
		if dry == nil || wet == nil {
			dry, wet = &points[0], &points[1]
		}
		if dry.Raw == wet.Raw {
			return nil, fmt.Errorf("%w: dry and wet points have the same raw value", ErrCalibration)
		}
		out["dry_value"], out["wet_value"] = dry.Raw, wet.Raw
	case "offset":
		sum := 0.0
		for _, p := range points {
			sum += p.Reference - p.Raw
		}
		out["offset"] = round(sum/float64(len(points)), 6)
	}
	out["method"] = method
	out["points"] = points
	out["calibrated_at"] = now.UTC().Format(time.RFC3339)
	return out, nil
}
