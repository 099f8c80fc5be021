package device

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
)

// replicas is a primary's registry and a standby's, each on its own store
// of one PostgreSQL database, as two hub replicas have them.
type replicas struct {
	t                *testing.T
	db               *postgres.Store // the primary's
	primary, standby *Service
}

func newReplicas(t *testing.T) *replicas {
	t.Helper()
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	log := slog.New(slog.DiscardHandler)
	open := func() *Service {
		st, err := postgres.Open(ctx, dsn, postgres.Options{Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close(context.Background()) })
		// Rediscovery after a deletion is not held back for minutes.
		svc := New(Config{DiscoveryPerID: time.Millisecond}, st, &fakeBus{}, event.NewBus(), log)
		if err := svc.Load(ctx); err != nil {
			t.Fatal(err)
		}
		return svc
	}
	r := &replicas{t: t, primary: open(), standby: open()}
	r.db = r.primary.store.(*postgres.Store)
	return r
}

// message is a live message of id on a device topic, received now.
func (r *replicas) message(id, suffix string, payload map[string]any) ingest.Message {
	r.t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		r.t.Fatal(err)
	}
	return ingest.Message{Topic: topic(r.t, "god", id, suffix), Payload: b, ReceivedAt: time.Now()}
}

// beat is a heartbeat the primary handles; its saves are committed on return.
func (r *replicas) beat(id string, uptime int64) {
	r.t.Helper()
	ctx := context.Background()
	m := r.message(id, "system/heartbeat", map[string]any{
		"esp_id": id, "ts": 0, "uptime": uptime, "heap_free": 120000, "wifi_rssi": -60,
	})
	if err := r.primary.HandleHeartbeat(ctx, m); err != nil {
		r.t.Fatalf("heartbeat of %s: %v", id, err)
	}
	if err := r.db.Flush(ctx); err != nil {
		r.t.Fatal(err)
	}
}

// refresh has the standby reload id, as on a change notice.
func (r *replicas) refresh(id string) {
	r.t.Helper()
	if err := r.standby.Refresh(context.Background(), id); err != nil {
		r.t.Fatal(err)
	}
}

// admit is the standby's admission of a reading of id: the drop reason,
// "" when admitted.
func (r *replicas) admit(id string) (Device, string) {
	r.t.Helper()
	d, err := r.standby.Admit(r.message(id, "sensor/4/data", map[string]any{"raw": 1}))
	if err != nil && dropReason(err) == "" {
		r.t.Fatalf("admit %s: %v", id, err)
	}
	return d, dropReason(err)
}

func (r *replicas) mustAdmit(id, wantDrop, after string) Device {
	r.t.Helper()
	d, drop := r.admit(id)
	if drop != wantDrop {
		r.t.Fatalf("after %s: the standby's admission of %s drops %q, want %q", after, id, drop, wantDrop)
	}
	return d
}

