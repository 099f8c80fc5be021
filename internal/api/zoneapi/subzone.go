package zoneapi

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/zone"
)

// subzoneRequestDoc documents the body of POST .../subzones/assign.
type subzoneRequestDoc struct {
	subzoneFields
	AssignedGPIOs []int `json:"assigned_gpios" api:"required,min=1,max=20"`
}

// subzoneFields are the fields the body binder reads; assigned_gpios is a
// list of numbers, which it does not read, so readPins does.
type subzoneFields struct {
	SubzoneID      string  `json:"subzone_id" api:"required,min=1,max=32"`
	SubzoneName    string  `json:"subzone_name" api:"max=100"`
	ParentZoneID   *string `json:"parent_zone_id" api:"max=32"`
	SafeModeActive bool    `json:"safe_mode_active" api:"default=false"`
}

func (q *subzoneFields) Validate(b *api.Body) {
	checkPattern(b, "subzone_id", q.SubzoneID, subzonePattern, "[A-Za-z0-9_]")
	checkDeviceText(b, "subzone_name", q.SubzoneName)
}

// Pins of a subzone in a request (docs/api.md §9).
const (
	minPin, maxPin = 1, 39
	maxPins        = 20
)

// decodeSubzone reads the assign body: the tagged fields through the API's
// binder, assigned_gpios from the same bytes. It answers 4xx itself.
func decodeSubzone(w http.ResponseWriter, r *http.Request) (subzoneFields, []int, bool) {
	var q subzoneFields
	raw, err := io.ReadAll(io.LimitReader(r.Body, api.MaxBody+1))
	if err != nil {
		api.WriteError(w, r, http.StatusBadRequest, "BAD_REQUEST", "could not read request body", nil)
		return q, nil, false
	}
	r.Body = io.NopCloser(bytes.NewReader(raw)) // the binder reads it again and applies the size limit

	b, ok := api.DecodeBody(w, r, &q)
	if !ok {
		return q, nil, false
	}
	pins := readPins(b, raw)
	if b.Done(w, r) {
		return q, nil, false
	}
	return q, pins, true
}

// readPins reads assigned_gpios: 1–20 distinct integers 1–39 (pin 0 never).
// The body is a JSON object already, as the binder found.
func readPins(b *api.Body, raw []byte) []int {
	const name = "assigned_gpios"
	var body map[string]json.RawMessage
	_ = json.Unmarshal(raw, &body)
	v, ok := body[name]
	if !ok || string(v) == "null" {
		b.Fail(name, "field required", "missing")
		return nil
	}

	var items []any
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	if err := dec.Decode(&items); err != nil {
		b.Fail(name, "must be an array", "type_error")
		return nil
	}
	if len(items) < 1 || len(items) > maxPins {
		b.Fail(name, "must have 1-20 items", "value_error")
		return nil
	}

	pins := make([]int, 0, len(items))
	for _, it := range items {
		n, ok := it.(json.Number)
		f, err := n.Float64()
		if !ok || err != nil || f != math.Trunc(f) || f < minPin || f > maxPin {
			b.Fail(name, "items must be integers 1-39 (pin 0 is not allowed)", "value_error")
			return nil
		}
		if slices.Contains(pins, int(f)) {
			b.Fail(name, "items must be unique", "value_error")
			return nil
		}
		pins = append(pins, int(f))
	}
	return pins
}

// subzoneResponse answers an assignment or a removal.
type subzoneResponse struct {
	Success       bool   `json:"success"`
	Message       string `json:"message"`
	DeviceID      string `json:"device_id"`
	SubzoneID     string `json:"subzone_id"`
	AssignedGPIOs []int  `json:"assigned_gpios"`
	Status        string `json:"status"`
	MQTTTopic     string `json:"mqtt_topic"`
	MQTTSent      bool   `json:"mqtt_sent"`
}

