package fsm_test

import (
	"errors"
	"testing"

	"cnm/fsm"
)

// startAction submits, claims (term 3) and plans an action of task id on
// node.
func startAction(t *testing.T, apply func(any) *fsm.Result, task, name string, node int, steps []fsm.Step) {
	t.Helper()
	for _, p := range []any{
		&fsm.SubmitAction{Action: fsm.Action{TaskID: task, Action: name, NodeUID: node, Deadline: 1 << 40}, By: "test"},
		&fsm.ClaimAction{TaskID: task, Term: 3, Leader: 1},
		&fsm.PlanAction{TaskID: task, Term: 3, Steps: steps},
	} {
		if r := apply(p); r.Err != nil {
			t.Fatalf("%s: %T: %v", task, p, r.Err)
		}
	}
}

// Two actions switching one master and replica at once would each act on
// a state the other changes; a step holds its slots from BeginStep to its
// commit or its action's end.
func TestBeginStep_OneStepAtATimePerSlotRange(t *testing.T) {
	begin := func(task string, index int) *fsm.BeginStep {
		return &fsm.BeginStep{TaskID: task, Term: 3, Index: index}
	}
	cases := []struct {
		name string
		// b is the second action's first step; a's is a failover of
		// shard 1 (master of db 1's pair 1, 2).
		b       fsm.Step
		prepare func(t *testing.T, apply func(any) *fsm.Result) // after a's BeginStep
		wantErr error
	}{
		{name: "a move of the replica waits", b: fsm.Step{Kind: fsm.StepMove, Shard: "2", From: 2, To: 3}, wantErr: fsm.ErrStepBusy},
		{name: "a failover of the same pair waits", b: fsm.Step{Kind: fsm.StepFailover, Shard: "2"}, wantErr: fsm.ErrStepBusy},
		{name: "another database's pair goes on", b: fsm.Step{Kind: fsm.StepMove, Shard: "3", From: 1, To: 3}},
		{name: "a step that holds no slots goes on", b: fsm.Step{Kind: fsm.StepMaintenance}},
		{name: "once the holder committed, the pair is free", b: fsm.Step{Kind: fsm.StepMove, Shard: "2", From: 2, To: 3},
			prepare: func(t *testing.T, apply func(any) *fsm.Result) {
				mustOK(t, apply(&fsm.StepDone{TaskID: "a", Term: 3, Index: 0}))
			}},
		{name: "an ended holder holds until its step is taken back", b: fsm.Step{Kind: fsm.StepMove, Shard: "2", From: 2, To: 3},
			prepare: func(t *testing.T, apply func(any) *fsm.Result) {
				mustOK(t, apply(&fsm.FinishAction{TaskID: "a", Term: 3, Status: fsm.StatusFailed, ErrorCode: "internal_error"}))
			}, wantErr: fsm.ErrStepBusy},
		{name: "once the holder ended and released, the pair is free", b: fsm.Step{Kind: fsm.StepMove, Shard: "2", From: 2, To: 3},
			prepare: func(t *testing.T, apply func(any) *fsm.Result) {
				mustOK(t, apply(&fsm.FinishAction{TaskID: "a", Term: 3, Status: fsm.StatusFailed, ErrorCode: "internal_error"}))
				if r := apply(&fsm.ReleaseStep{TaskID: "a", Term: 2}); r.Err == nil {
					t.Error("a release by an older term than the one that ended the action was accepted")
				}
				// A newer leader releases what a deposed one left held.
				mustOK(t, apply(&fsm.ReleaseStep{TaskID: "a", Term: 4}))
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, apply := actionFSM(t)
			if r := apply(&fsm.CreateBDB{BDB: fsm.BDB{Name: "other", MemorySize: 1 << 30, ShardsCount: 1, Replication: true,
				DataPersistence: fsm.PersistenceDisabled}, Placement: []int{1, 2}, EndpointNode: 1}); r.Err != nil {
				t.Fatal(r.Err)
			}
			startAction(t, apply, "a", fsm.ActionEnslaveNode, 1, []fsm.Step{{Kind: fsm.StepFailover, Shard: "1"}, {Kind: fsm.StepMaintenance}})
			startAction(t, apply, "b", fsm.ActionEnslaveNode, 3, []fsm.Step{c.b})
			if r := apply(begin("a", 0)); r.Err != nil {
				t.Fatalf("the first step on the pair: %v", r.Err)
			}
			if r := apply(begin("a", 0)); r.Err != nil {
				t.Fatalf("begun again (a new leader resuming it): %v", r.Err)
			}
			if c.prepare != nil {
				c.prepare(t, apply)
			}
			var before *fsm.State
			f.Read(func(s *fsm.State, _ uint64) { before = s.Clone() })
			r := apply(begin("b", 0))
			if (c.wantErr == nil && r.Err != nil) || (c.wantErr != nil && !errors.Is(r.Err, c.wantErr)) {
				t.Fatalf("BeginStep of b: %v, want %v", r.Err, c.wantErr)
			}
			f.Read(func(s *fsm.State, _ uint64) {
				b := s.ActionByTask("b")
				switch {
				case c.wantErr != nil && (b.Begun != 0 || !jsonEqual(t, s, before)):
					t.Errorf("a refused BeginStep changed the state: begun %d", b.Begun)
				case c.wantErr == nil && b.Begun != 1:
					t.Errorf("b's step begun %d, want 1", b.Begun)
				}
			})
		})
	}
}

