package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrUnknownType is the error of Encode and Decode for a type without an
// entry in the payload registry (a newer replica's event, for one).
var ErrUnknownType = errors.New("unknown event type")

// decoders is the payload registry: the decoding of every type's payload
// JSON. A new payload type needs its entry here (codec_test.go fails
// without it). Each entry starts from its zero payload, so a type that
// lives in a field the JSON leaves out (DeviceDiscovered.Rediscovered)
// comes back with it.
var decoders = map[Type]func([]byte) (Payload, error){
	TypeSensorData:         decodeSensorData,
	TypeSensorHealth:       decodeAs(SensorHealth{}),
	TypeEspHealth:          decodeAs(EspHealth{}),
	TypeDeviceStatus:       decodeAs(DeviceStatus{}),
	TypeDeviceDiscovered:   decodeAs(DeviceDiscovered{}),
	TypeDeviceRediscovered: decodeAs(DeviceDiscovered{Rediscovered: true}),
	TypeDeviceApproved:     decodeAs(DeviceApproved{}),
	TypeDeviceRejected:     decodeAs(DeviceRejected{}),
	TypeConfigResponse:     decodeAs(ConfigResponse{}),
	TypeNotification:       decodeAs(Notification{}),
	TypeSystemEvent:        decodeAs(SystemEvent{}),
	TypeActuatorStatus:     decodeAs(ActuatorStatus{}),
	TypeActuatorResponse:   decodeAs(ActuatorResponse{}),
	TypeActuatorAlert:      decodeAs(ActuatorAlert{}),
	TypeCommandStatus:      decodeAs(CommandStatus{}),
	TypeEmergency:          decodeAs(Emergency{}),
	TypeLogicExecution:     decodeAs(LogicExecution{}),
	TypeSequenceStarted:    decodeAs(SequenceStarted{}),
	TypeSequenceStep:       decodeAs(SequenceStep{}),
	TypeSequenceCompleted:  decodeAs(SequenceCompleted{}),
	TypeSequenceError:      decodeAs(SequenceError{}),
	TypeSequenceCancelled:  decodeAs(SequenceCancelled{}),
	TypeZoneAssignment:     decodeAs(ZoneAssignment{}),
	TypeSubzoneAssignment:  decodeAs(SubzoneAssignment{}),
}

// decodeAs decodes into a copy of zero. Numbers in the payloads' free-form
// fields (any, map[string]any) stay json.Number, which encodes to the
// very digits it was decoded from: a relayed event reaches a WebSocket
// client byte for byte as the replica it happened on would have sent it.
func decodeAs[P Payload](zero P) func([]byte) (Payload, error) {
	return func(data []byte) (Payload, error) {
		p := zero
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		if err := d.Decode(&p); err != nil {
			return nil, err
		}
		return p, nil
	}
}

// wire is an event as it crosses processes; Data is the payload's own
// JSON, the `data` of the WebSocket envelope. Encode writes it with the
// payload itself as Data, Decode reads it with Data raw.
type wire[D any] struct {
	Type Type  `json:"type"`
	Time int64 `json:"time,omitempty"` // unix ns, absent for a zero time
	Data D     `json:"data"`
}

// Encode is e as JSON for another process to Decode: its type, its time
// (to the nanosecond) and its payload. Remote does not travel: whoever
// decodes decides what the event is to it.
func Encode(e Event) ([]byte, error) {
	t := e.Type()
	if e.Data == nil {
		return nil, errors.New("event: encode: no payload")
	}
	if decoders[t] == nil {
		return nil, fmt.Errorf("event: encode %q: %w", t, ErrUnknownType)
	}
	w := wire[Payload]{Type: t, Data: e.Data}
	if !e.Time.IsZero() {
		w.Time = e.Time.UnixNano()
	}
	if d, ok := e.Data.(SensorData); ok {
		if b, ok := appendSensorEvent(make([]byte, 0, 320), w.Time, d); ok {
			return b, nil
		}
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("event: encode %q: %w", t, err)
	}
	return b, nil
}

// Decode is the event Encode encoded, with Remote false; its time is in
// the local time zone.
func Decode(data []byte) (Event, error) {
	var r Raw
	if err := json.Unmarshal(data, &r); err != nil {
		return Event{}, fmt.Errorf("event: decode: %w", err)
	}
	return r.Event()
}

// Raw is an encoded event whose payload is not decoded yet. A document
// that holds many encoded events (a relay batch) decodes as []Raw in one
// pass, rather than once for the document and once more per event.
type Raw wire[json.RawMessage]

// Event decodes r's payload: Decode of the event r was read from.
func (r Raw) Event() (Event, error) {
	decode := decoders[r.Type]
	if decode == nil {
		return Event{}, fmt.Errorf("event: decode %q: %w", r.Type, ErrUnknownType)
	}
	p, err := decode(r.Data)
	if err != nil {
		return Event{}, fmt.Errorf("event: decode %q: %w", r.Type, err)
	}
	e := Event{Data: p}
	if r.Time != 0 {
		e.Time = time.Unix(0, r.Time)
	}
	return e, nil
}
