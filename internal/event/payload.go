package event

import "strconv"

// The payloads, one per emitted type. Their JSON keys and values are what
// WebSocket clients receive in `data` (docs/api.md §17.5): every key is always
// present, and pointer fields give the null a client sees when a value is
// unknown.
//
// Besides EventType, payloads answer what the live feed asks of them:
// Device (the esp_id or device_id its esp_ids filter matches), Sensor (for
// the sensor_types filter), Subject (the coalescing key of a state message,
// docs/api.md §17.4) and Recipient (the only user a notification goes to).

// SensorData is a reading accepted by the writer.
type SensorData struct {
	EspID          string   `json:"esp_id"`
	GPIO           int      `json:"gpio"`
	SensorType     string   `json:"sensor_type"`
	Value          float64  `json:"value"` // processed if present, else raw
	RawValue       float64  `json:"raw_value"`
	ProcessedValue *float64 `json:"processed_value"`
	Unit           string   `json:"unit"`
	Quality        string   `json:"quality"`
	ProcessingMode string   `json:"processing_mode"`
	ZoneID         string   `json:"zone_id"`
	SubzoneID      string   `json:"subzone_id"`
	Timestamp      int64    `json:"timestamp"` // reading time, unix seconds
	// The bus address of a sensor that can share its pin with others, as
	// the reading gave it, the OneWire ROM code upper-cased; at most one of
	// the two (docs/decisions/0030-sensor-event-address.md): present for I2C
	// and OneWire sensors only, an exception to "every key is always
	// present" that SensorHealth shares.
	I2CAddress     *int   `json:"i2c_address,omitempty"`
	OneWireAddress string `json:"onewire_address,omitempty"`
}

// SensorHealth reports a sensor going stale or recovering (docs/domain.md §3.6).
type SensorHealth struct {
	EspID          string  `json:"esp_id"`
	GPIO           int     `json:"gpio"`
	SensorType     string  `json:"sensor_type"`
	Status         string  `json:"status"` // stale or ok
	Reason         *string `json:"reason"` // null on recovery
	LastReadingAt  *string `json:"last_reading_at"`
	TimeoutSeconds int     `json:"timeout_seconds"`
	Timestamp      int64   `json:"timestamp"`
	// The bus address of a sensor that can share its pin, as in
	// SensorData (docs/decisions/0035-sensor-health-address.md): left out
	// for a sensor alone on its pin.
	I2CAddress     *int   `json:"i2c_address,omitempty"`
	OneWireAddress string `json:"onewire_address,omitempty"`
}

// EspHealth is a device's vital figures, sent with every heartbeat of an
// approved device and on its transition to offline.
//
// The vital figures are any because the offline event repeats what the
// device last reported as stored in its metadata, verbatim: int64 while the
// hub runs, float64 after a restart, null when never reported. The counts
// are the hub's configured sensors and actuators, which clients render, so
// they are always integers (docs/api.md §17.5).
type EspHealth struct {
	EspID         string `json:"esp_id"`
	Status        string `json:"status"`
	HeapFree      any    `json:"heap_free"`
	WifiRSSI      any    `json:"wifi_rssi"`
	Uptime        any    `json:"uptime"`
	SensorCount   int    `json:"sensor_count"`
	ActuatorCount int    `json:"actuator_count"`
	Source        string `json:"source"` // heartbeat, heartbeat_timeout, lwt
	Timestamp     int64  `json:"timestamp"`
}

// DeviceStatus is any status transition of a device.
type DeviceStatus struct {
	EspID          string  `json:"esp_id"`
	DeviceID       string  `json:"device_id"`
	Status         string  `json:"status"`
	PreviousStatus string  `json:"previous_status"`
	Reason         string  `json:"reason"`
	LastSeen       *string `json:"last_seen"` // RFC 3339
	Timestamp      int64   `json:"timestamp"`
}

// DeviceDiscovered is an unknown device, or a deleted id coming back
// (Rediscovered), announcing itself by heartbeat.
type DeviceDiscovered struct {
	Rediscovered bool `json:"-"`

	EspID         string `json:"esp_id"`
	DeviceID      string `json:"device_id"`
	DiscoveredAt  string `json:"discovered_at"`
	HardwareType  string `json:"hardware_type"`
	IPAddress     string `json:"ip_address"`
	ZoneID        string `json:"zone_id"`
	HeapFree      int64  `json:"heap_free"`
	WifiRSSI      int64  `json:"wifi_rssi"`
	SensorCount   *int64 `json:"sensor_count"`
	ActuatorCount *int64 `json:"actuator_count"`
	Timestamp     int64  `json:"timestamp"`
}

