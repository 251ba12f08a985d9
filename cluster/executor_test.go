package cluster

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"cnm/agent"
	"cnm/fsm"
	"cnm/raftnode"
)

// localRaft applies commands straight to an FSM, as the leader of term 1.
type localRaft struct {
	mu sync.Mutex
	f  *fsm.FSM
	// refuseNext makes the next Apply fail without committing, as a
	// leader's does during a leadership transfer.
	refuseNext bool
}

// errTransfer is what Apply returns while refuseNext is set.
var errTransfer = errors.New("leadership lost while applying: leadership transfer in progress")

func (r *localRaft) Apply(_ context.Context, cmd []byte) (*fsm.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuseNext {
		r.refuseNext = false
		return nil, errTransfer
	}
	res := r.f.Apply(rawLog(r.f.Applied()+1, cmd)).(*fsm.Result)
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}
func (r *localRaft) ID() int                                                 { return 1 }
func (r *localRaft) TransferLeadership(context.Context) error                { return nil }
func (r *localRaft) TransferLeadershipTo(context.Context, int, string) error { return nil }
func (r *localRaft) RemoveServer(context.Context, int) error                 { return nil }
func (r *localRaft) IsMember(int) (bool, error)                              { return true, nil }
func (r *localRaft) Servers() ([]raftnode.Server, error)                     { return nil, nil }

// copyingAgents holds shard copies by node address and runs a hook after
// each copy.
type copyingAgents struct {
	mu        sync.Mutex
	have      map[string]bool // addr + "/" + uid
	afterCopy func(target string)
}

func (a *copyingAgents) Copy(_ context.Context, target string, spec agent.Spec, _ string, _ agent.Op) (agent.Info, error) {
	a.mu.Lock()
	a.have[target+"/"+spec.UID] = true
	hook := a.afterCopy
	a.afterCopy = nil
	a.mu.Unlock()
	if hook != nil {
		hook(target)
	}
	return agent.Info{UID: spec.UID, Checksum: "c", InSync: true, Size: 1000}, nil
}

func (a *copyingAgents) Info(_ context.Context, addr, uid string) (agent.Info, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.have[addr+"/"+uid] {
		return agent.Info{UID: uid, Checksum: "c", InSync: true, Persisted: true}, nil
	}
	return agent.Info{}, agent.ErrNoShard
}

func (a *copyingAgents) Promote(ctx context.Context, addr, uid string, _ agent.PromoteRequest) (agent.Info, error) {
	return a.Info(ctx, addr, uid)
}

func (a *copyingAgents) Drop(_ context.Context, addr, uid string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.have, addr+"/"+uid)
	return nil
}

// executorCluster is the 3-node model of modelState (node 2's master,
// shard 1, has its replica on node 1) with agent addresses "nodeN", an
// FSM that admits actions, and the shards the agents hold.
func executorCluster(t *testing.T, have ...string) (*fsm.FSM, *localRaft, *copyingAgents) {
	t.Helper()
	st := adminState(modelState(3, [][2]int{{2, 1}}, fsm.PersistenceDisabled))
	for uid, n := range st.Nodes {
		n.APIAddr = "node" + string(rune('0'+uid))
	}
	st.Voters = []int{1, 2, 3}
	f := admittingFSM(t, st)
	ag := &copyingAgents{have: map[string]bool{}}
	for _, h := range have {
		ag.have[h] = true
	}
	return f, &localRaft{f: f}, ag
}

