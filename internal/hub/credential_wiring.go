package hub

import (
	"context"

	"github.com/kaiserhub/kaiser/internal/debugapi"
)

// credentialDeps forwards the credential service's questions to the device
// registry and the broker, which are built after it.
type credentialDeps struct{ h *Hub }

func (c credentialDeps) Status(espID string) (string, bool) { return c.h.Devices.Status(espID) }

func (c credentialDeps) Known(espID string) bool { return c.h.Devices.Known(espID) }

// Revoke ends the device's sessions on the embedded broker; an external
// broker's sessions are not the hub's (docs/decisions/0023-external-broker.md).
func (c credentialDeps) Revoke(espID string, keep uint64) int {
	if c.h.Broker == nil {
		return 0
	}
	return c.h.Broker.Revoke(espID, keep)
}

// loadCredentials loads the device credentials once the registry is loaded
// and removes a device's credentials with the device.
func (h *Hub) loadCredentials(ctx context.Context) error {
	if err := h.Credentials.Load(ctx); err != nil {
		return err
	}
	h.Devices.OnDeleted(func(ctx context.Context, espID string) {
		if err := h.Credentials.Remove(ctx, espID); err != nil {
			h.Log.Error("removing the MQTT credentials of a deleted device failed; they go at the next start",
				"esp_id", espID, "error", err)
		}
	})
	return nil
}

// mockCredentials issues mock devices their MQTT credentials in devices
// mode (docs/api.md §16.1); nil in off mode, where they connect anonymously.
func (h *Hub) mockCredentials() debugapi.Credentials {
	if !h.mqttAuth() {
		return nil
	}
	return func(ctx context.Context, espID string) (string, string, error) {
		c, err := h.Credentials.Issue(ctx, espID, "mock")
		return c.Username, c.Password, err
	}
}
