package zone

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Kinds of subzone operation a device answers.
const (
	opAssign = "assign"
	opRemove = "remove"
	opSafe   = "safe"
)

// Limits of a subzone (docs/domain.md §7.1) and of what it sends.
const (
	maxSubzonePins = 20
	// safeReasonBytes keeps subzone/safe within the 160 bytes a 256-byte
	// parse pool takes (docs/protocol.md §7.4) with the longest ids.
	safeReasonBytes = 20
)

// SubzoneRequest is an operator's subzone assignment (docs/api.md §9).
type SubzoneRequest struct {
	SubzoneID    string
	Name         string
	ParentZoneID *string // nil or "": the device's zone
	GPIOs        []int
	SafeMode     bool
}

// SubzoneResult is what a subzone operation did at once.
type SubzoneResult struct {
	DeviceID  string
	SubzoneID string
	GPIOs     []int
	SafeMode  bool
	Status    string
	Topic     string
	Sent      bool
}

// SubzoneInfo is a subzone with the configured components on its pins.
type SubzoneInfo struct {
	store.Subzone
	SensorCount   int
	ActuatorCount int
}

// AssignSubzone publishes a subzone to its device and stores it as pending
// once the publish succeeded (docs/domain.md §7.3); the device's ack makes
// it active or error. Re-assigning an id replaces that subzone.
func (s *Service) AssignSubzone(ctx context.Context, espID string, r SubzoneRequest) (SubzoneResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	d, err := s.approved(espID)
	if err != nil {
		return SubzoneResult{}, err
	}
	if d.ZoneID == "" {
		return SubzoneResult{}, fmt.Errorf("%w: %s", ErrNoZone, espID)
	}
	zoneID := strings.ToLower(d.ZoneID)
	if r.ParentZoneID != nil && *r.ParentZoneID != "" && !strings.EqualFold(*r.ParentZoneID, zoneID) {
		return SubzoneResult{}, fmt.Errorf("%w: %s is in zone %s", ErrZoneMismatch, espID, zoneID)
	}

	id := strings.ToLower(r.SubzoneID)
	gpios, err := s.checkPins(d, id, r.GPIOs)
	if err != nil {
		return SubzoneResult{}, err
	}
	if err := reachable(d); err != nil {
		return SubzoneResult{}, err
	}
	old := s.subzones[espID][id]
	if old != nil && old.Status == SubzoneRemoving {
		return SubzoneResult{}, fmt.Errorf("%w: subzone %s is being removed", ErrInvalidState, id)
	}

	now := s.now()
	sz := store.Subzone{
		EspID:        espID,
		SubzoneID:    id,
		Name:         r.Name,
		ParentZoneID: zoneID,
		GPIOs:        gpios,
		SafeMode:     r.SafeMode,
		Status:       SubzonePending,
		CreatedAt:    now,
		UpdatedAt:    now,
	}
	if old != nil {
		sz.CreatedAt = old.CreatedAt
	}
	if err := s.sendSubzone(ctx, d, &sz); err != nil {
		return SubzoneResult{}, err
	}
	return s.result(d, sz, "subzone/assign"), nil
}

func (s *Service) result(d device.Device, sz store.Subzone, suffix string) SubzoneResult {
	return SubzoneResult{
		DeviceID:  d.DeviceID,
		SubzoneID: sz.SubzoneID,
		GPIOs:     sz.GPIOs,
		SafeMode:  sz.SafeMode,
		Status:    sz.Status,
		Topic:     contract.DeviceTopic(d.KaiserID, d.DeviceID, suffix),
		Sent:      true,
	}
}

// checkPins applies the pin rules of a subzone (docs/domain.md §7.1, §8.1):
// 1–20 pins valid for the board, pin 0 never, and none held by another
// subzone of the device. Repeated pins count once; s.mu is held.
func (s *Service) checkPins(d device.Device, id string, gpios []int) ([]int, error) {
	var pins []int
	for _, g := range gpios {
		if !slices.Contains(pins, g) {
			pins = append(pins, g)
		}
	}
	if len(pins) == 0 || len(pins) > maxSubzonePins {
		return nil, &PinError{Msg: fmt.Sprintf("a subzone has 1-%d pins, not %d", maxSubzonePins, len(pins))}
	}

	b := sensor.BoardFor(d.HardwareType)
	for _, g := range pins {
		if msg := boardRefuses(b, g); msg != "" {
			return nil, &PinError{GPIO: g, Msg: msg}
		}
	}

	for _, otherID := range sortedIDs(s.subzones[d.DeviceID]) {
		other := s.subzones[d.DeviceID][otherID]
		if otherID == id {
			continue // an update excludes the subzone it replaces (docs/domain.md §8.2)
		}
		for _, g := range pins {
			if slices.Contains(other.GPIOs, g) {
				return nil, &PinError{
					GPIO:     g,
					Conflict: true,
					Holder:   otherID,
					Msg:      fmt.Sprintf("GPIO %d already belongs to subzone %s", g, otherID),
				}
			}
		}
	}
	return pins, nil
}

