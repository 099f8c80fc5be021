package device

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/kaiserhub/kaiser/internal/store"
)

// heldSave holds the first device save after arm until release, so that a
// test can deliver a later save to the store before it.
type heldSave struct {
	armed   atomic.Bool
	held    chan store.Device
	release chan struct{}
}

func holdNextSave(st *fakeStore) *heldSave {
	hs := &heldSave{held: make(chan store.Device, 1), release: make(chan struct{})}
	hs.armed.Store(true)
	st.beforeSave = func(d store.Device) {
		if hs.armed.CompareAndSwap(true, false) {
			hs.held <- d
			<-hs.release
		}
	}
	return hs
}

// byVersion is what a reader of the store sees: transitions in version order.
func byVersion(trs []store.Transition) []string {
	sorted := slices.Clone(trs)
	slices.SortStableFunc(sorted, func(a, b store.Transition) int { return cmp.Compare(a.Version, b.Version) })
	var out []string
	for _, t := range sorted {
		out = append(out, t.From+"→"+t.To)
	}
	return out
}

func patchName(name string) action {
	return func(h *harness) error {
		_, err := h.svc.Update(context.Background(), testID, Patch{Name: &name})
		return err
	}
}

// offline brings testID online and then offline by its will, so that the
// next heartbeat makes a transition of its own.
func offline(h *harness) {
	h.t.Helper()
	h.online()
	if err := lastWill()(h); err != nil {
		h.t.Fatal(err)
	}
	h.mustStatus(testID, StatusOffline)
}

// A heartbeat takes its snapshot, then an operator changes the device, and
// the operator's save reaches the store before the heartbeat's: the stored
// record, the record loaded after a restart and the transition history all
// keep the operator's change.
func TestStaleHeartbeatSaveNeverWins(t *testing.T) {
	cases := []struct {
		name string
		// setup brings testID to where the operator acts; nil = the held
		// heartbeat is the one that discovers the device.
		setup      func(h *harness)
		op         action
		staleState string // status in the heartbeat's snapshot
		wantState  string
		check      func(t *testing.T, d store.Device)
		wantOrder  []string // transitions in version order
	}{
		{
			name:       "approve",
			op:         approve(),
			staleState: StatusPending,
			wantState:  StatusApproved,
			check: func(t *testing.T, d store.Device) {
				if d.ApprovedBy != "admin" || d.ApprovedAt == nil {
					t.Errorf("approval fields lost: by %q at %v", d.ApprovedBy, d.ApprovedAt)
				}
			},
			wantOrder: []string{"→pending_approval", "pending_approval→approved"},
		},
		{
			name:       "reject",
			op:         reject(),
			staleState: StatusPending,
			wantState:  StatusRejected,
			check: func(t *testing.T, d store.Device) {
				if d.RejectionReason != "unknown board" {
					t.Errorf("rejection reason %q", d.RejectionReason)
				}
			},
			wantOrder: []string{"→pending_approval", "pending_approval→rejected"},
		},
		{
			name:       "delete",
			setup:      offline,
			op:         remove(),
			staleState: StatusOnline,
			wantState:  StatusDeleted,
			wantOrder: []string{"→pending_approval", "pending_approval→approved", "approved→online",
				"online→offline", "offline→online", "online→deleted"},
		},
		{
			name:       "set pending",
			setup:      offline,
			op:         setPending(),
			staleState: StatusOnline,
			wantState:  StatusPending,
			check: func(t *testing.T, d store.Device) {
				if d.Metadata["set_pending_by"] != "admin" {
					t.Errorf("set_pending_by lost: %v", d.Metadata)
				}
			},
			wantOrder: []string{"→pending_approval", "pending_approval→approved", "approved→online",
				"online→offline", "offline→online", "online→pending_approval"},
		},
		{
			name:       "patch",
			setup:      offline,
			op:         patchName("Greenhouse 2"),
			staleState: StatusOnline,
			wantState:  StatusOnline,
			check: func(t *testing.T, d store.Device) {
				if d.Name != "Greenhouse 2" {
					t.Errorf("name %q, want the patched one", d.Name)
				}
			},
			wantOrder: []string{"→pending_approval", "pending_approval→approved", "approved→online",
				"online→offline", "offline→online"},
		},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			if tc.setup != nil {
				tc.setup(h)
			}
			hold := holdNextSave(h.store)

			beatDone := make(chan error, 1)
			go func() { beatDone <- beatAt(30)(h) }()
			stale := <-hold.held
			if stale.Status != tc.staleState {
				t.Fatalf("heartbeat snapshot is %s, want %s", stale.Status, tc.staleState)
			}

			if err := tc.op(h); err != nil {
				t.Fatalf("operator change: %v", err)
			}
			close(hold.release)
			if err := <-beatDone; err != nil {
				t.Fatalf("heartbeat: %v", err)
			}

			stored := h.store.saved[testID]
			if stored.Version <= stale.Version {
				t.Fatalf("stored v%d is not newer than the heartbeat's v%d", stored.Version, stale.Version)
			}
			assertState(t, "stored", stored, tc.wantState, tc.check)
			heartbeats := func(tr store.Transition) bool { return tr.To == stale.Status && tr.Version == stale.Version }
			if !slices.ContainsFunc(h.store.transitions, heartbeats) {
				t.Errorf("no transition to %s with the heartbeat's record version %d: %+v",
					stale.Status, stale.Version, h.store.transitions)
			}
			if got := byVersion(h.store.transitions); !slices.Equal(got, tc.wantOrder) {
				t.Errorf("transitions by version %q, want %q", got, tc.wantOrder)
			}
			if tc.wantState != StatusDeleted {
				mem, err := h.svc.Get(testID)
				if err != nil {
					t.Fatal(err)
				}
				assertState(t, "in memory", mem.Device, tc.wantState, tc.check)
			}

			restarted := restart(t, h)
			d, err := restarted.svc.Get(testID)
			if tc.wantState == StatusDeleted {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("after restart: %+v %v, want the device deleted", d.Device, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertState(t, "after restart", d.Device, tc.wantState, tc.check)
		})
	}
}

