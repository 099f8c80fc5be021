package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// Device credentials live in the control database: a save replaces the
// device's row, a delete removes it, and the explorer never shows a hash.
func TestDeviceCredentialsInTheControlDatabase(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	at := time.Now().UTC().Truncate(time.Millisecond)
	for _, c := range []store.DeviceCredential{
		{EspID: "ESP_A1B2C3", PasswordHash: []byte("$2a$06$first"), Version: 1, IssuedBy: "ana", IssuedAt: at},
		{EspID: "ESP_D4E5F6", PasswordHash: []byte("$2a$06$other"), Version: 1, IssuedBy: "ana", IssuedAt: at},
		{EspID: "ESP_A1B2C3", PasswordHash: []byte("$2a$06$second"), Version: 2, IssuedBy: "bo", IssuedAt: at},
	} {
		if err := s.SaveDeviceCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteDeviceCredential(ctx, "ESP_D4E5F6"); err != nil {
		t.Fatal(err)
	}
	rows, err := s.LoadDeviceCredentials(ctx)
	if err != nil || len(rows) != 1 || string(rows[0].PasswordHash) != "$2a$06$second" || rows[0].Version != 2 ||
		rows[0].IssuedBy != "bo" || !rows[0].IssuedAt.Equal(at) {
		t.Fatalf("rows %+v: %v", rows, err)
	}
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE name = 'device_credentials'`).
		Scan(&n); err != nil || n != 0 {
		t.Fatalf("device_credentials in the main database: %d %v", n, err)
	}

	p, err := s.Explorer().Rows(ctx, "control.device_credentials", RowQuery{Limit: 10})
	if err != nil || len(p.Rows) != 1 || value(p, 0, "password_hash") != Masked || value(p, 0, "esp_id") != "ESP_A1B2C3" {
		t.Fatalf("explorer %+v: %v", p.Rows, err)
	}
}
