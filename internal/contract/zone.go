package contract

// SubzoneSafe is `subzone/safe` (docs/protocol.md §3.2.7). Only newer
// firmware subscribes to it; the baseline never hears it (Z5).
type SubzoneSafe struct {
	SubzoneID     string `json:"subzone_id"`
	Action        string `json:"action"` // enable or disable
	Reason        string `json:"reason"`
	Timestamp     int64  `json:"timestamp"`
	CorrelationID string `json:"correlation_id"`
}

// DeviceText is free text as the device may get it: without the characters
// it would copy unescaped into its own JSON, and cut to at most n bytes
// without splitting a character (docs/protocol.md J4).
func DeviceText(s string, n int) string {
	return truncate(SanitizeText(s), n)
}
