package sensorapi

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/sensor"
)

// process is the firmware's synchronous processing call (docs/protocol.md §4,
// docs/api.md §7.4). The reply is parsed by substring search, so its bytes are fixed:
// one compact JSON line, then CRLF CRLF, counted in Content-Length.
func (h *handlers) process(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<10))
	if err != nil {
		writeCompactError(w, r, http.StatusBadRequest, "BAD_REQUEST", "request body unreadable or too large")
		return
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		writeCompactError(w, r, http.StatusBadRequest, "BAD_REQUEST", "malformed JSON")
		return
	}
	esp, ok1 := m["esp_id"].(string)
	typ, ok2 := m["sensor_type"].(string)
	gpioN, ok3 := m["gpio"].(json.Number)
	rawN, ok4 := m["raw_value"].(json.Number)
	gpio, gerr := strconv.ParseFloat(string(gpioN), 64)
	rawV, rerr := strconv.ParseFloat(string(rawN), 64)
	if !ok1 || !ok2 || !ok3 || !ok4 || gerr != nil || rerr != nil || !contract.ValidEspID(esp) ||
		len(typ) == 0 || len(typ) > 50 || gpio != math.Trunc(gpio) || gpio < 0 || gpio > 255 ||
		math.IsInf(rawV, 0) || math.IsNaN(rawV) {
		writeCompactError(w, r, http.StatusBadRequest, "BAD_REQUEST",
			"esp_id, gpio (0-255), sensor_type and raw_value are required")
		return
	}
	if r.Header.Get("X-API-Key") != "" {
		// No device keys are configured in this build, so any key is invalid.
		writeCompactError(w, r, http.StatusUnauthorized, "INVALID_API_KEY", "invalid API key")
		return
	}
	req := sensor.ProcessRequest{
		EspID:      esp,
		GPIO:       int(gpio),
		SensorType: typ,
		Raw:        rawV,
	}
	if b, ok := m["raw_mode"].(bool); ok {
		req.RawMode = &b
	}
	req.Calibration, _ = m["calibration"].(map[string]any)
	req.Params, _ = m["params"].(map[string]any)
	if req.Calibration != nil {
		req.Calibration = api.NormaliseNumbers(req.Calibration).(map[string]any)
	}
	if req.Params != nil {
		req.Params = api.NormaliseNumbers(req.Params).(map[string]any)
	}
	req.Trusted = h.srv.ValidToken(r)
	var reply sensor.ProcessReply
	switch {
	case !h.srv.Ready():
		reply = sensor.Fallback(rawV, "not_ready")
		h.sensors.CountProcess("not_ready")
	case !h.processAllowed(esp):
		reply = sensor.Fallback(rawV, "rate_limited")
		h.sensors.CountProcess("rate_limited")
	default:
		reply = h.sensors.Process(req)
	}
	writeProcessReply(w, reply)
}

func (h *handlers) processAllowed(esp string) bool {
	ok, _, _ := h.processLimit.Allow(esp)
	return ok
}

func writeProcessReply(w http.ResponseWriter, rep sensor.ProcessReply) {
	v := rep.Value
	if math.IsNaN(v) || math.IsInf(v, 0) {
		v = 0
	}
	v = math.Max(-999999999, math.Min(999999999, v))
	var b strings.Builder
	b.WriteString(`{"success":true,"processed_value":`)
	b.WriteString(strconv.FormatFloat(v, 'f', -1, 64))
	b.WriteString(`,"unit":"`)
	b.WriteString(contract.SanitizeText(rep.Unit))
	b.WriteString(`","quality":"`)
	b.WriteString(contract.SanitizeText(rep.Quality))
	b.WriteString(`","timestamp":`)
	b.WriteString(strconv.FormatInt(time.Now().Unix(), 10))
	b.WriteString("}\r\n\r\n")
	body := b.String()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, body)
}

func writeCompactError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	b, _ := json.Marshal(map[string]any{
		"success": false,
		"detail":  msg,
		"error": map[string]any{
			"code":       code,
			"message":    msg,
			"details":    map[string]any{},
			"request_id": api.RequestID(r),
		},
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
