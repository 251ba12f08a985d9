package fsm_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"cnm/fsm"
)

// actionFSM is a cluster of three nodes with one replicated database:
// shard 1 (master) on node 1, shard 2 (replica) on node 2.
func actionFSM(t *testing.T) (*fsm.FSM, func(payload any) *fsm.Result) {
	t.Helper()
	f := fsm.New()
	index := uint64(0)
	apply := func(payload any) *fsm.Result {
		t.Helper()
		b, err := fsm.Encode(payload)
		if err != nil {
			t.Fatal(err)
		}
		index++
		return f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: b}).(*fsm.Result)
	}
	node := func(uid int) fsm.Node {
		return fsm.Node{UID: uid, APIAddr: "10.0.0." + string(rune('0'+uid)) + ":9443", RaftAddr: "10.0.0." + string(rune('0'+uid)) + ":9444",
			Status: fsm.NodeActive, AcceptServers: true, MaxRedisServers: 10, TotalMemory: 10 << 30}
	}
	must := func(r *fsm.Result) {
		t.Helper()
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	must(apply(&fsm.Bootstrap{Cluster: fsm.ClusterInfo{Name: "c"}, Node: node(1), Admin: fsm.User{Email: "a@b.c", PasswordHash: "x"}}))
	must(apply(&fsm.AddNode{Node: node(2)}))
	must(apply(&fsm.AddNode{Node: node(3)}))
	must(apply(&fsm.CreateBDB{BDB: fsm.BDB{Name: "db", MemorySize: 1 << 30, ShardsCount: 1, Replication: true,
		DataPersistence: fsm.PersistenceDisabled}, Placement: []int{1, 2}, EndpointNode: 1}))
	return f, apply
}

func runningAction(t *testing.T, apply func(any) *fsm.Result, node int, steps []fsm.Step) {
	t.Helper()
	for _, p := range []any{
		&fsm.SubmitAction{Action: fsm.Action{TaskID: "task", Action: fsm.ActionMaintenanceOn, NodeUID: node, Deadline: 1 << 40}, By: "test"},
		&fsm.ClaimAction{TaskID: "task", Term: 3, Leader: 1},
		&fsm.PlanAction{TaskID: "task", Term: 3, Steps: steps},
	} {
		if r := apply(p); r.Err != nil {
			t.Fatalf("%T: %v", p, r.Err)
		}
	}
}

