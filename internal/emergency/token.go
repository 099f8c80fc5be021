package emergency

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/store"
)

// tokenAlphabet and tokenLength are docs/protocol.md S4's token shape.
const (
	tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	tokenLength   = 16
)

// newToken draws a token uniformly from the alphabet (bytes beyond the
// largest multiple of its size are drawn again); rand.Read never fails on
// supported platforms.
func newToken() string {
	limit := byte(256 - 256%len(tokenAlphabet))
	out := make([]byte, 0, tokenLength)
	buf := make([]byte, 2*tokenLength)
	for len(out) < tokenLength {
		_, _ = rand.Read(buf)
		for _, c := range buf {
			if c < limit && len(out) < tokenLength {
				out = append(out, tokenAlphabet[int(c)%len(tokenAlphabet)])
			}
		}
	}
	return string(out)
}

// ensureBroadcastToken creates and commits the hub's broadcast token once.
func (s *Service) ensureBroadcastToken(ctx context.Context) error {
	s.mu.RLock()
	have := s.tokens[store.TokenBroadcast] != nil
	s.mu.RUnlock()
	if have {
		return nil
	}

	t := store.EmergencyToken{
		Scope:     store.TokenBroadcast,
		Token:     newToken(),
		UpdatedAt: time.Now().UTC(),
	}
	if err := s.store.SaveEmergencyToken(ctx, t); err != nil {
		return fmt.Errorf("store the broadcast emergency token: %w", err)
	}
	s.mu.Lock()
	s.tokens[t.Scope] = &t
	s.mu.Unlock()
	return nil
}

// broadcastToken is the token every broadcast carries (S4).
func (s *Service) broadcastToken() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t := s.tokens[store.TokenBroadcast]; t != nil {
		return t.Token
	}
	return ""
}

// deviceToken is the auth_token of the device's emergency messages
// (docs/protocol.md E5): the provisioned token once it was sent, else the
// esp_id, the baseline's default.
func (s *Service) deviceToken(espID string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t := s.tokens[deviceScope(espID)]; t != nil && t.SentAt != nil {
		return t.Token
	}
	return espID
}

// tokenConfirmed reports whether the device confirmed the token its
// emergency messages carry.
func (s *Service) tokenConfirmed(espID string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tokens[deviceScope(espID)]
	return t != nil && t.SentAt != nil && t.ConfirmedAt != nil
}

// newerFirmware reports a device whose payloads carry seq (docs/protocol.md §3).
func newerFirmware(d device.Device) bool {
	return d.Metadata["firmware_generation"] == "newer"
}

// offerTokens provisions the device's and the broadcast token on newer
// firmware that is approved and online (docs/protocol.md S4): the device's
// token is committed before it is sent, both are sent, and the provisioning
// is reported unless both are answered with success within 10 s. Without
// force, a device is offered its tokens once per hub run, and not at all
// once it confirmed them. It reports whether the device confirmed them now.
func (s *Service) offerTokens(ctx context.Context, espID string, force bool) bool {
	s.mu.Lock()
	t := s.tokens[deviceScope(espID)]
	skip := !force && (s.tokenTried[espID] || (t != nil && t.ConfirmedAt != nil))
	s.tokenTried[espID] = true
	s.mu.Unlock()
	if skip {
		return false
	}

	d, err := s.devices.Get(espID)
	if err != nil || !reachable(d) || !newerFirmware(d) {
		return false
	}
	s.waits.mu.Lock()
	_, running := s.waits.tokens[espID]
	s.waits.mu.Unlock()
	if running {
		return false
	}

	ch, done := expect(&s.waits, s.waits.tokens, espID, 2)
	defer done()
	s.mu.Lock()
	s.offered[espID] = time.Now()
	s.mu.Unlock()
	if err := s.sendTokens(ctx, d); err != nil {
		s.tokenProblem(espID, "emergency tokens not sent: "+err.Error())
		return false
	}
	if err := s.awaitTokens(ch); err != nil {
		s.tokenProblem(espID, err.Error())
		return false
	}
	s.confirmTokens(ctx, espID)
	return true
}