// boardRefuses says why pin g cannot be in a subzone of board b; "" when it can.
func boardRefuses(b sensor.Board, g int) string {
	switch {
	case g == 0:
		return "GPIO 0 is not allowed in a subzone"
	case g < 0 || g > b.Max:
		return fmt.Sprintf("GPIO %d is outside the %s range 0-%d", g, b.Name, b.Max)
	case b.NotBonded[g]:
		return fmt.Sprintf("GPIO %d is not bonded on %s", g, b.Name)
	case b.Reserved[g]:
		return fmt.Sprintf("GPIO %d is reserved by the system on %s", g, b.Name)
	}
	return ""
}

// sendSubzone publishes sz (every string key present, safe_mode_active
// explicit: docs/protocol.md Q18, Z3), then stores it as pending and waits
// for the ack; nothing is stored when the publish fails; s.mu is held.
func (s *Service) sendSubzone(ctx context.Context, d device.Device, sz *store.Subzone) error {
	o := &op{kind: opAssign, correlationID: correlationID("sz")}
	msg := contract.SubzoneAssign{
		SubzoneID:      sz.SubzoneID,
		SubzoneName:    contract.DeviceText(sz.Name, wireText),
		ParentZoneID:   sz.ParentZoneID,
		AssignedGPIOs:  sz.GPIOs,
		SafeModeActive: sz.SafeMode,
		Timestamp:      s.now().Unix(),
		CorrelationID:  o.correlationID,
	}
	if err := s.publish(ctx, contract.DeviceTopic(d.KaiserID, d.DeviceID, "subzone/assign"), msg); err != nil {
		return err
	}

	sz.Status, sz.ErrorCode, sz.ErrorMessage = SubzonePending, nil, ""
	if err := s.saveSubzone(ctx, *sz); err != nil {
		return err
	}
	s.awaitSubzone(d.DeviceID, sz.SubzoneID, o)
	return nil
}

// RemoveSubzone publishes the removal. The baseline never acknowledges one,
// so its subzone is deleted at once; newer firmware's stays `removing` until
// it confirms (docs/domain.md §7.3, docs/protocol.md Z4).
func (s *Service) RemoveSubzone(ctx context.Context, espID, subzoneID string) (SubzoneResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	d, sz, err := s.reachableSubzone(espID, subzoneID)
	if err != nil {
		return SubzoneResult{}, err
	}

	o := &op{kind: opRemove, correlationID: correlationID("sz")}
	msg := contract.SubzoneRemove{
		SubzoneID:     sz.SubzoneID,
		Reason:        "operator",
		Timestamp:     s.now().Unix(),
		CorrelationID: o.correlationID,
	}
	if err := s.publish(ctx, contract.DeviceTopic(d.KaiserID, espID, "subzone/remove"), msg); err != nil {
		return SubzoneResult{}, err
	}

	if newerFirmware(d) {
		sz.Status = SubzoneRemoving
		if err := s.saveSubzone(ctx, sz); err != nil {
			return SubzoneResult{}, err
		}
		s.awaitSubzone(espID, sz.SubzoneID, o)
		return s.result(d, sz, "subzone/remove"), nil
	}

	if err := s.dropSubzone(ctx, espID, sz.SubzoneID); err != nil {
		return SubzoneResult{}, err
	}
	s.emitSubzone(espID, sz.SubzoneID, "subzone_removed", nil, "removed; the baseline firmware never confirms a removal")
	res := s.result(d, sz, "subzone/remove")
	res.Status = "removed"
	return res, nil
}