// runExecutor submits action name for node and runs an executor of term 1
// until the test ends.
func runExecutor(t *testing.T, f *fsm.FSM, r *localRaft, ag *copyingAgents, name string, node int) context.Context {
	t.Helper()
	if res := applyTo(t, f, submit("task", name, node)); res.Err != nil {
		t.Fatal(res.Err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Executor{FSM: f, Raft: r, Agents: ag, Log: slog.New(slog.DiscardHandler)}
	done := make(chan struct{})
	go func() { e.Run(ctx, 1); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ctx
}

// TestExecutor_MoveWhoseTargetIsBrieflyDownWaitsInsteadOfFailing is the
// restarted copy target: the copy finished, but liveness has marked the
// target down before the move's commit, and no other node can take the
// shard. The action waits, says why, and completes once the target is
// active again.
func TestExecutor_MoveWhoseTargetIsBrieflyDownWaitsInsteadOfFailing(t *testing.T) {
	// Node 3 is the only node that can take shard 1 after the failover.
	f, r, ag := executorCluster(t, "node1/2", "node2/1")
	ag.afterCopy = func(string) {
		if _, err := r.Apply(context.Background(), mustEncode(t, &fsm.SetNodeStatus{UID: 3, Status: fsm.NodeDown})); err != nil {
			t.Errorf("mark node 3 down: %v", err)
		}
	}
	ctx := runExecutor(t, f, r, ag, fsm.ActionMaintenanceOn, 2)

	a := waitAction(t, f, "task", func(a *fsm.Action) bool { return a.Waiting != "" || fsm.Terminal(a.Status) })
	if fsm.Terminal(a.Status) {
		t.Fatalf("the action ended %s (%s: %s) instead of waiting for node 3", a.Status, a.ErrorCode, a.ErrorMessage)
	}
	if !strings.Contains(a.Waiting, "node 3") {
		t.Errorf("waiting = %q, want it to name node 3", a.Waiting)
	}
	if _, err := r.Apply(ctx, mustEncode(t, &fsm.SetNodeStatus{UID: 3, Status: fsm.NodeActive})); err != nil {
		t.Fatal(err)
	}
	a = waitAction(t, f, "task", func(a *fsm.Action) bool { return fsm.Terminal(a.Status) })
	if a.Status != fsm.StatusCompleted {
		t.Fatalf("action ended %s (%s: %s), want completed", a.Status, a.ErrorCode, a.ErrorMessage)
	}
	if a.Waiting != "" {
		t.Errorf("a completed action still says it waits: %q", a.Waiting)
	}
	waits := 0
	for _, ev := range a.Events {
		if strings.Contains(ev.Message, "waits:") {
			waits++
		}
	}
	if waits != 1 {
		t.Errorf("%d waiting events, want exactly 1: %+v", waits, a.Events)
	}
	f.Read(func(st *fsm.State, _ uint64) {
		if n := st.Shards["1"].NodeUID; n != 3 {
			t.Errorf("shard 1 is on node %d, want 3", n)
		}
	})
}

func mustEncode(t *testing.T, payload any) []byte {
	t.Helper()
	b, err := fsm.Encode(payload)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitAction polls the action until ok holds, for at most 10 s.
func waitAction(t *testing.T, f *fsm.FSM, task string, ok func(*fsm.Action) bool) fsm.Action {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var a fsm.Action
		ch := f.Changed()
		f.Read(func(st *fsm.State, _ uint64) {
			if p := st.ActionByTask(task); p != nil {
				a = *p
			}
		})
		if ok(&a) {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("action %s: condition not reached in 10 s; last %+v", task, a)
		}
		select {
		case <-ch:
		case <-time.After(time.Until(deadline)):
		}
	}
}

// TestExecutor_MoveWhoseTargetStoppedAcceptingFails: a refusal that does
// not pass by itself (the operator stopped the node accepting shards) ends
// the action with insufficient_resources, and the copy is taken back.
func TestExecutor_MoveWhoseTargetStoppedAcceptingFails(t *testing.T) {
	f, r, ag := executorCluster(t, "node1/2", "node2/1")
	ag.afterCopy = func(string) {
		off := false
		if _, err := r.Apply(context.Background(), mustEncode(t, &fsm.UpdateNode{Actor: fsm.Actor{UID: 1}, UID: 3, AcceptServers: &off})); err != nil {
			t.Errorf("stop node 3 accepting shards: %v", err)
		}
	}
	ctx := runExecutor(t, f, r, ag, fsm.ActionMaintenanceOn, 2)

	a := waitAction(t, f, "task", func(a *fsm.Action) bool { return fsm.Terminal(a.Status) })
	if a.Status != fsm.StatusFailed || a.ErrorCode != "insufficient_resources" {
		t.Fatalf("action ended %s (%s: %s), want failed with insufficient_resources", a.Status, a.ErrorCode, a.ErrorMessage)
	}
	waitGone(ctx, t, ag, "node3", "1")
}

// TestExecutor_CancelEndsAStepThatWaits: a step waiting for a node that
// does not answer gives way to a cancel at once, not at the deadline.
func TestExecutor_CancelEndsAStepThatWaits(t *testing.T) {
	// The replica on node 1 never answers: the failover waits.
	f, r, ag := executorCluster(t, "node2/1")
	ctx := runExecutor(t, f, r, ag, fsm.ActionEnslaveNode, 2)

	waitAction(t, f, "task", func(a *fsm.Action) bool { return a.Waiting != "" })
	if _, err := r.Apply(ctx, mustEncode(t, &fsm.CancelAction{Actor: fsm.Actor{UID: 1}, Node: 2, Action: fsm.ActionEnslaveNode, By: "test"})); err != nil {
		t.Fatal(err)
	}
	a := waitAction(t, f, "task", func(a *fsm.Action) bool { return fsm.Terminal(a.Status) })
	if a.Status != fsm.StatusCancelled {
		t.Fatalf("action ended %s (%s), want cancelled", a.Status, a.ErrorMessage)
	}
	f.Read(func(st *fsm.State, _ uint64) {
		if sh := st.Shards["1"]; sh.Role != fsm.RoleMaster || sh.NodeUID != 2 {
			t.Errorf("shard 1 is %s on node %d; a cancelled failover must leave it master on node 2", sh.Role, sh.NodeUID)
		}
	})
}

// TestExecutor_CancelAfterARefusedCommitTakesTheCopyBack: the copy of a
// move is made, its commit is refused (a leadership transfer), and the
// action is cancelled before the executor tries again. The action ends
// cancelled and the copy does not stay on the target.
func TestExecutor_CancelAfterARefusedCommitTakesTheCopyBack(t *testing.T) {
	f, r, ag := executorCluster(t, "node1/2", "node2/1")
	ag.afterCopy = func(string) {
		if _, err := r.Apply(context.Background(), mustEncode(t, &fsm.CancelAction{Actor: fsm.Actor{UID: 1}, Node: 2, Action: fsm.ActionMaintenanceOn, By: "test"})); err != nil {
			t.Errorf("cancel: %v", err)
		}
		r.mu.Lock()
		r.refuseNext = true
		r.mu.Unlock()
	}
	ctx := runExecutor(t, f, r, ag, fsm.ActionMaintenanceOn, 2)

	a := waitAction(t, f, "task", func(a *fsm.Action) bool { return fsm.Terminal(a.Status) })
	if a.Status != fsm.StatusCancelled {
		t.Fatalf("action ended %s (%s: %s), want cancelled", a.Status, a.ErrorCode, a.ErrorMessage)
	}
	f.Read(func(st *fsm.State, _ uint64) {
		if n := st.Shards["1"].NodeUID; n != 2 {
			t.Errorf("shard 1 is on node %d; the uncommitted move must leave it on node 2", n)
		}
	})
	waitGone(ctx, t, ag, "node3", "1")
	waitAction(t, f, "task", func(a *fsm.Action) bool { return !a.Holds() })
}

// TestExecutor_ReleasesTheHoldADeposedLeaderLeft: an action's failover
// had begun when its leader (term 5) ended it failed and died before it
// took the step back and released the pair. The next leader takes the
// step back and releases it, and another action's step on the pair then
// runs.
func TestExecutor_ReleasesTheHoldADeposedLeaderLeft(t *testing.T) {
	f, r, ag := executorCluster(t, "node1/2", "node2/1")
	otherHoldsShard1(t, f,
		&fsm.FinishAction{TaskID: "other", Term: 5, Status: fsm.StatusFailed, ErrorCode: "internal_error"},
		submit("task", fsm.ActionMaintenanceOn, 2))
	ctx, cancel := context.WithCancel(context.Background())
	e := &Executor{FSM: f, Raft: r, Agents: ag, Log: slog.New(slog.DiscardHandler)}
	done := make(chan struct{})
	go func() { e.Run(ctx, 7); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	waitAction(t, f, "other", func(a *fsm.Action) bool { return !a.Holds() })
	a := waitAction(t, f, "task", func(a *fsm.Action) bool { return fsm.Terminal(a.Status) })
	if a.Status != fsm.StatusCompleted {
		t.Fatalf("action ended %s (%s: %s), want completed once the pair was released", a.Status, a.ErrorCode, a.ErrorMessage)
	}
}

// waitGone polls until the agent at addr no longer holds shard uid: the
// executor takes a stray copy back only after the action's end is
// committed, so the end is seen first.
func waitGone(ctx context.Context, t *testing.T, ag *copyingAgents, addr, uid string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := ag.Info(ctx, addr, uid); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the copy of shard %s on %s was left behind", uid, addr)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// A node is never removed while the state puts a shard on it, even when
// the shard came there after the removal's plan was made: the shard would
// go with the node, or come back empty should the uid join again.
func TestExecutor_RemoveRefusesANodeThatStillHostsShards(t *testing.T) {
	st := adminState(modelState(3, [][2]int{{3, 1}}, fsm.PersistenceDisabled))
	for uid, n := range st.Nodes {
		n.APIAddr = "node" + string(rune('0'+uid))
	}
	st.Voters = []int{1, 2, 3}
	f := admittingFSM(t, st)
	r := &localRaft{f: f}
	for _, cmd := range []any{submit("task", fsm.ActionRemove, 3),
		&fsm.ClaimAction{TaskID: "task", Term: 1, Leader: 1},
		// A plan that does not know of the shard on node 3.
		&fsm.PlanAction{TaskID: "task", Term: 1, Steps: []fsm.Step{{Kind: fsm.StepRemoveMember, From: 3}}}} {
		if res := applyTo(t, f, cmd); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Executor{FSM: f, Raft: r, Agents: &copyingAgents{have: map[string]bool{}}, Log: slog.New(slog.DiscardHandler)}
	done := make(chan struct{})
	go func() { e.Run(ctx, 1); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	a := waitAction(t, f, "task", func(a *fsm.Action) bool { return fsm.Terminal(a.Status) })
	if a.Status != fsm.StatusFailed || a.ErrorCode != "insufficient_resources" || !strings.Contains(a.ErrorMessage, "node 3 still hosts shard 1") {
		t.Fatalf("action ended %s (%s: %s), want failed: node 3 still hosts shard 1", a.Status, a.ErrorCode, a.ErrorMessage)
	}
	f.Read(func(s *fsm.State, _ uint64) {
		if _, ok := s.Nodes[3]; !ok {
			t.Error("node 3 left the node table with a shard on it")
		}
	})
}

// TestExecutor_StepWaitsWhileAnotherActionSwitchesTheSamePair: another
// action's failover of shard 1 has begun (its leader is elsewhere, at a
// newer term). maintenance_on of node 2 must not switch the same pair
// meanwhile: it waits, naming the other action, touches no agent, and goes
// on once the other action ends.
func TestExecutor_StepWaitsWhileAnotherActionSwitchesTheSamePair(t *testing.T) {
	f, r, ag := executorCluster(t, "node1/2", "node2/1")
	otherHoldsShard1(t, f)
	ctx := runExecutor(t, f, r, ag, fsm.ActionMaintenanceOn, 2)

	a := waitAction(t, f, "task", func(a *fsm.Action) bool { return a.Waiting != "" || fsm.Terminal(a.Status) })
	if fsm.Terminal(a.Status) || !strings.Contains(a.Waiting, "enslave_node other") {
		t.Fatalf("action %s, waiting %q; want it waiting for the other action's step", a.Status, a.Waiting)
	}
	ag.mu.Lock()
	copies := len(ag.have)
	ag.mu.Unlock()
	f.Read(func(st *fsm.State, _ uint64) {
		if sh := st.Shards["1"]; sh.Role != fsm.RoleMaster || sh.NodeUID != 2 || copies != 2 {
			t.Errorf("while waiting: shard 1 %s on node %d, %d copies; want it untouched", sh.Role, sh.NodeUID, copies)
		}
	})
	// The other action's failover lands: the roles the waiting action
	// planned against are swapped when it goes on.
	for _, p := range []any{
		&fsm.StepDone{TaskID: "other", Term: 5, Index: 0},
		&fsm.FinishAction{TaskID: "other", Term: 5, Status: fsm.StatusCompleted},
	} {
		if _, err := r.Apply(ctx, mustEncode(t, p)); err != nil {
			t.Fatalf("%T: %v", p, err)
		}
	}
	a = waitAction(t, f, "task", func(a *fsm.Action) bool { return fsm.Terminal(a.Status) })
	if a.Status != fsm.StatusCompleted {
		t.Fatalf("action ended %s (%s: %s), want completed once the pair was free", a.Status, a.ErrorCode, a.ErrorMessage)
	}
	f.Read(func(st *fsm.State, _ uint64) {
		masters := 0
		for _, sh := range st.Shards {
			if sh.NodeUID == 2 {
				t.Errorf("shard %s is still on node 2, which is in maintenance", sh.UID)
			}
			if sh.Role == fsm.RoleMaster {
				masters++
			}
		}
		if masters != 1 {
			t.Errorf("%d masters of the pair, want 1", masters)
		}
	})
}

// otherHoldsShard1 puts into f an enslave_node of node 3, led at term 5
// elsewhere, whose failover of shard 1 has begun, then the entries then.
func otherHoldsShard1(t *testing.T, f *fsm.FSM, then ...any) {
	t.Helper()
	for _, p := range append([]any{
		submit("other", fsm.ActionEnslaveNode, 3),
		&fsm.ClaimAction{TaskID: "other", Term: 5, Leader: 3},
		&fsm.PlanAction{TaskID: "other", Term: 5, Steps: []fsm.Step{{Kind: fsm.StepFailover, Shard: "1"}}},
		&fsm.BeginStep{TaskID: "other", Term: 5, Index: 0},
	}, then...) {
		if res := applyTo(t, f, p); res.Err != nil {
			t.Fatalf("%T: %v", p, res.Err)
		}
	}
}