func TestStepDone_MoveOntoTheShardsPairIsRefused(t *testing.T) {
	f, apply := actionFSM(t)
	runningAction(t, apply, 1, []fsm.Step{{Kind: fsm.StepMove, Shard: "1", From: 1, To: 2}})
	var before *fsm.State
	f.Read(func(s *fsm.State, _ uint64) { before = s.Clone() })
	r := apply(&fsm.StepDone{TaskID: "task", Term: 3, Index: 0})
	if !errors.Is(r.Err, fsm.ErrPlacementConflict) {
		t.Fatalf("move onto the replica's node: %v, want placement_conflict", r.Err)
	}
	f.Read(func(s *fsm.State, _ uint64) {
		if s.Shards["1"].NodeUID != 1 || s.ActionByTask("task").Done != 0 || before.Shards["1"].NodeUID != 1 {
			t.Fatalf("a refused move changed the state: shard on %d, done %d", s.Shards["1"].NodeUID, s.ActionByTask("task").Done)
		}
	})
	// Sent elsewhere, it lands.
	if r := apply(&fsm.RetargetStep{TaskID: "task", Term: 3, Index: 0, To: 3}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := apply(&fsm.StepDone{TaskID: "task", Term: 3, Index: 0}); r.Err != nil {
		t.Fatal(r.Err)
	}
	f.Read(func(s *fsm.State, _ uint64) {
		if s.Shards["1"].NodeUID != 3 {
			t.Fatalf("shard on node %d after the retargeted move, want 3", s.Shards["1"].NodeUID)
		}
	})
}

func TestExecutorWrites_FromAnotherTermOrStepChangeNothing(t *testing.T) {
	f, apply := actionFSM(t)
	runningAction(t, apply, 1, []fsm.Step{{Kind: fsm.StepMove, Shard: "1", From: 1, To: 3}, {Kind: fsm.StepMaintenance}})
	for name, p := range map[string]any{
		"older term":       &fsm.StepDone{TaskID: "task", Term: 2, Index: 0},
		"newer term":       &fsm.StepDone{TaskID: "task", Term: 4, Index: 0},
		"a later step":     &fsm.StepDone{TaskID: "task", Term: 3, Index: 1},
		"an older claim":   &fsm.ClaimAction{TaskID: "task", Term: 2, Leader: 2},
		"finish too early": &fsm.FinishAction{TaskID: "task", Term: 3, Status: fsm.StatusCompleted},
	} {
		var before, after *fsm.State
		f.Read(func(s *fsm.State, _ uint64) { before = s.Clone() })
		if r := apply(p); r.Err == nil {
			t.Errorf("%s: accepted", name)
		}
		f.Read(func(s *fsm.State, _ uint64) { after = s.Clone() })
		if after.Shards["1"].NodeUID != before.Shards["1"].NodeUID || after.ActionByTask("task").Done != before.ActionByTask("task").Done ||
			after.ActionByTask("task").Term != before.ActionByTask("task").Term || after.ActionByTask("task").Status != before.ActionByTask("task").Status {
			t.Errorf("%s changed the state", name)
		}
	}
}

func TestCancel_FollowsTheLegalTransitions(t *testing.T) {
	_, apply := actionFSM(t)
	sub := &fsm.SubmitAction{Action: fsm.Action{TaskID: "q", Action: fsm.ActionEnslaveNode, NodeUID: 2, Deadline: 1 << 40}, By: "test"}
	if r := apply(sub); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := apply(&fsm.SubmitAction{Action: fsm.Action{TaskID: "other", Action: fsm.ActionMaintenanceOn, NodeUID: 2}, By: "test"}); !errors.Is(r.Err, fsm.ErrActionInProgress) {
		t.Fatalf("second action on a busy node: %v, want action_in_progress", r.Err)
	}
	if r := apply(sub); r.Err != nil {
		t.Fatalf("the same submission again (same task id) must answer its record: %v", r.Err)
	}
	cancel := &fsm.CancelAction{Node: 2, Action: fsm.ActionEnslaveNode, By: "test"}
	// queued → cancelled at once; a second cancel forgets the finished record.
	for i := range 2 {
		r := apply(cancel)
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		var a fsm.Action
		if err := json.Unmarshal(r.Value, &a); err != nil || a.Status != fsm.StatusCancelled {
			t.Fatalf("cancel %d answered %s (%v), want cancelled", i+1, r.Value, err)
		}
	}
	if r := apply(cancel); !errors.Is(r.Err, fsm.ErrActionNotFound) {
		t.Fatalf("cancel of a forgotten action: %v, want action_not_found", r.Err)
	}
}

// A move whose shard another action took elsewhere meanwhile has nothing
// left to do: committing it changes no shard and lets the action go on
// (refusing it would stall the action at that step for good).
func TestStepDone_MoveOfAShardMovedElsewhereIsANoOp(t *testing.T) {
	f, apply := actionFSM(t)
	// Shard 1 is on node 1; the plan thought it was on node 2.
	runningAction(t, apply, 2, []fsm.Step{{Kind: fsm.StepMove, Shard: "1", From: 2, To: 3}, {Kind: fsm.StepTransferLeader, From: 2}})
	var before *fsm.State
	f.Read(func(s *fsm.State, _ uint64) { before = s.Clone() })
	if r := apply(&fsm.StepDone{TaskID: "task", Term: 3, Index: 0}); r.Err != nil {
		t.Fatalf("StepDone of a move whose shard is elsewhere: %v", r.Err)
	}
	f.Read(func(s *fsm.State, _ uint64) {
		if !reflect.DeepEqual(s.Shards, before.Shards) {
			t.Fatalf("the no-op move changed shards: %v -> %v", before.Shards["1"], s.Shards["1"])
		}
		if d := s.ActionByTask("task").Done; d != 1 {
			t.Fatalf("done = %d, want 1", d)
		}
	})
}

// Each step's commit adds the time its leader measured for it to the
// action's UsedMS, across leaders; a refused commit adds nothing.
func TestStepDone_AddsTheMeasuredTimeToTheAction(t *testing.T) {
	f, apply := actionFSM(t)
	runningAction(t, apply, 3, []fsm.Step{{Kind: fsm.StepSnapshot, Snapshot: "s"}, {Kind: fsm.StepMaintenance}, {Kind: fsm.StepEndMaintenance}})
	used := func() int64 {
		var ms int64
		f.Read(func(s *fsm.State, _ uint64) { ms = s.ActionByTask("task").UsedMS })
		return ms
	}
	steps := []struct {
		payload any
		want    int64
	}{
		{&fsm.StepDone{TaskID: "task", Term: 3, Index: 0, ElapsedMS: 1200}, 1200},
		{&fsm.StepDone{TaskID: "task", Term: 2, Index: 1, ElapsedMS: 9000}, 1200}, // refused: older term
		{&fsm.ClaimAction{TaskID: "task", Term: 4, Leader: 2}, 1200},
		{&fsm.StepDone{TaskID: "task", Term: 4, Index: 1, ElapsedMS: 300}, 1500},
		{&fsm.StepDone{TaskID: "task", Term: 4, Index: 2, ElapsedMS: -50}, 1500}, // a negative measure counts as none
	}
	for i, s := range steps {
		apply(s.payload)
		if got := used(); got != s.want {
			t.Errorf("after entry %d (%T): used_ms %d, want %d", i, s.payload, got, s.want)
		}
	}
}

func TestAction_TimeBudget(t *testing.T) {
	cases := []struct {
		name string
		a    fsm.Action
		want time.Duration
	}{
		{"stated as a duration", fsm.Action{CreationTime: 1000, Deadline: 1 << 40, TimeoutMS: 90_000}, 90 * time.Second},
		{"an older build's absolute deadline", fsm.Action{CreationTime: 1_767_225_600, Deadline: 1_767_225_900}, 5 * time.Minute},
		{"neither", fsm.Action{CreationTime: 1_767_225_600}, fsm.DefaultTimeout},
		{"a deadline before creation", fsm.Action{CreationTime: 1_767_225_600, Deadline: 5}, fsm.DefaultTimeout},
	}
	for _, c := range cases {
		if got := c.a.TimeBudget(); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