// SetSafeMode switches a subzone's pin isolation on newer firmware. The
// baseline does not subscribe to subzone/safe, so it is refused there and
// nothing is stored: the hub never claims pins are isolated when they are
// not (docs/protocol.md Z5). An error ack reverts the stored state.
func (s *Service) SetSafeMode(
	ctx context.Context, espID, subzoneID string, on bool, reason string,
) (SubzoneResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	d, err := s.devices.Get(espID)
	if err != nil {
		return SubzoneResult{}, err
	}
	if _, ok := s.subzones[espID][strings.ToLower(subzoneID)]; !ok {
		return SubzoneResult{}, fmt.Errorf("%w: %s/%s", ErrSubzoneNotFound, espID, subzoneID)
	}
	if !newerFirmware(d) {
		return SubzoneResult{}, fmt.Errorf("%w: %s runs baseline firmware, which has no subzone safe mode",
			ErrNotSupported, espID)
	}
	d, sz, err := s.reachableSubzone(espID, subzoneID)
	if err != nil {
		return SubzoneResult{}, err
	}

	action := "disable"
	if on {
		action = "enable"
	}
	o := &op{kind: opSafe, correlationID: correlationID("sz"), prevSafe: sz.SafeMode}
	msg := contract.SubzoneSafe{
		SubzoneID:     sz.SubzoneID,
		Action:        action,
		Reason:        contract.DeviceText(reason, safeReasonBytes),
		Timestamp:     s.now().Unix(),
		CorrelationID: o.correlationID,
	}
	if err := s.publish(ctx, contract.DeviceTopic(d.KaiserID, espID, "subzone/safe"), msg); err != nil {
		return SubzoneResult{}, err
	}

	sz.SafeMode = on
	if err := s.saveSubzone(ctx, sz); err != nil {
		return SubzoneResult{}, err
	}
	s.awaitSubzone(espID, sz.SubzoneID, o)
	return s.result(d, sz, "subzone/safe"), nil
}

// reachableSubzone is an existing subzone of an approved, online device
// that is not being removed; publishing to it can reach the device
// (docs/protocol.md A5); s.mu is held.
func (s *Service) reachableSubzone(espID, subzoneID string) (device.Device, store.Subzone, error) {
	d, err := s.devices.Get(espID)
	if err != nil {
		return d, store.Subzone{}, err
	}
	sz, ok := s.subzones[espID][strings.ToLower(subzoneID)]
	if !ok {
		return d, store.Subzone{}, fmt.Errorf("%w: %s/%s", ErrSubzoneNotFound, espID, subzoneID)
	}
	if err := reachable(d); err != nil {
		return d, *sz, err
	}
	if sz.Status == SubzoneRemoving {
		return d, *sz, fmt.Errorf("%w: subzone %s is being removed", ErrInvalidState, sz.SubzoneID)
	}
	return d, *sz, nil
}

// reachable refuses a device a subzone message cannot reach: not approved,
// offline (docs/protocol.md A5), or deaf after a root change (A4).
func reachable(d device.Device) error {
	switch {
	case !isApproved(d.Status):
		return fmt.Errorf("%w: %s is %s", device.ErrNotApproved, d.DeviceID, d.Status)
	case d.Status != device.StatusOnline:
		return fmt.Errorf("%w: %s", device.ErrOffline, d.DeviceID)
	case d.RebootRequired:
		return fmt.Errorf("%w: %s", ErrUnreachable, d.DeviceID)
	}
	return nil
}

// Subzones lists a device's subzones, ordered by id, with its zone.
func (s *Service) Subzones(espID string) (zoneID string, out []SubzoneInfo, err error) {
	d, err := s.devices.Get(espID)
	if err != nil {
		return "", nil, err
	}
	s.mu.Lock()
	subs := s.deviceSubzones(espID)
	s.mu.Unlock()

	out = make([]SubzoneInfo, 0, len(subs))
	for _, sz := range subs {
		out = append(out, s.subzoneInfo(sz))
	}
	return d.ZoneID, out, nil
}

// Subzone returns one subzone of a device.
func (s *Service) Subzone(espID, subzoneID string) (SubzoneInfo, error) {
	if _, err := s.devices.Get(espID); err != nil {
		return SubzoneInfo{}, err
	}
	s.mu.Lock()
	sz, ok := s.subzones[espID][strings.ToLower(subzoneID)]
	var c store.Subzone
	if ok {
		c = cloneSubzone(*sz)
	}
	s.mu.Unlock()

	if !ok {
		return SubzoneInfo{}, fmt.Errorf("%w: %s/%s", ErrSubzoneNotFound, espID, subzoneID)
	}
	return s.subzoneInfo(c), nil
}