func (rs *routes) assignSubzone(w http.ResponseWriter, r *http.Request, _ auth.Principal, d device.Device) {
	q, pins, ok := decodeSubzone(w, r)
	if !ok {
		return
	}
	res, err := rs.zones.AssignSubzone(r.Context(), d.DeviceID, zone.SubzoneRequest{
		SubzoneID:    q.SubzoneID,
		Name:         q.SubzoneName,
		ParentZoneID: q.ParentZoneID,
		GPIOs:        pins,
		SafeMode:     q.SafeModeActive,
	})
	if err != nil {
		rs.fail(w, r, d.DeviceID, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, subzoneResponseOf(res,
		"Subzone sent to the device; its answer arrives as subzone_assignment"))
}

func subzoneResponseOf(res zone.SubzoneResult, msg string) subzoneResponse {
	pins := res.GPIOs
	if pins == nil {
		pins = []int{}
	}
	return subzoneResponse{
		Success:       true,
		Message:       msg,
		DeviceID:      res.DeviceID,
		SubzoneID:     res.SubzoneID,
		AssignedGPIOs: pins,
		Status:        res.Status,
		MQTTTopic:     res.Topic,
		MQTTSent:      res.Sent,
	}
}

func (rs *routes) removeSubzone(w http.ResponseWriter, r *http.Request, _ auth.Principal, d device.Device) {
	res, err := rs.zones.RemoveSubzone(r.Context(), d.DeviceID, subzoneID(r))
	if err != nil {
		rs.fail(w, r, d.DeviceID, err)
		return
	}
	msg := "Subzone removed; the baseline firmware does not confirm a removal"
	if res.Status == zone.SubzoneRemoving {
		msg = "Subzone removal sent; it is deleted when the device confirms"
	}
	api.WriteJSON(w, http.StatusOK, subzoneResponseOf(res, msg))
}

// subzoneObject is the Subzone object of docs/api.md §9; error_code and
// error_message are additions.
type subzoneObject struct {
	SubzoneID      string  `json:"subzone_id"`
	SubzoneName    string  `json:"subzone_name"`
	ParentZoneID   string  `json:"parent_zone_id"`
	AssignedGPIOs  []int   `json:"assigned_gpios"`
	SafeModeActive bool    `json:"safe_mode_active"`
	Status         string  `json:"status"`
	SensorCount    int     `json:"sensor_count"`
	ActuatorCount  int     `json:"actuator_count"`
	LastAckAt      *string `json:"last_ack_at"`
	CreatedAt      *string `json:"created_at"`
	ErrorCode      *int64  `json:"error_code"`
	ErrorMessage   *string `json:"error_message"`
}

func subzoneOf(sz zone.SubzoneInfo) subzoneObject {
	pins := sz.GPIOs
	if pins == nil {
		pins = []int{}
	}
	return subzoneObject{
		SubzoneID:      sz.SubzoneID,
		SubzoneName:    sz.Name,
		ParentZoneID:   sz.ParentZoneID,
		AssignedGPIOs:  pins,
		SafeModeActive: sz.SafeMode,
		Status:         sz.Status,
		SensorCount:    sz.SensorCount,
		ActuatorCount:  sz.ActuatorCount,
		LastAckAt:      timestamp(sz.LastAckAt),
		CreatedAt:      api.Timestamp(sz.CreatedAt),
		ErrorCode:      sz.ErrorCode,
		ErrorMessage:   api.NullString(sz.ErrorMessage),
	}
}

// subzoneList answers GET .../subzones.
type subzoneList struct {
	Success    bool            `json:"success"`
	DeviceID   string          `json:"device_id"`
	ZoneID     *string         `json:"zone_id"`
	Subzones   []subzoneObject `json:"subzones"`
	TotalCount int             `json:"total_count"`
}

func (rs *routes) listSubzones(w http.ResponseWriter, r *http.Request, _ auth.Principal, d device.Device) {
	zoneID, subs, err := rs.zones.Subzones(d.DeviceID)
	if err != nil {
		rs.fail(w, r, d.DeviceID, err)
		return
	}
	out := make([]subzoneObject, 0, len(subs))
	for _, sz := range subs {
		out = append(out, subzoneOf(sz))
	}
	api.WriteJSON(w, http.StatusOK, subzoneList{
		Success:    true,
		DeviceID:   d.DeviceID,
		ZoneID:     api.NullString(zoneID),
		Subzones:   out,
		TotalCount: len(out),
	})
}

func (rs *routes) getSubzone(w http.ResponseWriter, r *http.Request, _ auth.Principal, d device.Device) {
	sz, err := rs.zones.Subzone(d.DeviceID, subzoneID(r))
	if err != nil {
		rs.fail(w, r, d.DeviceID, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, subzoneOf(sz))
}

// safeModeRequest is the optional body of the safe-mode routes.
type safeModeRequest struct {
	Reason string `json:"reason" api:"max=200,default=manual"`
}

func (q *safeModeRequest) Validate(b *api.Body) { checkDeviceText(b, "reason", q.Reason) }

// safeModeResponse answers a safe-mode switch.
type safeModeResponse struct {
	Success        bool   `json:"success"`
	Message        string `json:"message"`
	DeviceID       string `json:"device_id"`
	SubzoneID      string `json:"subzone_id"`
	SafeModeActive bool   `json:"safe_mode_active"`
	MQTTSent       bool   `json:"mqtt_sent"`
}

func (rs *routes) safeMode(on bool) deviceHandler {
	return func(w http.ResponseWriter, r *http.Request, _ auth.Principal, d device.Device) {
		var q safeModeRequest
		if !api.Decode(w, r, &q) {
			return
		}
		res, err := rs.zones.SetSafeMode(r.Context(), d.DeviceID, subzoneID(r), on, q.Reason)
		if err != nil {
			rs.fail(w, r, d.DeviceID, err)
			return
		}
		msg := "Safe mode disabled"
		if on {
			msg = "Safe mode enabled: the subzone's pins are driven low and actuators on them are unavailable"
		}
		api.WriteJSON(w, http.StatusOK, safeModeResponse{
			Success:        true,
			Message:        msg,
			DeviceID:       res.DeviceID,
			SubzoneID:      res.SubzoneID,
			SafeModeActive: res.SafeMode,
			MQTTSent:       res.Sent,
		})
	}
}

// subzoneID is the {subzone_id} path parameter; an id no subzone can have
// answers 404 SUBZONE_NOT_FOUND like an unknown one.
func subzoneID(r *http.Request) string { return strings.TrimSpace(r.PathValue("subzone_id")) }
