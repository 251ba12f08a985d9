package fsm

import (
	"slices"
	"testing"
)

// TestStepKinds_EachHasItsEffect: every kind a plan may hold is one entry
// of the table, with the effect its commit has, and StepKinds lists them all.
func TestStepKinds_EachHasItsEffect(t *testing.T) {
	want := []string{
		StepSnapshot, StepMaintenance, StepFailover, StepMove, StepRebind, StepWaitPersistence,
		StepTransferLeader, StepRemoveMember, StepEndMaintenance, StepDeleteSnapshot, StepFail,
	}
	slices.Sort(want)
	got := StepKinds()
	if !slices.Equal(got, want) {
		t.Fatalf("StepKinds() = %v, want %v", got, want)
	}
	for _, k := range got {
		if stepKinds[k].effect == nil {
			t.Errorf("step kind %q has no effect", k)
		}
	}
}

func TestStepEffect_UnknownKindIsRefused(t *testing.T) {
	s := NewState()
	if err := s.stepEffect(&Action{NodeUID: 1}, Step{Kind: "no_such_kind"}); err == nil || err.Code != ErrInvalidParameter.Code {
		t.Fatalf("unknown kind: %v, want %s", err, ErrInvalidParameter.Code)
	}
}