func (s *Service) subzoneInfo(sz store.Subzone) SubzoneInfo {
	return SubzoneInfo{
		Subzone:       sz,
		SensorCount:   countOn(s.cfg.SensorPins, sz),
		ActuatorCount: countOn(s.cfg.ActuatorPins, sz),
	}
}

// countOn counts the configured components whose pin is in the subzone.
func countOn(pins func(string) []int, sz store.Subzone) int {
	if pins == nil {
		return 0
	}
	n := 0
	for _, g := range pins(sz.EspID) {
		if slices.Contains(sz.GPIOs, g) {
			n++
		}
	}
	return n
}

// HandleSubzoneAck is the ingest handler of `subzone/ack`
// (docs/protocol.md §3.1.8): it completes the operation it answers, and every live ack
// reaches the WebSocket as subzone_assignment.
func (s *Service) HandleSubzoneAck(ctx context.Context, m ingest.Message) error {
	ack, err := contract.DecodeSubzoneAck(m.Topic, m.Payload)
	if err != nil {
		return err
	}
	if m.Replay {
		return ingest.Drop(contract.ReasonReplay, "retained subzone ack confirms nothing")
	}
	d, err := s.devices.Admit(m)
	if err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	key, o := s.answeredOp(d.DeviceID, ack)
	sz := s.subzones[key.espID][key.subzoneID]

	switch ack.Status {
	case "subzone_assigned":
		err = s.subzoneAssigned(ctx, key, o, sz)
	case "subzone_removed":
		if sz != nil {
			err = s.dropSubzone(ctx, key.espID, key.subzoneID)
		}
	case "error":
		err = s.subzoneRefused(ctx, key, o, sz, ack)
	default:
		s.log.Warn("subzone ack with an unknown status ignored", "esp_id", d.DeviceID, "status", ack.Status)
		return nil
	}

	id := key.subzoneID
	if id == "" {
		id = ack.SubzoneID
	}
	s.emitSubzone(d.DeviceID, id, ack.Status, ack.ErrorCode, ack.Message)
	return err
}

// answeredOp finds what an ack answers: the operation with its correlation
// id, else the subzone it names; an ack without either (the baseline's JSON
// parse error has subzone_id "") answers the device's only open operation;
// s.mu is held.
func (s *Service) answeredOp(espID string, ack contract.SubzoneAck) (subzoneKey, *op) {
	var only subzoneKey
	var onlyOp *op
	open := 0
	for k, o := range s.ops {
		if k.espID != espID {
			continue
		}
		if ack.CorrelationID != "" && o.correlationID == ack.CorrelationID {
			return k, o
		}
		only, onlyOp = k, o
		open++
	}

	if ack.SubzoneID != "" {
		k := subzoneKey{espID, strings.ToLower(ack.SubzoneID)}
		return k, s.ops[k]
	}
	if open == 1 {
		return only, onlyOp
	}
	return subzoneKey{espID: espID}, nil
}

func (s *Service) subzoneAssigned(ctx context.Context, key subzoneKey, o *op, sz *store.Subzone) error {
	if o != nil && o.kind == opAssign {
		s.endOp(key)
	}
	if sz == nil || sz.Status == SubzoneRemoving {
		return nil
	}

	c := cloneSubzone(*sz)
	now := s.now()
	c.Status, c.LastAckAt, c.ErrorCode, c.ErrorMessage = SubzoneActive, &now, nil, ""
	return s.saveSubzone(ctx, c)
}

// subzoneRefused records the device's refusal: a refused safe-mode switch
// reverts it (docs/domain.md §7.3), anything else marks the subzone error.
func (s *Service) subzoneRefused(ctx context.Context, key subzoneKey, o *op, sz *store.Subzone,
	ack contract.SubzoneAck) error {
	s.log.Warn("device refused a subzone operation", "esp_id", key.espID, "subzone_id", key.subzoneID,
		"error_code", ack.ErrorCode, "message", ack.Message)
	if o != nil {
		s.endOp(key)
	}
	if sz == nil {
		return nil
	}

	c := cloneSubzone(*sz)
	if o != nil && o.kind == opSafe {
		c.SafeMode = o.prevSafe
	} else {
		c.Status, c.ErrorCode, c.ErrorMessage = SubzoneError, ack.ErrorCode, ack.Message
	}
	return s.saveSubzone(ctx, c)
}

