package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"cnm/agent"
	"cnm/fsm"
)

// promotingAgents records the promotions asked of copyingAgents, and the
// role the state gave the old master at each, failing the first few.
type promotingAgents struct {
	*copyingAgents
	f     *fsm.FSM
	mu    sync.Mutex
	fail  int
	calls []promoteCall
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
	a.mu.Unlock()
	if failing {
		return agent.Info{}, errors.New("connection refused")
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
			if res := applyTo(t, f, submit("task", fsm.ActionEnslaveNode, 2)); res.Err != nil {
				t.Fatal(res.Err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			e := &Executor{FSM: f, Raft: r, Agents: ag, Log: slog.New(slog.DiscardHandler)}
			done := make(chan struct{})
			go func() { e.Run(ctx, 1); close(done) }()
			t.Cleanup(func() { cancel(); <-done })
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
			want := agent.PromoteRequest{OldNode: "node2", OldNodeUID: 2, OldShard: "1", Op: agent.Op{TaskID: "task", Step: step, Term: 1}}
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