func assertState(t *testing.T, where string, d store.Device, want string, check func(*testing.T, store.Device)) {
	t.Helper()
	if d.Status != want {
		t.Errorf("%s: status %s, want %s", where, d.Status, want)
	}
	if check != nil {
		check(t, d)
	}
}

// restart loads a new service from what h's store holds; the new store
// holds the same records.
func restart(t *testing.T, h *harness) *harness {
	t.Helper()
	st := newFakeStore()
	for id, d := range h.store.saved {
		st.loaded = append(st.loaded, d)
		st.saved[id] = d
	}
	return newHarnessWith(t, Config{}, st)
}

// A deleted device that comes back, by heartbeat or by registration,
// continues its version: its new record is stored, and a save of the deleted
// record that arrives late cannot replace it.
func TestVersionContinuesAcrossDeleteAndRecreate(t *testing.T) {
	ctx := context.Background()
	reg := Registration{DeviceID: testID, Name: "Pump house"}
	cases := []struct {
		name      string
		recreate  action
		wantState string
	}{
		{
			name: "registration",
			recreate: func(h *harness) error {
				_, err := h.svc.Register(ctx, reg, "admin")
				return err
			},
			wantState: StatusApproved,
		},
		{
			name:      "rediscovery after a restart",
			recreate:  beatAt(40),
			wantState: StatusPending,
		},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.online()
			if err := remove()(h); err != nil {
				t.Fatal(err)
			}
			deleted := h.store.saved[testID]

			// A restart forgets the per-id discovery spacing, so the
			// heartbeat rediscovers; the version comes from the store.
			h = restart(t, h)
			hold := holdNextSave(h.store)
			late := make(chan error, 1)
			go func() { late <- h.store.SaveDevice(ctx, deleted) }()
			<-hold.held

			if err := tc.recreate(h); err != nil {
				t.Fatal(err)
			}
			close(hold.release)
			if err := <-late; err != nil {
				t.Fatal(err)
			}

			stored := h.store.saved[testID]
			if stored.Version <= deleted.Version {
				t.Errorf("re-created record v%d, deleted one v%d: the version went back", stored.Version, deleted.Version)
			}
			if stored.Status != tc.wantState {
				t.Errorf("stored %s, want %s", stored.Status, tc.wantState)
			}
		})
	}
}