// DeviceApproved is an operator's approval, for frontends of the later
// reference version (docs/api.md §17.5).
type DeviceApproved struct {
	DeviceID   string `json:"device_id"`
	ApprovedBy string `json:"approved_by"`
	ApprovedAt string `json:"approved_at"`
	Status     string `json:"status"`
}

// DeviceRejected is an operator's rejection; CooldownUntil stays null
// because a rejection does not expire.
type DeviceRejected struct {
	DeviceID        string  `json:"device_id"`
	RejectionReason string  `json:"rejection_reason"`
	RejectedAt      string  `json:"rejected_at"`
	CooldownUntil   *string `json:"cooldown_until"`
}

// ConfigResponse is a device's result of one section of a config push.
type ConfigResponse struct {
	EspID            string  `json:"esp_id"`
	ConfigType       string  `json:"config_type"`
	Status           string  `json:"status"` // success or failed
	Count            int64   `json:"count"`
	Message          string  `json:"message"`
	ErrorCode        *string `json:"error_code"`
	ErrorDescription *string `json:"error_description"`
	// FailedItem is the device's item as decoded JSON, or nil.
	FailedItem    any    `json:"failed_item"`
	CorrelationID string `json:"correlation_id"`
	Timestamp     int64  `json:"timestamp"`
}

// Notification is one user's copy of a created or changed alert.
type Notification struct {
	UserID        int64  `json:"user_id"`
	ID            string `json:"id"`
	Action        string `json:"action"` // new or updated
	Severity      string `json:"severity"`
	Category      string `json:"category"`
	Title         string `json:"title"`
	Message       string `json:"message"`
	Source        string `json:"source"`
	Status        string `json:"status"`
	IsRead        bool   `json:"is_read"`
	CorrelationID string `json:"correlation_id"`
	// Metadata is the alert's free-form metadata (null when it has none).
	Metadata  map[string]any `json:"metadata"`
	Timestamp int64          `json:"timestamp"`
}

// SystemEvent is a hub-level change such as startup or shutdown.
type SystemEvent struct {
	Event     string `json:"event"`
	Message   string `json:"message"`
	Timestamp int64  `json:"timestamp"`
}

func (SensorData) EventType() Type     { return TypeSensorData }
func (SensorHealth) EventType() Type   { return TypeSensorHealth }
func (EspHealth) EventType() Type      { return TypeEspHealth }
func (DeviceStatus) EventType() Type   { return TypeDeviceStatus }
func (DeviceApproved) EventType() Type { return TypeDeviceApproved }
func (DeviceRejected) EventType() Type { return TypeDeviceRejected }
func (ConfigResponse) EventType() Type { return TypeConfigResponse }
func (Notification) EventType() Type   { return TypeNotification }
func (SystemEvent) EventType() Type    { return TypeSystemEvent }

func (d DeviceDiscovered) EventType() Type {
	if d.Rediscovered {
		return TypeDeviceRediscovered
	}
	return TypeDeviceDiscovered
}

// Device is the device the event is about.
func (p SensorData) Device() string       { return p.EspID }
func (p SensorHealth) Device() string     { return p.EspID }
func (p EspHealth) Device() string        { return p.EspID }
func (p DeviceStatus) Device() string     { return p.EspID }
func (p DeviceDiscovered) Device() string { return p.EspID }
func (p DeviceApproved) Device() string   { return p.DeviceID }
func (p DeviceRejected) Device() string   { return p.DeviceID }
func (p ConfigResponse) Device() string   { return p.EspID }

// Sensor is the sensor type the event is about.
func (p SensorData) Sensor() string   { return p.SensorType }
func (p SensorHealth) Sensor() string { return p.SensorType }

// Subject identifies what a state event reports on; a newer event of the
// same type and subject supersedes an older one.
func (p SensorData) Subject() string {
	return busSubject(sensorSubject(p.EspID, p.GPIO, p.SensorType), p.I2CAddress, p.OneWireAddress)
}

func (p SensorHealth) Subject() string {
	return busSubject(sensorSubject(p.EspID, p.GPIO, p.SensorType), p.I2CAddress, p.OneWireAddress)
}
func (p EspHealth) Subject() string    { return p.EspID }
func (p DeviceStatus) Subject() string { return p.EspID }

func sensorSubject(espID string, gpio int, sensorType string) string {
	return espID + "|" + strconv.Itoa(gpio) + "|" + sensorType
}

// busSubject adds a bus sensor's address to its subject, so that the
// sensors sharing a pin are each their own state.
func busSubject(s string, i2c *int, oneWire string) string {
	switch {
	case i2c != nil:
		return s + "|i2c:" + strconv.Itoa(*i2c)
	case oneWire != "":
		return s + "|ow:" + oneWire
	}
	return s
}

// Recipient is the only user the notification is for.
func (p Notification) Recipient() int64 { return p.UserID }
