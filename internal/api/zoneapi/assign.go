package zoneapi

import (
	"net/http"
	"time"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/zone"
)

// assignRequest is the body of POST /zone/devices/{esp_id}/assign.
type assignRequest struct {
	ZoneID          string `json:"zone_id" api:"required,min=1,max=32"`
	MasterZoneID    string `json:"master_zone_id" api:"max=32"`
	ZoneName        string `json:"zone_name" api:"max=100"`
	SubzoneStrategy string `json:"subzone_strategy" api:"enum=transfer|copy|reset,default=transfer"`
}

func (q *assignRequest) Validate(b *api.Body) {
	checkPattern(b, "zone_id", q.ZoneID, zonePattern, "[A-Za-z0-9_-]")
	checkPattern(b, "master_zone_id", q.MasterZoneID, zonePattern, "[A-Za-z0-9_-]")
	checkDeviceText(b, "zone_name", q.ZoneName)
}

// assignResponse answers an assignment at once; ack_received is always
// false here, the device's answer comes as WebSocket zone_assignment.
type assignResponse struct {
	Success       bool    `json:"success"`
	Message       string  `json:"message"`
	DeviceID      string  `json:"device_id"`
	ZoneID        string  `json:"zone_id"`
	MasterZoneID  *string `json:"master_zone_id"`
	ZoneName      string  `json:"zone_name"`
	MQTTTopic     string  `json:"mqtt_topic"`
	MQTTSent      bool    `json:"mqtt_sent"`
	AckReceived   bool    `json:"ack_received"`
	CorrelationID string  `json:"correlation_id"`
	// RebootRequired is true when the assignment moved the device's topic
	// root (it had no kaiser id): it hears nothing else until it reboots.
	RebootRequired bool `json:"reboot_required"`
}

func (rs *routes) assign(w http.ResponseWriter, r *http.Request, p auth.Principal, d device.Device) {
	var q assignRequest
	if !api.Decode(w, r, &q) {
		return
	}
	res, err := rs.zones.Assign(r.Context(), d.DeviceID, zone.Assignment{
		ZoneID:       q.ZoneID,
		MasterZoneID: q.MasterZoneID,
		ZoneName:     q.ZoneName,
		Strategy:     q.SubzoneStrategy,
		Actor:        p.User.Username,
	})
	if err != nil {
		rs.fail(w, r, d.DeviceID, err)
		return
	}

	msg := "Zone assignment sent to the device; its answer arrives as zone_assignment"
	switch {
	case !res.Sent:
		msg = "Zone assignment stored; it is sent when the device is online"
	case res.RebootRequired:
		msg = "Zone assignment sent. The device had no kaiser id: its topic root moved to god, and it " +
			"receives no config or commands until it reboots"
	}
	api.WriteJSON(w, http.StatusOK, assignResponse{
		Success:        true,
		Message:        msg,
		DeviceID:       res.DeviceID,
		ZoneID:         res.ZoneID,
		MasterZoneID:   api.NullString(res.MasterZoneID),
		ZoneName:       res.ZoneName,
		MQTTTopic:      res.Topic,
		MQTTSent:       res.Sent,
		CorrelationID:  res.CorrelationID,
		RebootRequired: res.RebootRequired,
	})
}

// removeResponse answers DELETE /zone/devices/{esp_id}/zone.
type removeResponse struct {
	Success   bool   `json:"success"`
	Message   string `json:"message"`
	DeviceID  string `json:"device_id"`
	MQTTTopic string `json:"mqtt_topic"`
	MQTTSent  bool   `json:"mqtt_sent"`
}

func (rs *routes) unassign(w http.ResponseWriter, r *http.Request, p auth.Principal, d device.Device) {
	res, err := rs.zones.Unassign(r.Context(), d.DeviceID, p.User.Username)
	if err != nil {
		rs.fail(w, r, d.DeviceID, err)
		return
	}
	msg := "Zone removed; the baseline firmware does not confirm a removal"
	if !res.Sent {
		msg = "Zone removed on the hub; the device was offline and is not told"
	}
	api.WriteJSON(w, http.StatusOK, removeResponse{
		Success:   true,
		Message:   msg,
		DeviceID:  res.DeviceID,
		MQTTTopic: res.Topic,
		MQTTSent:  res.Sent,
	})
}

// deviceZoneObject is a device's zone view (docs/api.md §9); zone_removal
// and reboot_required are additions.
type deviceZoneObject struct {
	DeviceID              string        `json:"device_id"`
	ZoneID                *string       `json:"zone_id"`
	MasterZoneID          *string       `json:"master_zone_id"`
	ZoneName              *string       `json:"zone_name"`
	IsZoneMaster          bool          `json:"is_zone_master"`
	KaiserID              *string       `json:"kaiser_id"`
	PendingZoneAssignment *zone.Pending `json:"pending_zone_assignment"`
	ZoneConfirmedAt       *string       `json:"zone_confirmed_at"`
	ZoneError             *string       `json:"zone_error"`
	ZoneRemoval           *zone.Removal `json:"zone_removal"`
	RebootRequired        bool          `json:"reboot_required"`
}

func deviceZoneOf(v zone.DeviceZone) deviceZoneObject {
	o := deviceZoneObject{
		DeviceID:              v.DeviceID,
		ZoneID:                api.NullString(v.ZoneID),
		MasterZoneID:          api.NullString(v.MasterZoneID),
		ZoneName:              api.NullString(v.ZoneName),
		IsZoneMaster:          v.IsZoneMaster,
		KaiserID:              api.NullString(v.KaiserID),
		PendingZoneAssignment: v.Pending,
		ZoneRemoval:           v.Removal,
		RebootRequired:        v.RebootRequired,
	}
	if v.ConfirmedAt != nil {
		o.ZoneConfirmedAt = api.Timestamp(*v.ConfirmedAt)
	}
	if v.Error != nil {
		o.ZoneError = &v.Error.Message
	}
	return o
}

func (rs *routes) deviceZone(w http.ResponseWriter, r *http.Request, _ auth.Principal, d device.Device) {
	v, err := rs.zones.DeviceZone(d.DeviceID)
	if err != nil {
		rs.fail(w, r, d.DeviceID, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, deviceZoneOf(v))
}

// zoneDevices is GET /zone/{zone_id}/devices: a bare array, empty for a
// zone without devices or unknown (docs/api.md §1.4).
func (rs *routes) zoneDevices(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	if r.PathValue("collection") != "devices" {
		api.WriteError(w, r, http.StatusNotFound, "NOT_FOUND", "route "+r.URL.Path+" not found", nil)
		return
	}
	out := []deviceZoneObject{}
	for _, v := range rs.zones.DevicesInZone(zoneID(r)) {
		out = append(out, deviceZoneOf(v))
	}
	api.WriteJSON(w, http.StatusOK, out)
}

func (rs *routes) unassigned(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	ids := rs.zones.Unassigned()
	if ids == nil {
		ids = []string{}
	}
	api.WriteJSON(w, http.StatusOK, ids)
}

// timestamp formats an optional time for a response.
func timestamp(t *time.Time) *string {
	if t == nil {
		return nil
	}
	return api.Timestamp(*t)
}
