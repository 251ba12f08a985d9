package fsm_test

import (
	"errors"
	"strings"
	"testing"

	"cnm/fsm"
)

func TestSubmitAction_AdmissionDecidesInApply(t *testing.T) {
	refuse := &fsm.Error{Code: "quorum_loss", Description: "no"}
	reserved := []fsm.Step{{Kind: fsm.StepMove, Shard: "1", From: 1, To: 3}}
	tests := []struct {
		name    string
		admit   fsm.Admission
		wantErr bool
	}{
		{"refused: nothing changes", func(*fsm.State, *fsm.Action) ([]fsm.Step, *fsm.Error) { return nil, refuse }, true},
		{"admitted: the plan is kept as the reservation", func(*fsm.State, *fsm.Action) ([]fsm.Step, *fsm.Error) { return reserved, nil }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.New(fsm.WithAdmission(tc.admit))
			for i, p := range threeNodes() {
				mustApply(t, f, idx(i+1), p)
			}
			before, _ := readState(t, f)
			res := apply(t, f, idx(4), &fsm.SubmitAction{Action: fsm.Action{TaskID: "t1", Action: fsm.ActionRemove, NodeUID: 2}, By: "x"})
			after, _ := readState(t, f)
			if tc.wantErr {
				if !errors.Is(res.Err, fsm.ErrQuorumLoss) {
					t.Fatalf("err = %v, want quorum_loss", res.Err)
				}
				assertState(t, after, before)
				return
			}
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			a := after.ActionOf(2, fsm.ActionRemove)
			if a == nil || len(a.Reserved) != 1 || a.Reserved[0] != reserved[0] {
				t.Fatalf("stored action %+v, want the reservation %+v", a, reserved)
			}
			if !after.Emptying(2) || after.Takes(2) {
				t.Errorf("node 2 with a queued remove: Emptying %v, Takes %v", after.Emptying(2), after.Takes(2))
			}
		})
	}
}

func TestSetWaiting_OneEventPerReasonClearedWhenTheStepIsDone(t *testing.T) {
	f, apply := actionFSM(t)
	runningAction(t, apply, 3, []fsm.Step{{Kind: fsm.StepMaintenance}, {Kind: fsm.StepEndMaintenance}})
	for _, p := range []*fsm.SetWaiting{
		{TaskID: "task", Term: 3, Index: 0, Reason: "node 2 does not answer"},
		{TaskID: "task", Term: 3, Index: 0, Reason: "node 2 does not answer"},
		{TaskID: "task", Term: 3, Index: 0, Reason: "node 2 does not answer"},
	} {
		if r := apply(p); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if r := apply(&fsm.SetWaiting{TaskID: "task", Term: 2, Index: 0, Reason: "old term"}); !errors.Is(r.Err, fsm.ErrStaleTerm) {
		t.Errorf("a deposed leader's SetWaiting: err %v, want stale_term", r.Err)
	}
	if r := apply(&fsm.SetWaiting{TaskID: "task", Term: 3, Index: 1, Reason: "not this step"}); !errors.Is(r.Err, fsm.ErrStaleTerm) {
		t.Errorf("SetWaiting about another step: err %v, want stale_term", r.Err)
	}
	var a fsm.Action
	f.Read(func(st *fsm.State, _ uint64) { a = *st.ActionByTask("task") })
	if a.Waiting != "node 2 does not answer" {
		t.Errorf("waiting = %q", a.Waiting)
	}
	if n := countEvents(a, "waits:"); n != 1 {
		t.Errorf("%d waiting events for one reason, want 1: %+v", n, a.Events)
	}
	if r := apply(&fsm.StepDone{TaskID: "task", Term: 3, Index: 0}); r.Err != nil {
		t.Fatal(r.Err)
	}
	f.Read(func(st *fsm.State, _ uint64) { a = *st.ActionByTask("task") })
	if a.Waiting != "" {
		t.Errorf("after the step is done, waiting = %q", a.Waiting)
	}
}

func countEvents(a fsm.Action, sub string) int {
	n := 0
	for _, e := range a.Events {
		if strings.Contains(e.Message, sub) {
			n++
		}
	}
	return n
}

func TestStepDone_NeverOntoANodeAnotherActionEmpties(t *testing.T) {
	tests := []struct {
		name string
		step fsm.Step
	}{
		// Shard 1 (master) is on node 1, its replica 2 on node 2.
		{"move to it", fsm.Step{Kind: fsm.StepMove, Shard: "1", From: 1, To: 3}},
		{"fail over onto it", fsm.Step{Kind: fsm.StepFailover, Shard: "1", From: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, apply := actionFSM(t)
			target := tc.step.To
			if target == 0 {
				target = 2
			}
			// Another action, queued, is emptying the target.
			if r := apply(&fsm.SubmitAction{Action: fsm.Action{TaskID: "other", Action: fsm.ActionMaintenanceOn, NodeUID: target, Deadline: 1 << 40}, By: "x"}); r.Err != nil {
				t.Fatal(r.Err)
			}
			for _, p := range []any{
				&fsm.SubmitAction{Action: fsm.Action{TaskID: "task", Action: fsm.ActionEnslaveNode, NodeUID: 1, Deadline: 1 << 40}, By: "x"},
				&fsm.ClaimAction{TaskID: "task", Term: 3, Leader: 1},
				&fsm.PlanAction{TaskID: "task", Term: 3, Steps: []fsm.Step{tc.step}},
			} {
				if r := apply(p); r.Err != nil {
					t.Fatal(r.Err)
				}
			}
			before, _ := readState(t, f)
			r := apply(&fsm.StepDone{TaskID: "task", Term: 3, Index: 0})
			if !errors.Is(r.Err, fsm.ErrPlacementConflict) {
				t.Fatalf("err = %v, want placement_conflict", r.Err)
			}
			after, _ := readState(t, f)
			assertState(t, after, before)
		})
	}
}

func TestCreateUser_EmailsDifferingOnlyInCaseAreOne(t *testing.T) {
	f := fsm.New()
	mustApply(t, f, 1, bootstrapCmd())
	res := apply(t, f, 2, &fsm.CreateUser{Actor: fsm.Actor{UID: 1, Revision: 1}, User: fsm.User{Email: "ADMIN@example.com", Role: fsm.RoleAdmin, PasswordHash: "x"}})
	if !errors.Is(res.Err, fsm.ErrUserExists) {
		t.Fatalf("creating ADMIN@example.com beside admin@example.com: err %v, want user_exists", res.Err)
	}
}
