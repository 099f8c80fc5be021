package contract

import "testing"

func TestSubzoneSafeEncodesTheProtocolExample(t *testing.T) {
	b, err := Marshal(SubzoneSafe{
		SubzoneID:     "bed_north",
		Action:        "enable",
		Reason:        "maintenance",
		Timestamp:     1767600930,
		CorrelationID: "sz-7f3a91c2-0006",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"subzone_id":"bed_north","action":"enable","reason":"maintenance","timestamp":1767600930,` +
		`"correlation_id":"sz-7f3a91c2-0006"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}

func TestDeviceText(t *testing.T) {
	tests := []struct {
		name, in string
		n        int
		want     string
	}{
		{"short text unchanged", "Bed north", 32, "Bed north"},
		{"quotes, backslashes and controls removed", "a\"b\\c\nd", 32, "abcd"},
		{"cut to the byte limit", "abcdefghij", 4, "abcd"},
		{"never splits a character", "ab°C", 3, "ab"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := DeviceText(tc.in, tc.n); got != tc.want {
				t.Fatalf("DeviceText(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
		})
	}
}