// awaitSubzone makes o the open operation of a subzone and starts its ack
// wait (docs/protocol.md Z3); s.mu is held.
func (s *Service) awaitSubzone(espID, subzoneID string, o *op) {
	key := subzoneKey{espID, subzoneID}
	s.endOp(key)
	o.timer = time.AfterFunc(s.cfg.AckTimeout, func() { s.subzoneTimedOut(key, o) })
	s.ops[key] = o
}

func (s *Service) endOp(key subzoneKey) {
	if o := s.ops[key]; o != nil {
		stopTimer(o.timer)
		delete(s.ops, key)
	}
}

// subzoneTimedOut ends an unanswered operation: an assignment stays pending
// (a later heartbeat sends it again), a removal on newer firmware becomes
// error, and a safe-mode switch stands, since newer firmware acks only errors.
func (s *Service) subzoneTimedOut(key subzoneKey, o *op) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.ops[key] != o {
		return
	}
	delete(s.ops, key)

	sz := s.subzones[key.espID][key.subzoneID]
	if sz == nil {
		return
	}
	switch o.kind {
	case opAssign:
		s.log.Warn("no subzone ack; the subzone stays pending", "esp_id", key.espID, "subzone_id", key.subzoneID,
			"timeout", s.cfg.AckTimeout)
	case opRemove:
		c := cloneSubzone(*sz)
		c.Status, c.ErrorMessage = SubzoneError, "no subzone_removed from the device within the ack timeout"
		if err := s.saveSubzone(ctx, c); err != nil {
			s.log.Warn("subzone removal timeout not recorded", "esp_id", key.espID, "error", err)
		}
	}
}

func (s *Service) emitSubzone(espID, subzoneID, status string, code *int64, msg string) {
	s.emit(event.SubzoneAssignment{
		EspID:     espID,
		DeviceID:  espID,
		SubzoneID: subzoneID,
		Status:    status,
		ErrorCode: code,
		Message:   msg,
		Timestamp: s.now().Unix(),
	})
}