// sendTokens commits the device's token, then sends it and the broadcast token.
func (s *Service) sendTokens(ctx context.Context, d device.Device) error {
	now := time.Now().UTC()
	s.mu.RLock()
	var t store.EmergencyToken
	if cur := s.tokens[deviceScope(d.DeviceID)]; cur != nil {
		t = *cur
	} else {
		t = store.EmergencyToken{Scope: deviceScope(d.DeviceID), EspID: d.DeviceID, Token: newToken()}
	}
	s.mu.RUnlock()

	// Recorded as sent before it is: a device that got it must never be
	// addressed with the esp_id again, and one that did not accepts any
	// token while it has none (docs/protocol.md §3.2.8).
	t.SentAt, t.UpdatedAt = &now, now
	if err := s.store.SaveEmergencyToken(ctx, t); err != nil {
		return err
	}
	s.mu.Lock()
	s.tokens[t.Scope] = &t
	s.mu.Unlock()

	topic := contract.DeviceTopic(d.KaiserID, d.DeviceID, "system/command")
	for _, c := range []contract.SetEmergencyToken{
		contract.NewSetEmergencyToken("esp", t.Token, now, newCorrelation("tok")),
		contract.NewSetEmergencyToken("broadcast", s.broadcastToken(), now, newCorrelation("tok")),
	} {
		payload, err := contract.Marshal(c)
		if err == nil {
			err = s.broker.Publish(ctx, topic, payload, 1, false)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// awaitTokens waits for the two success answers.
func (s *Service) awaitTokens(ch chan contract.EmergencyReply) error {
	t := time.NewTimer(s.hub(tokenWait))
	defer t.Stop()
	for got := 0; got < 2; {
		select {
		case r := <-ch:
			if r.Success == nil || !*r.Success {
				return fmt.Errorf("the device refused an emergency token: %s", r.Message)
			}
			got++
		case <-t.C:
			return errors.New("no success answer to set_emergency_token within 10 s")
		case <-s.closed:
			return errors.New("hub stopping")
		}
	}
	return nil
}

// confirmTokens records and commits the device's confirmation of its token.
func (s *Service) confirmTokens(ctx context.Context, espID string) {
	now := time.Now().UTC()
	s.mu.Lock()
	t := *s.tokens[deviceScope(espID)]
	t.ConfirmedAt, t.UpdatedAt = &now, now
	s.tokens[t.Scope] = &t
	s.mu.Unlock()
	if err := s.store.SaveEmergencyToken(ctx, t); err != nil {
		s.log.Warn("emergency token confirmation not stored", "esp_id", espID, "error", err)
	}
	if err := s.alerts.Clear(ctx, tokenAlertKey(espID)); err != nil {
		s.log.Warn("resolving the token alert failed", "esp_id", espID, "error", err)
	}
	s.log.Info("emergency tokens provisioned", "esp_id", espID)
}

// tokenProblem reports a provisioning that did not succeed: that device's
// stops may be refused (S4).
func (s *Service) tokenProblem(espID, msg string) {
	s.log.Warn("emergency token provisioning failed; the device may refuse emergency stops",
		"esp_id", espID, "reason", msg)
	err := s.alerts.Raise(context.Background(), notify.Spec{
		Key:      tokenAlertKey(espID),
		Severity: "warning",
		Category: "security",
		Source:   "emergency",
		Title:    "Emergency token not confirmed by " + espID,
		Body:     msg + ". Newer production firmware refuses emergency stops without its tokens.",
		Metadata: map[string]any{"esp_id": espID},
	})
	if err != nil {
		s.log.Warn("raising the token alert failed", "esp_id", espID, "error", err)
	}
}

func tokenAlertKey(espID string) string { return "emergency_token:" + espID }

// stopRefused reports a device that answered unauthorized outside a clear:
// it refused a stop because of its token.
func (s *Service) stopRefused(espID string, r contract.EmergencyReply) {
	s.log.Error("device refused an emergency message: token mismatch", "esp_id", espID, "message", r.Message)
	err := s.alerts.Raise(context.Background(), notify.Spec{
		Key:      "emergency_refused:" + espID,
		Severity: "critical",
		Category: "security",
		Source:   "emergency",
		Title:    espID + " refused an emergency stop",
		Body:     "The device answered unauthorized (" + r.Message + "): its emergency token does not match.",
		Metadata: map[string]any{"esp_id": espID},
	})
	if err != nil {
		s.log.Warn("raising the refusal alert failed", "esp_id", espID, "error", err)
	}
}

// HandleSystemCommandResponse is the ingest handler of
// `system/command/response` (docs/protocol.md §3.1.11): it passes the
// registration check and completes a token provisioning. Other answers
// (factory_reset_initiated) need nothing more.
func (s *Service) HandleSystemCommandResponse(_ context.Context, m ingest.Message) error {
	r, err := contract.DecodeSystemCommandResponse(m.Topic, m.Payload)
	if err != nil {
		var lenient error
		if r, lenient = contract.DecodeSystemCommandResult(m.Topic, m.Payload); lenient != nil {
			return err
		}
	}
	if m.Replay {
		return ingest.Drop(contract.ReasonReplay, "retained command response")
	}
	if _, err := s.devices.Admit(m); err != nil {
		return err
	}
	if r.Command == "set_emergency_token" {
		deliver(&s.waits, s.waits.tokens, m.Topic.EspID, r)
	}
	return nil
}
