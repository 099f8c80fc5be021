package broker

import (
	"errors"
	"fmt"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kaiserhub/kaiser/internal/contract"
)

// AuthMode is who may connect to the embedded broker and what they may do
// (docs/domain.md §1.2, docs/decisions/0018-device-credentials.md).
type AuthMode string

const (
	// AuthOff admits every client anonymously; only writes are checked
	// (docs/decisions/0012-mqtt-door.md). For fleets not yet provisioned
	// with credentials.
	AuthOff AuthMode = "off"
	// AuthDevices applies the device credentials and the device ACL.
	AuthDevices AuthMode = "devices"
)

// ParseAuthMode reads a --mqtt-auth value.
func ParseAuthMode(s string) (AuthMode, error) {
	switch m := AuthMode(s); m {
	case AuthOff, AuthDevices:
		return m, nil
	}
	return "", fmt.Errorf("mqtt auth %q: must be off or devices", s)
}

// ErrBadCredentials is a device id's CONNECT whose username or password
// does not match the device's credentials.
var ErrBadCredentials = errors.New("bad device credentials")

// Credentials are the devices' MQTT credentials as the broker asks them.
type Credentials interface {
	// Check verifies a CONNECT's username and password for the device id
	// espID. It returns the generation of the credentials that matched, 0
	// when espID has none (the client may then only register), or
	// ErrBadCredentials.
	Check(espID, username string, password []byte) (generation uint64, err error)
	// Generation is espID's current credentials, 0 for none.
	Generation(espID string) uint64
}

// grant is what a network session may do in devices mode. Its zero value
// is a client that acts for no device: it may use only the topics under
// the operator's allowed prefixes.
type grant struct {
	// espID is the device id the session connected with, "" for a client
	// id of another shape.
	espID string
	// generation is the credentials the session authenticated with; 0 is
	// an uncredentialed device id, which may only register.
	generation uint64
}

// Refusal reasons of devices mode (kaiser_broker_refused_total).
const (
	refusedBadCredentials = "bad_credentials"
	refusedNotDevice      = "not_a_device"
	refusedNotReadable    = "topic_not_readable"
	refusedRotated        = "credentials_rotated"
)

// authenticate decides a CONNECT in devices mode: a client id of the device
// shape is a device; one with credentials must present them (username =
// the id), one without may connect to register. Any other client, and one
// whose broker assigned the id, is admitted only when the operator opened
// topic prefixes for such clients. The password is never logged.
func (e *Embedded) authenticate(cl *mqtt.Client, pk packets.Packet) (grant, bool) {
	if pk.Connect.ClientIdentifier == "" || !contract.ValidEspID(cl.ID) {
		if len(e.limits.AllowPrefixes) > 0 {
			return grant{}, true
		}
		e.refused.WithLabelValues(refusedNotDevice).Inc()
		e.log.Warn("mqtt connect refused: client id is not a device id and no topic prefix is open to other clients",
			"client_id", cl.ID, "remote", cl.Net.Remote)
		return grant{}, false
	}
	var password []byte
	if pk.Connect.PasswordFlag {
		password = pk.Connect.Password
	}
	gen, err := e.cfg.Credentials.Check(cl.ID, string(pk.Connect.Username), password)
	if err != nil {
		e.refused.WithLabelValues(refusedBadCredentials).Inc()
		e.log.Warn("mqtt connect refused: bad device credentials",
			"client_id", cl.ID, "remote", cl.Net.Remote, "username_given", pk.Connect.UsernameFlag,
			"password_given", pk.Connect.PasswordFlag)
		return grant{}, false
	}
	return grant{espID: cl.ID, generation: gen}, true
}

// stillCurrent reports whether the credentials g authenticated with are
// still the device's. It runs once the session is in the set: credentials
// rotated before that are caught here, after it by Revoke.
func (e *Embedded) stillCurrent(cl *mqtt.Client, g grant) bool {
	if g.espID == "" || e.cfg.Credentials.Generation(g.espID) == g.generation {
		return true
	}
	e.refused.WithLabelValues(refusedRotated).Inc()
	e.log.Warn("mqtt connect refused: the device's credentials changed while it connected",
		"client_id", cl.ID, "remote", cl.Net.Remote)
	return false
}

// Revoke disconnects every session of the device espID that did not
// authenticate with the credentials generation keep (0: every session of
// the id): after a rotation the old password stops working at once, also
// for a session already connected with it. It returns the sessions
// disconnected; their wills fire as for any lost connection.
func (e *Embedded) Revoke(espID string, keep uint64) int {
	n := 0
	for cl, g := range e.sessions.actingFor(espID) {
		if (keep != 0 && g.generation == keep) || cl.Closed() {
			continue
		}
		_ = e.server.DisconnectClient(cl, packets.ErrNotAuthorized)
		e.log.Info("mqtt session disconnected: its device credentials were replaced or removed",
			"client_id", cl.ID, "remote", cl.Net.Remote)
		n++
	}
	return n
}

// allowedPrefix reports a topic or filter under a prefix the operator
// opened to every client (--mqtt-allow-prefix).
func (e *Embedded) allowedPrefix(topic string) bool {
	for _, p := range e.limits.AllowPrefixes {
		if strings.HasPrefix(topic, p) {
			return true
		}
	}
	return false
}

// mayWriteAs is the devices-mode write rule: an authenticated device may
// publish its own device→hub topics (docs/protocol.md §2.1, newer firmware's
// included) under any root the contract accepts; an uncredentialed device
// id only the kind it registers with (register: its heartbeat; for its will:
// system/will). Every client may publish under the allowed prefixes.
func (e *Embedded) mayWriteAs(g grant, topic string, register contract.Kind) bool {
	if e.allowedPrefix(topic) {
		return true
	}
	if g.espID == "" {
		return false
	}
	t, err := contract.ParseTopic(topic)
	if err != nil || t.EspID != g.espID {
		return false
	}
	return g.generation != 0 || t.Kind == register
}

// mayRead is the devices-mode read rule, for subscription filters and, at
// delivery, topic names: an authenticated device may read its own
// hub→device topics on any root (`+` included, and `actuator/+/command`),
// `kaiser/broadcast/emergency` and `kaiser/+/server/status`; an
// uncredentialed device id only its heartbeat ack. Every client may read
// under the allowed prefixes. No filter with `#` matches a device's own
// topics only, so none is allowed.
func (e *Embedded) mayRead(g grant, filter string) bool {
	if e.allowedPrefix(filter) {
		return true
	}
	if g.espID == "" {
		return false
	}
	full := g.generation != 0
	if filter == contract.BroadcastEmergencyTopic {
		return full
	}
	levels := strings.SplitN(filter, "/", 5)
	if len(levels) < 4 || levels[0] != "kaiser" || !rootLevel(levels[1]) {
		return false
	}
	if len(levels) == 4 {
		return full && levels[2] == "server" && levels[3] == "status"
	}
	if levels[2] != "esp" || levels[3] != g.espID {
		return false
	}
	if !full {
		return levels[4] == "system/heartbeat/ack"
	}
	return contract.IsHubToDeviceSuffix(levels[4])
}

// rootLevel accepts the kaiser root of a filter: a root the contract
// accepts on inbound topics (the empty one included) or `+`.
func rootLevel(s string) bool {
	return s == "+" || len(s) <= contract.MaxInboundKaiserID && !strings.ContainsAny(s, "+#")
}

// AuthMode is the mode the broker runs in.
func (e *Embedded) AuthMode() AuthMode { return e.cfg.Auth }
