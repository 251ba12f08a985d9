package fsm_test

import (
	"testing"

	"cnm/fsm"
)

// TestCheckpoint_SameLogSameHashHoweverReached: a node that applied every
// entry and one restored from a snapshot taken part way (maps made on
// restore, not on apply) hash the same state at the same checkpoint; a node
// whose copy of one entry differs (a flipped bit in a user's email) does
// not.
func TestCheckpoint_SameLogSameHashHoweverReached(t *testing.T) {
	log := with(threeNodes(),
		createUser(adminActor, "bob", fsm.RoleDBViewer),
		&fsm.UpdatePolicy{Actor: adminActor, DefaultShardsPlacement: ptr("sparse")},
	)
	flipped := with(threeNodes(),
		createUser(adminActor, "cob", fsm.RoleDBViewer),
		&fsm.UpdatePolicy{Actor: adminActor, DefaultShardsPlacement: ptr("sparse")},
	)
	run := func(entries []any, restoreAt int) *fsm.FSM {
		f := fsm.New()
		for i, p := range entries {
			if i == restoreAt {
				f = roundTrip(t, f)
			}
			apply(t, f, idx(i+1), p)
		}
		apply(t, f, idx(len(entries)+1), &fsm.Checkpoint{})
		return f
	}
	whole := run(log, -1)
	restored := run(log, 2)
	other := run(flipped, -1)

	at := idx(len(log) + 1)
	a, ok := whole.CheckpointAt(at)
	if !ok {
		t.Fatalf("no checkpoint hash at %d", at)
	}
	if latest, _ := whole.LatestCheckpoint(); latest != a {
		t.Errorf("latest checkpoint %+v, want %+v", latest, a)
	}
	b, _ := restored.CheckpointAt(at)
	if a.Hash != b.Hash {
		t.Errorf("same log, different hashes: applied throughout %s, restored part way %s", a.Hash, b.Hash)
	}
	c, _ := other.CheckpointAt(at)
	if c.Hash == a.Hash {
		t.Error("a state with a different user hashes the same")
	}
	if !whole.LastIsCheckpoint() {
		t.Error("LastIsCheckpoint is false right after a checkpoint")
	}
	apply(t, whole, at+1, createUser(adminActor, "erin", fsm.RoleNone))
	if whole.LastIsCheckpoint() {
		t.Error("LastIsCheckpoint is true after another command")
	}
}

// TestCheckpoint_KeepsTheNewest: old hashes go, the newest stay.
func TestCheckpoint_KeepsTheNewest(t *testing.T) {
	f := fsm.New()
	mustApply(t, f, 1, bootstrapCmd())
	for i := uint64(2); i < 202; i++ {
		mustApply(t, f, i, &fsm.Checkpoint{})
	}
	if _, ok := f.CheckpointAt(2); ok {
		t.Error("the oldest checkpoint of 200 is still kept")
	}
	if c, ok := f.CheckpointAt(201); !ok || c.Index != 201 {
		t.Errorf("newest checkpoint = %+v, %v", c, ok)
	}
}
