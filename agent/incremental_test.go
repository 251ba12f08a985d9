package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"cnm/agent"
	"cnm/fsm"
)

// countingBackend counts Info calls per shard.
type countingBackend struct {
	*agent.FileBackend
	mu    sync.Mutex
	infos map[string]int
}

func (c *countingBackend) Info(uid string) (agent.Info, error) {
	c.mu.Lock()
	c.infos[uid]++
	c.mu.Unlock()
	return c.FileBackend.Info(uid)
}

func (c *countingBackend) reset() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.infos
	c.infos = map[string]int{}
	return out
}

// After a state change the agent looks only at the shards the change
// touched; a full pass (a kick) still looks at every shard and repairs one
// changed behind its back.
func TestReconcileAfterAChangeLooksOnlyAtWhatChanged(t *testing.T) {
	l := newClusterState(t)
	createTestDBs(t, l)
	fb, dir := newBackend(t, nil)
	b := &countingBackend{FileBackend: fb, infos: map[string]int{}}
	a := agent.New(agent.Config{NodeUID: 1, FSM: l.f, Backend: b, Scale: testScale, Resync: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, 10*time.Second, func() error { return holdsExactly(fb, dir, l.shardsOn(1)) })
	old := l.shardsOn(1)

	b.reset()
	later := l.createBDB(t, fsm.BDB{Name: "later", MemorySize: 4 << 20, ShardsCount: 1, DataPersistence: fsm.PersistenceDisabled}, []int{1})
	eventually(t, 10*time.Second, func() error { return holdsExactly(fb, dir, l.shardsOn(1)) })
	seen := b.reset()
	for uid := range old {
		if seen[uid] > 0 {
			t.Errorf("a database created elsewhere had the agent look at unchanged shard %s %d times", uid, seen[uid])
		}
	}

	// A role changed behind the agent's back is repaired by a full pass.
	var victim string
	for uid, sh := range old {
		if sh.Role == fsm.RoleMaster {
			victim = uid
			break
		}
	}
	if err := fb.SwitchRole(t.Context(), victim, fsm.RoleSlave); err != nil {
		t.Fatal(err)
	}
	a.Kick()
	eventually(t, 10*time.Second, func() error {
		if err := holdsExactly(fb, dir, l.shardsOn(1)); err != nil {
			return fmt.Errorf("after a kick: %w", err)
		}
		return nil
	})
	if seen := b.reset(); seen[victim] == 0 {
		t.Errorf("the kick's pass did not look at shard %s", victim)
	}

	// A deleted database's shards leave at the pass after the change, not
	// at the next full one (an hour away).
	l.apply(t, &fsm.DeleteBDB{UID: later})
	eventually(t, 10*time.Second, func() error { return holdsExactly(fb, dir, l.shardsOn(1)) })
}

// memSink holds a snapshot in memory.
type memSink struct{ bytes.Buffer }

func (*memSink) ID() string    { return "mem" }
func (*memSink) Cancel() error { return nil }
func (*memSink) Close() error  { return nil }

// snapshotOf is a snapshot of f's state, as raft would persist it.
func snapshotOf(t *testing.T, f *fsm.FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

// runAction carries an action of one step on node through the state as
// a leader of term 3 would: submitted, claimed, planned, its step done.
func runAction(t *testing.T, l *stateLog, task, name string, node int, step fsm.Step) {
	t.Helper()
	for _, p := range []any{
		&fsm.SubmitAction{Action: fsm.Action{TaskID: task, Action: name, NodeUID: node, Deadline: 1 << 40}, By: "test"},
		&fsm.ClaimAction{TaskID: task, Term: 3, Leader: 1},
		&fsm.PlanAction{TaskID: task, Term: 3, Steps: []fsm.Step{step}},
		&fsm.StepDone{TaskID: task, Term: 3, Index: 0},
		&fsm.FinishAction{TaskID: task, Term: 3, Status: fsm.StatusCompleted},
	} {
		l.apply(t, p)
	}
}

// The passes after applied changes read only what the state wrote since
// the pass before; they must still follow every kind of change, with no
// full pass to fall back on (the resync is an hour away): a failover, a
// move away, and a snapshot restored over the state, which replaces
// everything at once.
func TestIncrementalPassesFollowEveryChange(t *testing.T) {
	l := newClusterState(t)
	fb, dir := newBackend(t, nil)
	a := agent.New(agent.Config{NodeUID: 1, FSM: l.f, Backend: fb, Scale: testScale, Resync: time.Hour})
	stop := runAgent(t, a)
	defer stop()
	converged := func(what string) {
		t.Helper()
		eventually(t, 10*time.Second, func() error {
			if err := holdsExactly(fb, dir, l.shardsOn(1)); err != nil {
				return fmt.Errorf("after %s: %w", what, err)
			}
			return nil
		})
	}
	createTestDBs(t, l)
	converged("creating the databases")

	// Shard 1, master here, fails over to its replica on node 2.
	runAction(t, l, "failover", fsm.ActionEnslaveNode, 1, fsm.Step{Kind: fsm.StepFailover, Shard: "1"})
	if sh := l.shardsOn(1)["1"]; sh.Role != fsm.RoleSlave {
		t.Fatalf("shard 1 is %s here after its failover, want slave", sh.Role)
	}
	converged("a failover")

	// Shard 7, of scratch, moves to node 2 and is dropped here.
	runAction(t, l, "move", fsm.ActionMaintenanceOn, 1, fsm.Step{Kind: fsm.StepMove, Shard: "7", From: 1, To: 2})
	if _, here := l.shardsOn(1)["7"]; here {
		t.Fatal("shard 7 is still assigned here after its move")
	}
	converged("a move away")

	// A newer state arrives as a snapshot (a follower far behind): it
	// holds a database created since, with a shard here.
	ahead := &stateLog{f: fsm.New(), index: l.index}
	if err := ahead.f.Restore(io.NopCloser(bytes.NewReader(snapshotOf(t, l.f)))); err != nil {
		t.Fatal(err)
	}
	ahead.createBDB(t, fsm.BDB{Name: "since", MemorySize: 4 << 20, ShardsCount: 1, DataPersistence: fsm.PersistenceDisabled}, []int{1})
	if err := l.f.Restore(io.NopCloser(bytes.NewReader(snapshotOf(t, ahead.f)))); err != nil {
		t.Fatal(err)
	}
	l.index = ahead.index
	if len(l.shardsOn(1)) != len(ahead.shardsOn(1)) {
		t.Fatal("the restore did not take")
	}
	converged("a snapshot restored")
}