// applyStrategy does to a device's subzones what an assignment's strategy
// asks (docs/domain.md §7.2 step 1) and returns the subzones the device must
// remove: transfer gives them the new parent (sent again after the zone ack),
// copy replaces them by clones with new ids, reset deletes them; s.mu is held.
func (s *Service) applyStrategy(ctx context.Context, d device.Device, p Pending) ([]store.Subzone, error) {
	subs := s.deviceSubzones(d.DeviceID)
	if len(subs) == 0 {
		return nil, nil
	}

	if p.Strategy == StrategyTransfer {
		for _, sz := range subs {
			sz.ParentZoneID, sz.Status, sz.ErrorCode, sz.ErrorMessage = p.ZoneID, SubzonePending, nil, ""
			s.endOp(subzoneKey{d.DeviceID, sz.SubzoneID})
			if err := s.saveSubzone(ctx, sz); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}

	for _, sz := range subs {
		if err := s.dropSubzone(ctx, d.DeviceID, sz.SubzoneID); err != nil {
			return nil, err
		}
		s.emitSubzone(d.DeviceID, sz.SubzoneID, "subzone_removed", nil, "removed by the zone change ("+p.Strategy+")")
	}
	if p.Strategy == StrategyCopy {
		for _, sz := range subs {
			if err := s.saveSubzone(ctx, s.cloneFor(sz, p.ZoneID)); err != nil {
				return nil, err
			}
		}
	}
	return subs, nil
}

// cloneFor is sz under a new id in zone zoneID, waiting to be sent; s.mu is held.
func (s *Service) cloneFor(sz store.Subzone, zoneID string) store.Subzone {
	base := sz.SubzoneID
	if len(base) > 23 {
		base = base[:23]
	}
	c := cloneSubzone(sz)
	for {
		c.SubzoneID = base + "_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:8]
		if s.subzones[sz.EspID][c.SubzoneID] == nil {
			break
		}
	}

	now := s.now()
	c.ParentZoneID, c.Status, c.ErrorCode, c.ErrorMessage, c.LastAckAt = zoneID, SubzonePending, nil, "", nil
	c.CreatedAt, c.UpdatedAt = now, now
	return c
}

// publishRemovals tells the device to drop subzones the hub already
// deleted; the baseline never answers (docs/protocol.md Z4); s.mu is held.
func (s *Service) publishRemovals(ctx context.Context, d device.Device, subs []store.Subzone, reason string) {
	for _, sz := range subs {
		msg := contract.SubzoneRemove{
			SubzoneID:     sz.SubzoneID,
			Reason:        reason,
			Timestamp:     s.now().Unix(),
			CorrelationID: correlationID("sz"),
		}
		if err := s.publish(ctx, contract.DeviceTopic(d.KaiserID, d.DeviceID, "subzone/remove"), msg); err != nil {
			s.log.Warn("subzone removal not published", "esp_id", d.DeviceID, "subzone_id", sz.SubzoneID,
				"error", err)
		}
	}
}

// resendSubzones sends every subzone of a device again after its zone was
// confirmed. A device whose root just moved cannot hear them (Q4): they stay
// pending until a heartbeat after its reboot sends them; s.mu is held.
func (s *Service) resendSubzones(ctx context.Context, d device.Device) {
	if d.RebootRequired {
		s.log.Warn("subzones wait for the device's reboot", "esp_id", d.DeviceID)
		return
	}
	s.sendEach(ctx, d, s.deviceSubzones(d.DeviceID))
}

// resendUnconfirmed sends the subzones that are still pending without an
// open operation, at most once per ResyncEvery; s.mu is held.
func (s *Service) resendUnconfirmed(ctx context.Context, d device.Device) {
	st := s.dev(d.DeviceID)
	if !st.lastSubzones.IsZero() && s.now().Sub(st.lastSubzones) < s.cfg.ResyncEvery {
		return
	}

	var waiting []store.Subzone
	for _, sz := range s.deviceSubzones(d.DeviceID) {
		if sz.Status == SubzonePending && s.ops[subzoneKey{d.DeviceID, sz.SubzoneID}] == nil {
			waiting = append(waiting, sz)
		}
	}
	if len(waiting) > 0 {
		st.lastSubzones = s.now()
		s.sendEach(ctx, d, waiting)
	}
}

func (s *Service) sendEach(ctx context.Context, d device.Device, subs []store.Subzone) {
	if d.ZoneID == "" {
		return
	}
	for _, sz := range subs {
		sz.ParentZoneID = strings.ToLower(d.ZoneID)
		if err := s.sendSubzone(ctx, d, &sz); err != nil {
			s.log.Warn("subzone not sent again", "esp_id", d.DeviceID, "subzone_id", sz.SubzoneID, "error", err)
		}
	}
}

// putSubzone keeps a copy of sz in memory; s.mu is held.
func (s *Service) putSubzone(sz store.Subzone) {
	m := s.subzones[sz.EspID]
	if m == nil {
		m = map[string]*store.Subzone{}
		s.subzones[sz.EspID] = m
	}
	c := cloneSubzone(sz)
	m[sz.SubzoneID] = &c
}

// saveSubzone commits sz, then keeps it; s.mu is held.
func (s *Service) saveSubzone(ctx context.Context, sz store.Subzone) error {
	sz.UpdatedAt = s.now()
	if err := s.store.SaveSubzone(ctx, sz); err != nil {
		return err
	}
	s.putSubzone(sz)
	return nil
}

// dropSubzone deletes a subzone and ends its open operation; s.mu is held.
func (s *Service) dropSubzone(ctx context.Context, espID, subzoneID string) error {
	if err := s.store.DeleteSubzone(ctx, espID, subzoneID); err != nil {
		return err
	}
	s.endOp(subzoneKey{espID, subzoneID})
	delete(s.subzones[espID], subzoneID)
	if len(s.subzones[espID]) == 0 {
		delete(s.subzones, espID)
	}
	return nil
}

// deviceSubzones returns copies of a device's subzones, ordered by id; s.mu is held.
func (s *Service) deviceSubzones(espID string) []store.Subzone {
	m := s.subzones[espID]
	out := make([]store.Subzone, 0, len(m))
	for _, id := range sortedIDs(m) {
		out = append(out, cloneSubzone(*m[id]))
	}
	return out
}

func cloneSubzone(sz store.Subzone) store.Subzone {
	sz.GPIOs = slices.Clone(sz.GPIOs)
	return sz
}