func TestBeginStep_RefusesAStaleWrite(t *testing.T) {
	_, apply := actionFSM(t)
	startAction(t, apply, "a", fsm.ActionEnslaveNode, 1, []fsm.Step{{Kind: fsm.StepFailover, Shard: "1"}})
	for name, p := range map[string]*fsm.BeginStep{
		"another term": {TaskID: "a", Term: 2, Index: 0},
		"a later step": {TaskID: "a", Term: 3, Index: 1},
		"no action":    {TaskID: "nope", Term: 3, Index: 0},
	} {
		if r := apply(p); r.Err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if r := apply(&fsm.ReleaseStep{TaskID: "a", Term: 3}); r.Err == nil {
		t.Error("a release of a running action's hold was accepted")
	}
}

func mustOK(t *testing.T, r *fsm.Result) {
	t.Helper()
	if r.Err != nil {
		t.Fatal(r.Err)
	}
}

func jsonEqual(t *testing.T, a, b *fsm.State) bool {
	t.Helper()
	return string(mustJSON(t, a)) == string(mustJSON(t, b))
}

// A step's commit begins the next step in the same entry where that step
// holds slots and they are free: one raft entry a step, not two. Where
// they are not free the next step stays unbegun for a BeginStep that waits.
func TestStepDone_BeginsTheNextStep(t *testing.T) {
	failover := fsm.Step{Kind: fsm.StepFailover, Shard: "1"}
	cases := []struct {
		name      string
		next      []fsm.Step // a's steps after its first (set_maintenance)
		beginNext bool
		prepare   func(t *testing.T, apply func(any) *fsm.Result)
		wantBegun int
	}{
		{name: "a free failover is begun", next: []fsm.Step{failover}, beginNext: true, wantBegun: 2},
		{name: "not asked, nothing is begun", next: []fsm.Step{failover}, wantBegun: 0},
		{name: "a step that holds no slots is not begun", next: []fsm.Step{{Kind: fsm.StepRebind, BDB: 1}}, beginNext: true, wantBegun: 0},
		{name: "after the last step nothing is begun", beginNext: true, wantBegun: 0},
		{name: "slots held by another action's step stay its own", next: []fsm.Step{failover}, beginNext: true, wantBegun: 0,
			prepare: func(t *testing.T, apply func(any) *fsm.Result) {
				startAction(t, apply, "b", fsm.ActionEnslaveNode, 2, []fsm.Step{{Kind: fsm.StepFailover, Shard: "2"}})
				mustOK(t, apply(&fsm.BeginStep{TaskID: "b", Term: 3, Index: 0}))
			}},
		{name: "a cancelling action begins nothing more", next: []fsm.Step{failover}, beginNext: true, wantBegun: 0,
			prepare: func(t *testing.T, apply func(any) *fsm.Result) {
				mustOK(t, apply(&fsm.CancelAction{Node: 1, Action: fsm.ActionEnslaveNode, By: "test"}))
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, apply := actionFSM(t)
			startAction(t, apply, "a", fsm.ActionEnslaveNode, 1, append([]fsm.Step{{Kind: fsm.StepMaintenance}}, c.next...))
			if c.prepare != nil {
				c.prepare(t, apply)
			}
			mustOK(t, apply(&fsm.StepDone{TaskID: "a", Term: 3, Index: 0, BeginNext: c.beginNext}))
			f.Read(func(s *fsm.State, _ uint64) {
				if a := s.ActionByTask("a"); a.Done != 1 || a.Begun != c.wantBegun {
					t.Errorf("done %d, begun %d; want done 1, begun %d", a.Done, a.Begun, c.wantBegun)
				}
			})
		})
	}
}