// A standby that reloads a device after each change the primary commits
// admits its readings exactly when the primary would: through discovery,
// approval, going online, an alert_config change, deletion, rediscovery
// and a purge of the record.
func TestRefreshFollowsThePrimary(t *testing.T) {
	ctx := context.Background()
	r := newReplicas(t)
	const id = "ESP_R1"

	r.mustAdmit(id, "unknown_device", "nothing")
	r.beat(id, 10)
	r.mustAdmit(id, "unknown_device", "a discovery the standby was not told of")
	r.refresh(id)
	r.mustAdmit(id, "not_approved", "a discovery")
	if got := r.standby.UnknownIDs(); len(got) != 0 {
		t.Fatalf("the standby still counts %v as unknown", got)
	}

	if _, err := r.primary.Approve(ctx, id, "admin", "bench"); err != nil {
		t.Fatal(err)
	}
	r.refresh(id)
	if d := r.mustAdmit(id, "", "the approval"); d.Status != StatusApproved || d.Name != "bench" {
		t.Fatalf("admitted as %s named %q", d.Status, d.Name)
	}

	r.beat(id, 20)
	r.refresh(id)
	if d, err := r.standby.Get(id); err != nil || d.Status != StatusOnline {
		t.Fatalf("standby's device after going online: %+v %v", d.Status, err)
	}

	ac := map[string]any{"alerts_enabled": false}
	if _, err := r.primary.Update(ctx, id, Patch{Metadata: map[string]any{"alert_config": ac}}); err != nil {
		t.Fatal(err)
	}
	r.refresh(id)
	d := r.mustAdmit(id, "", "an alert_config change")
	if got, _ := d.Metadata["alert_config"].(map[string]any); got["alerts_enabled"] != false {
		t.Fatalf("the standby's device has alert_config %v", d.Metadata["alert_config"])
	}

	if err := r.primary.Delete(ctx, id, "admin"); err != nil {
		t.Fatal(err)
	}
	r.refresh(id)
	r.mustAdmit(id, "unknown_device", "the deletion")
	if _, err := r.standby.Get(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("standby's Get after the deletion: %v", err)
	}

	r.beat(id, 30)
	r.refresh(id)
	r.mustAdmit(id, "not_approved", "a rediscovery")

	rec, _, err := r.db.LoadDevice(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.db.PurgeDevice(ctx, id, rec.Version); err != nil {
		t.Fatal(err)
	}
	r.refresh(id)
	if st, ok := r.standby.Status(id); ok {
		t.Fatalf("the standby still holds the purged device, %s", st)
	}
	r.mustAdmit(id, "unknown_device", "the purge")
}

// RefreshAll catches up on changes the standby was not told of: a device
// registered, and pending devices expired (their records purged), one of
// them discovered again. That one's record is a new one whose versions
// start anew, and it still replaces the standby's older record.
func TestRefreshAllCatchesUp(t *testing.T) {
	ctx := context.Background()
	r := newReplicas(t)

	r.beat("ESP_OK", 10)
	if _, err := r.primary.Approve(ctx, "ESP_OK", "admin", ""); err != nil {
		t.Fatal(err)
	}
	for up := int64(10); up <= 30; up += 10 {
		r.beat("ESP_AGAIN", up)
	}
	r.beat("ESP_GONE", 10)
	if err := r.standby.RefreshAll(ctx); err != nil {
		t.Fatal(err)
	}
	r.mustAdmit("ESP_OK", "", "the first reload")
	r.mustAdmit("ESP_GONE", "not_approved", "the first reload")
	old, err := r.standby.Get("ESP_AGAIN")
	if err != nil || old.Version != 3 {
		t.Fatalf("the standby's ESP_AGAIN: version %d, %v", old.Version, err)
	}

	if _, err := r.primary.Register(ctx, Registration{DeviceID: "ESP_NEW", HardwareType: "ESP32_WROOM"}, "admin"); err != nil {
		t.Fatal(err)
	}
	r.primary.now = func() time.Time { return time.Now().Add(25 * time.Hour) }
	if err := r.primary.ExpirePending(ctx); err != nil {
		t.Fatal(err)
	}
	r.primary.now = time.Now
	r.beat("ESP_AGAIN", 5)
	again, ok, err := r.db.LoadDevice(ctx, "ESP_AGAIN")
	if err != nil || !ok || again.Version != 1 || again.ID == old.ID {
		t.Fatalf("rediscovered record %s at version %d (%v %v), want a new one at version 1",
			again.ID, again.Version, ok, err)
	}

	r.mustAdmit("ESP_NEW", "unknown_device", "changes not reloaded")
	if err := r.standby.RefreshAll(ctx); err != nil {
		t.Fatal(err)
	}
	if d := r.mustAdmit("ESP_NEW", "", "the reload"); d.HardwareType != "ESP32_WROOM" {
		t.Fatalf("registered device's hardware %q", d.HardwareType)
	}
	if d, err := r.standby.Get("ESP_AGAIN"); err != nil || d.ID != again.ID || d.Version != 1 {
		t.Fatalf("the standby's ESP_AGAIN after the reload: %s version %d, %v", d.ID, d.Version, err)
	}
	if _, ok := r.standby.Status("ESP_GONE"); ok {
		t.Fatal("the standby still holds a purged device after the reload")
	}
}

// Reloads run beside concurrent admissions (run with -race): every
// admission sees one committed state or the next, and the last reload
// decides.
func TestRefreshBesideAdmit(t *testing.T) {
	ctx := context.Background()
	r := newReplicas(t)
	const id = "ESP_RACE"
	if _, err := r.primary.Register(ctx, Registration{DeviceID: id}, "admin"); err != nil {
		t.Fatal(err)
	}
	r.refresh(id)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := r.standby.Admit(r.message(id, "sensor/4/data", map[string]any{"raw": 1}))
				if d := dropReason(err); err != nil && d != "not_approved" {
					errs <- d + ": " + err.Error()
					return
				}
			}
		})
	}
	for i := range 10 {
		if _, err := r.primary.SetPending(ctx, id, "admin", "check"); err != nil {
			t.Fatal(err)
		}
		r.refresh(id)
		if _, err := r.primary.Approve(ctx, id, "admin", ""); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			r.refresh(id)
		} else if err := r.standby.RefreshAll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatalf("admission beside reloads: %s", e)
	}
	r.mustAdmit(id, "", "the last approval")
}
