package emergency

import (
	"context"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/store"
)

// watch follows device events: a latched device that comes online is
// re-safed (docs/protocol.md E3), one marked for re-safing is re-safed at
// its next heartbeat, and newer firmware is offered its tokens (S4).
func (s *Service) watch() {
	if s.events == nil {
		return
	}
	s.sub = s.events.Subscribe(1024, event.TypeDeviceStatus, event.TypeEspHealth)
	s.goSafe(func() {
		for {
			select {
			case <-s.closed:
				return
			case ev := <-s.sub.C:
				s.onEvent(ev)
			}
		}
	})
}

func (s *Service) onEvent(ev event.Event) {
	switch p := ev.Data.(type) {
	case event.DeviceStatus:
		switch p.Status {
		case device.StatusOffline:
			if s.Latched(p.EspID) {
				s.mu.Lock()
				s.resafe[p.EspID] = true
				s.mu.Unlock()
			}
		case device.StatusOnline:
			s.cameOnline(p.EspID, ev.Time)
		}
	case event.EspHealth:
		if p.Source == "heartbeat" && p.Status == device.StatusOnline {
			s.heartbeat(p.EspID)
		}
	}
}

// cameOnline re-safes a latched device that went online at `at`, unless
// the config push of that same heartbeat already did (a reboot, B2), and
// offers newer firmware its tokens once no re-safing runs.
func (s *Service) cameOnline(espID string, at time.Time) {
	claimed := s.Latched(espID) && s.claimResafe(espID, at)
	now := s.offerNow(espID, true, at)
	s.goSafe(func() {
		ctx := context.Background()
		if claimed {
			s.runResafe(ctx, espID, "reconnect")
		} else if now {
			s.offerTokens(ctx, espID, true)
		}
	})
}

// heartbeat re-safes a device marked for it and offers tokens once per
// hub run to newer firmware that has not confirmed them.
func (s *Service) heartbeat(espID string) {
	s.mu.RLock()
	marked, tried := s.resafe[espID], s.tokenTried[espID]
	s.mu.RUnlock()
	if !marked && tried {
		return
	}

	claimed := marked && s.claimResafe(espID, time.Time{})
	now := s.offerNow(espID, false, time.Time{})
	s.goSafe(func() {
		ctx := context.Background()
		if claimed {
			s.runResafe(ctx, espID, "pending")
		} else if now {
			s.offerTokens(ctx, espID, false)
		}
	})
}

// HandlePushPublished is the device registry's push hook: every push to a
// hub-latched device other than a clear by re-configuration is followed at
// once by the re-safing (docs/protocol.md E7, B2); after a reboot newer
// firmware is also offered its tokens, after the re-safing.
func (s *Service) HandlePushPublished(r device.PushResult) {
	if r.Trigger == TriggerClear {
		return
	}
	reboot := r.Trigger == "reboot"
	claimed := s.Latched(r.EspID) && s.claimResafe(r.EspID, time.Time{})
	now := reboot && s.offerNow(r.EspID, true, time.Time{})
	if !claimed && !now {
		return
	}

	s.goSafe(func() {
		ctx := context.Background()
		if claimed {
			s.runResafe(ctx, r.EspID, "config push ("+r.Trigger+")")
		} else {
			s.offerTokens(ctx, r.EspID, true)
		}
	})
}

// offerNow decides when newer firmware is offered its tokens (S4): now,
// unless a re-safing of the device is claimed or running, which then offers
// them when its device stop is out, or an offer started at or after since
// (the reboot's push of the same reconnect made it). Nothing but OFFs may
// precede the re-safing (docs/protocol.md E3), and an offer waits up to
// 10 s for its answers. force is offerTokens' force; requests meanwhile add up.
func (s *Service) offerNow(espID string, force bool, since time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resafing[espID] {
		s.offerAfter[espID] = s.offerAfter[espID] || force
		return false
	}
	last, ok := s.offered[espID]
	return since.IsZero() || !ok || last.Before(since)
}

// HandlePushResult is the device registry's settled-push hook: it
// completes a clear by re-configuration.
func (s *Service) HandlePushResult(r device.PushResult) {
	if r.Trigger == TriggerClear {
		deliver(&s.waits, s.waits.pushes, r.EspID, r)
	}
}

// claimResafe reserves espID's re-safing: false while one runs, or when one
// started at or after since (the same reconnect seen twice). It is taken
// synchronously, so the online event that follows a push sees it.
func (s *Service) claimResafe(espID string, since time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resafing[espID] {
		return false
	}
	if last, ok := s.resafed[espID]; ok && !since.IsZero() && !last.Before(since) {
		return false
	}
	s.resafing[espID] = true
	s.resafed[espID] = time.Now()
	delete(s.resafe, espID)
	return true
}

// runResafe is E3 for a claimed device: OFF to each configured actuator,
// then the device stop with its token, after the largest valve travel time.
// A device that is not online stays marked and is re-safed when it is.
// Token offers asked for meanwhile follow; a device stop sent with a token
// the device had not confirmed is sent again once it confirms the new one,
// since newer production builds refuse a stop without their token (S4).
func (s *Service) runResafe(ctx context.Context, espID, why string) {
	trusted := s.tokenConfirmed(espID)
	release := func(mark, stopped bool) {
		s.mu.Lock()
		delete(s.resafing, espID)
		if mark {
			s.resafe[espID] = true
		}
		force, offer := s.offerAfter[espID]
		delete(s.offerAfter, espID)
		s.mu.Unlock()
		if offer && s.offerTokens(ctx, espID, force) && stopped && !trusted {
			s.publishDeviceStop(espID, "")
		}
	}

	st, ok := s.stopOf(espID)
	if !ok {
		release(false, false)
		return
	}
	d, err := s.devices.Get(espID)
	if err != nil || !reachable(d) {
		release(err == nil, false)
		return
	}

	s.log.Warn("re-safing a latched device", "esp_id", espID, "why", why,
		"incident_correlation_id", st.incident)
	var travel time.Duration
	for _, o := range s.acts.Outputs(espID) {
		o.EspID = espID
		if a := s.off(ctx, o, st, why); !a.Success {
			s.log.Warn("re-safing OFF not sent", "esp_id", espID, "gpio", o.GPIO, "message", a.Message)
		}
		if o.Type == "valve" {
			travel = max(travel, o.ValveTravel)
		}
	}
	s.later(travel, func() {
		release(false, s.publishDeviceStop(espID, ""))
	})
}

// stopOf is the stop a latched device is held by: its own latch, else the global one.
func (s *Service) stopOf(espID string) (stopRecord, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l := s.latches[deviceScope(espID)]
	if l == nil || !l.Active {
		l = s.latches[store.LatchGlobal]
	}
	if l == nil || !l.Active {
		return stopRecord{}, false
	}
	return stopRecord{
		incident: l.IncidentCorrelationID,
		reason:   l.Reason,
		user:     l.ActivatedBy,
		at:       l.ActivatedAt,
	}, true
}
