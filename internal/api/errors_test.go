package api_test

import (
	"net/http/httptest"
	"testing"

	"github.com/kaiserhub/kaiser/internal/api/apitest"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sensor"
)

func TestSensorErrorsMapToCodes(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{&sensor.PinError{Conflict: true}, 409, "GPIO_CONFLICT"},
		{&sensor.PinError{}, 400, "GPIO_RESERVED"},
		{sensor.ErrUnsupportedType, 400, "UNSUPPORTED_SENSOR_TYPE"},
		{sensor.ErrLimit, 409, "LIMIT_EXCEEDED"},
		{sensor.ErrNotFound, 404, "SENSOR_NOT_FOUND"},
		{device.ErrNotFound, 404, "ESP_NOT_FOUND"},
		{apitest.ErrBoom, 500, "INTERNAL_ERROR"},
	}
	f := apitest.New(t)
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			rec, req := apitest.Recorder("GET", "/")
			if !f.Srv.SensorError(rec, req, tc.err) {
				t.Fatal("not answered")
			}
			if r := apitest.Decode(t, rec); r.Status != tc.status || r.Code() != tc.code {
				t.Fatalf("%d %s", r.Status, r.Raw)
			}
		})
	}
	if f.Srv.SensorError(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), nil) {
		t.Fatal("nil error answered")
	}
}
