package api_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kaiserhub/kaiser/internal/api/apitest"
	"github.com/kaiserhub/kaiser/internal/auth"
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

func TestDeviceErrorsMapToCodes(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{device.ErrNotFound, 404, "ESP_NOT_FOUND"},
		{device.ErrInvalidState, 409, "INVALID_STATE"},
		{device.ErrDuplicate, 409, "DUPLICATE_ESP"},
		{device.ErrNotApproved, 409, "DEVICE_NOT_APPROVED"},
		{device.ErrOffline, 409, "DEVICE_OFFLINE"},
		{apitest.ErrBoom, 500, "INTERNAL_ERROR"},
	}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			f := apitest.New(t)
			rec, req := apitest.Recorder("GET", "/")
			f.Srv.DeviceError(rec, req, "ESP_X", tc.err)
			if r := apitest.Decode(t, rec); r.Status != tc.status || r.Code() != tc.code {
				t.Fatalf("%d %s", r.Status, r.Raw)
			}
		})
	}
}

// WithDevice validates {esp_id} (422), loads the device (404) and only then
// runs the handler with it.
func TestWithDeviceValidatesThenLoads(t *testing.T) {
	f := apitest.New(t, apitest.Dev("ESP_LIVE01", device.StatusOnline))
	var got []string
	f.Srv.Group("t").Add("GET", "/api/v1/probes/{esp_id}", auth.RoleViewer, "probe",
		f.Srv.WithDevice(func(w http.ResponseWriter, _ *http.Request, _ auth.Principal, d device.Device) {
			got = append(got, d.DeviceID)
			w.WriteHeader(http.StatusNoContent)
		}))

	tests := []struct {
		path   string
		status int
		code   string
	}{
		{"/api/v1/probes/ESP_LIVE01", 204, ""},
		{"/api/v1/probes/bad%20id", 422, "VALIDATION_ERROR"},
		{"/api/v1/probes/ESP_NOPE01", 404, "ESP_NOT_FOUND"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			if r := f.Do(t, "GET", tc.path, apitest.ViewerToken, nil); r.Status != tc.status || r.Code() != tc.code {
				t.Fatalf("%d %s", r.Status, r.Raw)
			}
		})
	}
	if len(got) != 1 || got[0] != "ESP_LIVE01" {
		t.Fatalf("handler ran for %v", got)
	}
}
