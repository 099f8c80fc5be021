package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Credential is a node's MQTT username and password.
type Credential struct {
	Username string
	Password string
}

// ReadCredentials reads the credentials file of `kaiser sim --credentials`:
// the replies of the hub's POST /api/v1/esp/devices/{esp_id}/mqtt-credentials
// as they come, JSON objects `{"device_id","username","password"}` one after
// another (appending each reply to the file is enough). A later object for
// a device replaces an earlier one, so an appended rotation wins; an object
// without username uses the device id.
func ReadCredentials(r io.Reader) (map[string]Credential, error) {
	dec := json.NewDecoder(r)
	out := map[string]Credential{}
	for n := 1; ; n++ {
		var c struct {
			DeviceID string `json:"device_id"`
			Username string `json:"username"`
			Password string `json:"password"`
		}
		err := dec.Decode(&c)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("credentials object %d: %w", n, err)
		}
		if c.DeviceID == "" || c.Password == "" {
			return nil, fmt.Errorf("credentials object %d: needs a device_id and a password", n)
		}
		if c.Username == "" {
			c.Username = c.DeviceID
		}
		out[c.DeviceID] = Credential{Username: c.Username, Password: c.Password}
	}
}
