package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"cnm/agent"
	"cnm/fsm"
)

// promotingAgents records the promotions asked of copyingAgents, and the
// role the state gave the old master at each, failing the first few.
type promotingAgents struct {
	*copyingAgents
	f    *fsm.FSM
	mu   sync.Mutex
	fail int
	// onFail runs after a failed promotion, as one whose answer was lost.
	onFail func()
	calls  []promoteCall
}

type promoteCall struct {
	addr, uid string
	req       agent.PromoteRequest
	oldRole   string // shard 1's role in the state during the call
}

func (a *promotingAgents) Promote(ctx context.Context, addr, uid string, req agent.PromoteRequest) (agent.Info, error) {
	c := promoteCall{addr: addr, uid: uid, req: req}
	a.f.Read(func(st *fsm.State, _ uint64) { c.oldRole = st.Shards["1"].Role })
	a.mu.Lock()
	a.calls = append(a.calls, c)
	failing := a.fail > 0
	a.fail--
	hook := a.onFail
	a.mu.Unlock()
	if failing {
		if hook != nil {
			hook()
		}
		return agent.Info{}, errors.New("connection reset by peer")
	}
	return a.copyingAgents.Promote(ctx, addr, uid, req)
}

// The failover of enslave_node has the replica's agent promote it in
// place of the old master before the commit records the swap; a
// promotion that fails is retried.
func TestExecutor_FailoverPromotesTheReplicaBeforeItsCommit(t *testing.T) {
	for _, fail := range []int{0, 2} {
		t.Run(fmt.Sprintf("%d promotions fail first", fail), func(t *testing.T) {
			f, r, copying := executorCluster(t, "node1/2", "node2/1")
			ag := &promotingAgents{copyingAgents: copying, f: f, fail: fail}
			runExecutorOn(t, f, r, ag, fsm.ActionEnslaveNode, 2)
			a := waitAction(t, f, "task", func(a *fsm.Action) bool { return fsm.Terminal(a.Status) })
			if a.Status != fsm.StatusCompleted {
				t.Fatalf("action ended %s (%s: %s), want completed", a.Status, a.ErrorCode, a.ErrorMessage)
			}
			ag.mu.Lock()
			calls := append([]promoteCall{}, ag.calls...)
			ag.mu.Unlock()
			if len(calls) != fail+1 {
				t.Fatalf("%d promotions, want %d: %+v", len(calls), fail+1, calls)
			}
			step := -1
			for i, st := range a.Steps {
				if st.Kind == fsm.StepFailover && st.Shard == "1" {
					step = i
				}
			}
			want := agent.PromoteRequest{OldNode: "node2", OldNodeUID: 2, OldShard: "1", Op: agent.Op{TaskID: "task", Step: step, Term: 1}, InSync: true}
			for _, c := range calls {
				if c.addr != "node1" || c.uid != "2" || c.req != want || c.oldRole != fsm.RoleMaster {
					t.Errorf("promotion %+v, want of replica 2 on node1 with %+v while the state names shard 1 master", c, want)
				}
			}
			f.Read(func(st *fsm.State, _ uint64) {
				if st.Shards["1"].Role != fsm.RoleSlave || st.Shards["2"].Role != fsm.RoleMaster {
					t.Errorf("shard 1 %s, shard 2 %s after the action; want them swapped", st.Shards["1"].Role, st.Shards["2"].Role)
				}
			})
		})
	}
}

// A failover cancelled after a promotion whose answer was lost switches
// the old master back through its agent, the same lossless way, once the
// step gives up: the state still names it master.
func TestExecutor_FailoverStoppedAfterAPromotionSwitchesBack(t *testing.T) {
	f, r, copying := executorCluster(t, "node1/2", "node2/1")
	ag := &promotingAgents{copyingAgents: copying, f: f, fail: 1}
	ag.onFail = func() {
		if _, err := r.Apply(context.Background(), mustEncode(t, &fsm.CancelAction{Actor: fsm.Actor{UID: 1}, Node: 2, Action: fsm.ActionEnslaveNode, By: "test"})); err != nil {
			t.Errorf("cancel: %v", err)
		}
	}
	runExecutorOn(t, f, r, ag, fsm.ActionEnslaveNode, 2)
	a := waitAction(t, f, "task", func(a *fsm.Action) bool { return fsm.Terminal(a.Status) })
	if a.Status != fsm.StatusCancelled {
		t.Fatalf("action ended %s (%s: %s), want cancelled", a.Status, a.ErrorCode, a.ErrorMessage)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ag.mu.Lock()
		calls := append([]promoteCall{}, ag.calls...)
		ag.mu.Unlock()
		if len(calls) >= 2 {
			want := agent.PromoteRequest{OldNode: "node1", OldNodeUID: 1, OldShard: "2"}
			// Taken back when the step gives up, and again once the
			// cancel is committed: the switch-back is idempotent.
			for _, c := range calls[1:] {
				if c.addr != "node2" || c.uid != "1" || c.req != want {
					t.Errorf("promotions %+v; want those after the first of shard 1 on node2 in place of %+v", calls, want)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no promotion switched shard 1 back: %+v", calls)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// runExecutorOn is runExecutor with any agents.
func runExecutorOn(t *testing.T, f *fsm.FSM, r *localRaft, ag Agents, name string, node int) {
	t.Helper()
	if res := applyTo(t, f, submit("task", name, node)); res.Err != nil {
		t.Fatal(res.Err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Executor{FSM: f, Raft: r, Agents: ag, Log: slog.New(slog.DiscardHandler)}
	done := make(chan struct{})
	go func() { e.Run(ctx, 1); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}
