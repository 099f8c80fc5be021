package contract

// DecodeSystemCommandResult decodes `system/command/response` as newer
// firmware answers commands other than factory_reset: `command` and
// `success`, `status` optional (docs/protocol.md §3.1.11). The hub reads
// the answer to set_emergency_token with it (docs/protocol.md S4).
func DecodeSystemCommandResult(t Topic, payload []byte) (EmergencyReply, error) {
	return decode(payload, func(d *decoder) (r EmergencyReply) {
		d.matchIDs(t, false, false)
		r.Command = required[string](d, "command")
		r.Status = d.text("status")
		r.EspID = t.EspID
		r.Success = optional[bool](d, "success")
		r.Message = d.text("error", "message")
		return r
	})
}
