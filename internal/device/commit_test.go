package device

import (
	"context"
	"errors"
	"testing"
)

// An operator's change is answered only once it is committed: a crash right
// after the answer must not undo it.
func TestOperatorChangesAreCommittedBeforeTheAnswer(t *testing.T) {
	tests := []struct {
		name string
		from action // brings the device into the state the change starts from
		do   action
		want string
	}{
		{name: "approve", do: approve(), want: StatusApproved},
		{name: "reject", do: reject(), want: StatusRejected},
		{
			name: "set pending",
			from: approve(),
			do:   setPending(),
			want: StatusPending,
		},
		{
			name: "delete",
			from: approve(),
			do:   remove(),
			want: StatusDeleted,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			if err := h.svc.HandleHeartbeat(context.Background(), h.heartbeat(testID, 70)); err != nil {
				t.Fatal(err)
			}
			if tt.from != nil {
				if err := tt.from(h); err != nil {
					t.Fatal(err)
				}
			}

			if err := tt.do(h); err != nil {
				t.Fatal(err)
			}
			if got := committedStatus(h.store, testID); got != tt.want {
				t.Fatalf("committed status at the answer %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("register", func(t *testing.T) {
		h := newHarness(t, Config{})
		if _, err := h.svc.Register(context.Background(), Registration{DeviceID: "ESP_REG"}, "admin"); err != nil {
			t.Fatal(err)
		}
		if got := committedStatus(h.store, "ESP_REG"); got != StatusApproved {
			t.Fatalf("committed status at the answer %q, want %q", got, StatusApproved)
		}
	})
}

func committedStatus(f *fakeStore, id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.committed[id].Status
}

// A registration whose commit fails is answered with the error and leaves
// no device behind: asked again once the store commits, it succeeds.
func TestFailedRegistrationCommitIsUndone(t *testing.T) {
	h := newHarness(t, Config{})
	h.store.commitErr = errors.New("database or disk is full")
	if _, err := h.svc.Register(context.Background(), Registration{DeviceID: "ESP_REG"}, "admin"); err == nil {
		t.Fatal("a registration whose commit failed succeeded")
	}
	if _, err := h.svc.Get("ESP_REG"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("device after the failed registration: %v", err)
	}
	h.store.commitErr = nil
	if _, err := h.svc.Register(context.Background(), Registration{DeviceID: "ESP_REG"}, "admin"); err != nil {
		t.Fatalf("registration once the store commits: %v", err)
	}
	if got := committedStatus(h.store, "ESP_REG"); got != StatusApproved {
		t.Fatalf("committed status %q", got)
	}
}
