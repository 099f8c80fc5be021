package actuator

import (
	"context"
	"errors"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/store"
)

// View is one actuator as a device object shows it (docs/api.md §6.2).
type View struct {
	GPIO             int
	Type             string
	Name             string
	On               bool   // confirmed on and not stale
	ConfirmedState   string // on, off, pwm, error, unknown
	Stale            bool
	PWMValue         float64 // 0–1
	EmergencyStopped bool    // the device's hub latch, or this actuator device-latched
}

// ForDevice lists the device's actuators for its device object.
func (s *Service) ForDevice(espID string) []View {
	online := false
	if d, err := s.devices.Get(espID); err == nil {
		online = d.Status == device.StatusOnline
	}
	latched := s.hubLatched(espID)

	var out []View
	for _, c := range s.ByDevice(espID) {
		st, err := s.State(espID, c.GPIO)
		if err != nil {
			continue
		}
		stale := st.Stale || !online
		out = append(out, View{
			GPIO:             c.GPIO,
			Type:             c.Type,
			Name:             c.Name,
			On:               isOn(State{State: st.State, Value: st.Value}) && !stale,
			ConfirmedState:   st.State,
			Stale:            stale,
			PWMValue:         st.Value,
			EmergencyStopped: latched || st.DeviceLatched,
		})
	}
	return out
}

// StateView is an actuator's runtime state for the API (docs/api.md §8.2 status).
type StateView struct {
	State          string
	Value          float64
	Stale          bool // the device's last report is not current
	Emergency      string
	DeviceLatched  bool
	LastCommand    string
	LastCommandAt  *time.Time
	OnSince        *time.Time
	RuntimeSeconds int64
	ReportedAt     *time.Time
	AutoOffAt      *time.Time
	PendingOff     string // issued_by of a hub OFF not yet confirmed, "" if none
}

// State returns an actuator's runtime state; Stale also covers a device
// that is not online (docs/domain.md §1.3).
func (s *Service) State(espID string, gpio int) (StateView, error) {
	online := false
	if d, err := s.devices.Get(espID); err == nil {
		online = d.Status == device.StatusOnline
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.units[key{espID, gpio}]
	if u == nil {
		return StateView{}, ErrNotFound
	}
	st := u.st
	v := StateView{
		State:         st.State,
		Value:         st.Value,
		Stale:         st.Stale || !online,
		Emergency:     st.Emergency,
		DeviceLatched: st.DeviceLatched,
		LastCommand:   st.LastCommand,
		LastCommandAt: st.LastCommandAt,
		OnSince:       st.OnSince,
		ReportedAt:    st.ReportedAt,
	}
	if st.AutoOff != nil {
		at := st.AutoOff.At
		v.AutoOffAt = &at
	}
	if st.PendingOff != nil {
		v.PendingOff = st.PendingOff.IssuedBy
	}
	if isOn(st) && st.OnSince != nil {
		v.RuntimeSeconds = int64(now.Sub(*st.OnSince).Seconds())
	}
	return v, nil
}

// ErrCommandNotFound is an unknown command id.
var ErrCommandNotFound = errors.New("command not found")

// CommandByID returns a command's record: from memory while it is open or
// recent, else from the store.
func (s *Service) CommandByID(ctx context.Context, id string) (store.ActuatorCommand, error) {
	s.mu.Lock()
	if c := s.byCorr[id]; c != nil && c.rec.ID == id {
		rec := c.rec
		s.mu.Unlock()
		return rec, nil
	}
	s.mu.Unlock()

	rec, err := s.store.GetActuatorCommand(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && rec.Status == "") {
		return store.ActuatorCommand{}, ErrCommandNotFound
	}
	return rec, err
}

// History returns an actuator's newest history rows and their total.
func (s *Service) History(ctx context.Context, espID string, gpio, limit int) ([]store.ActuatorCommand, int, error) {
	return s.store.ActuatorHistory(ctx, espID, gpio, limit)
}
