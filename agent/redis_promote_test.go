package agent_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"cnm/agent"
	"cnm/fsm"
)

// failoverInFlight puts into the state a maintenance action whose current
// step fails shard over, as the executor sees it before the commit.
func failoverInFlight(t *testing.T, l *stateLog, node int, shard string) {
	t.Helper()
	l.apply(t, &fsm.SubmitAction{Action: fsm.Action{TaskID: "f", Action: fsm.ActionMaintenanceOn, NodeUID: node, Deadline: 1 << 40}, By: "test"})
	l.apply(t, &fsm.ClaimAction{TaskID: "f", Term: 3, Leader: 1})
	l.apply(t, &fsm.PlanAction{TaskID: "f", Term: 3, Steps: []fsm.Step{{Kind: fsm.StepFailover, Shard: shard}}})
}

// syncedPair creates a replicated database on redisPeers' two nodes and
// reconciles until the replica (shard 2, node 2) is in sync with its
// master (shard 1, node 1).
func syncedPair(t *testing.T, l *stateLog, p1, p2 *peer, b2 *agent.RedisBackend) {
	t.Helper()
	l.createBDB(t, fsm.BDB{Name: "orders", MemorySize: 32 << 20, ShardsCount: 1, Replication: true,
		DataPersistence: fsm.PersistenceDisabled}, []int{1, 2})
	eventually(t, 15*time.Second, func() error {
		if err := errors.Join(p1.agent.Reconcile(t.Context()), p2.agent.Reconcile(t.Context())); err != nil {
			return err
		}
		if info := redisInfo(t, b2, "2"); !info.InSync || info.Role != fsm.RoleSlave {
			return fmt.Errorf("replica %+v not in sync", info)
		}
		return nil
	})
}

// rolesAre checks that shard 2 (node 2) is the master and shard 1 (node
// 1) its replica, refusing writes.
func rolesAre(t *testing.T, b1, b2 *agent.RedisBackend) error {
	t.Helper()
	return masterAndReplica(t, b2, "2", b1, "1")
}

// masterAndReplica checks that shard muid of bm is the master and ruid of
// br its replica, refusing writes.
func masterAndReplica(t *testing.T, bm *agent.RedisBackend, muid string, br *agent.RedisBackend, ruid string) error {
	t.Helper()
	master := shardAddr(t, bm, muid)
	if info := redisInfo(t, bm, muid); info.Role != fsm.RoleMaster {
		return fmt.Errorf("shard %s: %+v, want the master", muid, info)
	}
	if info := redisInfo(t, br, ruid); info.Role != fsm.RoleSlave || info.Master != master {
		return fmt.Errorf("shard %s: %+v, want a replica of %s", ruid, info, master)
	}
	if err := client(t, br, ruid).Set(t.Context(), "probe", "x", 0).Err(); err == nil || !strings.Contains(err.Error(), "READONLY") {
		return fmt.Errorf("a write to the replica %s got %v, want READONLY", ruid, err)
	}
	return nil
}

// allAcknowledgedOn checks that every write w had acknowledged is on the
// shard uid of b.
func allAcknowledgedOn(t *testing.T, w *writer, b *agent.RedisBackend, uid string) {
	t.Helper()
	c := client(t, b, uid)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, i := range w.acked {
		if got, err := c.Get(t.Context(), fmt.Sprintf("key-%d", i)).Result(); err != nil || got != fmt.Sprintf("value-%d", i) {
			t.Fatalf("acknowledged write %d of %d: got %q, %v", i, len(w.acked), got, err)
		}
	}
	t.Logf("%d acknowledged writes, all on shard %s", len(w.acked), uid)
}

func TestPromoteThroughTheAgentAPIFailsARedisMasterOverWithoutLosingAWrite(t *testing.T) {
	l, p1, p2, b1, b2 := redisPeers(t)
	ctx := t.Context()
	syncedPair(t, l, p1, p2, b2)
	failoverInFlight(t, l, 1, "1")
	w := startWriter(t, shardAddr(t, b1, "1"))
	eventually(t, 10*time.Second, func() error {
		if w.count() < 500 {
			return errors.New("writer has not written yet")
		}
		return nil
	})
	req := agent.PromoteRequest{OldNode: p1.addr, OldNodeUID: 1, OldShard: "1", Op: agent.Op{TaskID: "f", Step: 0, Term: 3}}
	info, err := p1.client.Promote(ctx, p2.addr, "2", req)
	w.halt()
	if err != nil {
		t.Fatalf("Promote: %v", err)
	}
	if info.Role != fsm.RoleMaster {
		t.Errorf("Promote answered %+v, want the master", info)
	}
	if err := rolesAre(t, b1, b2); err != nil {
		t.Fatal(err)
	}
	allAcknowledgedOn(t, w, b2, "2")

	cases := []struct {
		name    string
		node    *peer
		uid     string
		req     agent.PromoteRequest
		wantErr error
	}{
		{name: "a retried call is a no-op success", node: p2, uid: "2", req: req},
		// The fence is the agent's: a deposed leader's call reaches the
		// agent that a newer term's call reached.
		{name: "an older term is refused", node: p2, uid: "2", wantErr: agent.ErrStaleTerm,
			req: agent.PromoteRequest{OldMaster: "127.0.0.1:1", Op: agent.Op{TaskID: "f", Step: 0, Term: 2}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := p1.client.Promote(ctx, c.node.addr, c.uid, c.req); !errors.Is(err, c.wantErr) {
				t.Fatalf("Promote: %v, want %v", err, c.wantErr)
			}
			if err := rolesAre(t, b1, b2); err != nil {
				t.Error(err)
			}
		})
	}

	// Before the commit the state still says the old roles: reconciles
	// leave them as the step switched them.
	for _, p := range []*peer{p1, p2} {
		if err := p.agent.Reconcile(ctx); err != nil {
			t.Fatalf("reconcile node %d during the step: %v", p.uid, err)
		}
	}
	if err := rolesAre(t, b1, b2); err != nil {
		t.Fatalf("after reconciles during the step: %v", err)
	}
	l.apply(t, &fsm.StepDone{TaskID: "f", Term: 3, Index: 0, Time: 1})
	for _, p := range []*peer{p1, p2} {
		if err := p.agent.Reconcile(ctx); err != nil {
			t.Fatalf("reconcile node %d after the commit: %v", p.uid, err)
		}
	}
	if err := rolesAre(t, b1, b2); err != nil {
		t.Fatalf("after reconciles after the commit: %v", err)
	}
	l.f.Read(func(st *fsm.State, _ uint64) {
		if st.Shards["1"].Role != fsm.RoleSlave || st.Shards["2"].Role != fsm.RoleMaster {
			t.Errorf("the state says shard 1 %s, shard 2 %s; want them swapped", st.Shards["1"].Role, st.Shards["2"].Role)
		}
	})
}

// A master whose process is gone cannot be paused, and has no write left
// to lose: the replica is promoted without a switch-over.
func TestPromoteOfARedisReplicaWhoseMasterIsGone(t *testing.T) {
	l, p1, p2, b1, b2 := redisPeers(t)
	syncedPair(t, l, p1, p2, b2)
	failoverInFlight(t, l, 1, "1")
	old := shardAddr(t, b1, "1")
	if err := b1.Drop(t.Context(), "1"); err != nil {
		t.Fatal(err)
	}
	req := agent.PromoteRequest{OldMaster: old, Op: agent.Op{TaskID: "f", Step: 0, Term: 3}}
	info, err := p1.client.Promote(t.Context(), p2.addr, "2", req)
	if err != nil {
		t.Fatalf("Promote: %v", err)
	}
	if info.Role != fsm.RoleMaster {
		t.Errorf("Promote answered %+v, want the master", info)
	}
	if err := client(t, b2, "2").Set(t.Context(), "after", "1", 0).Err(); err != nil {
		t.Errorf("the new master refuses writes: %v", err)
	}
}

// A failover that stops before its commit switches the old master back
// (the executor's take-back) the same way it was switched over.
func TestPromoteOfTheOldRedisMasterSwitchesAFailoverBack(t *testing.T) {
	l, p1, p2, b1, b2 := redisPeers(t)
	ctx := t.Context()
	syncedPair(t, l, p1, p2, b2)
	failoverInFlight(t, l, 1, "1")
	if _, err := p1.client.Promote(ctx, p2.addr, "2", agent.PromoteRequest{OldNode: p1.addr, OldNodeUID: 1, OldShard: "1",
		Op: agent.Op{TaskID: "f", Step: 0, Term: 3}}); err != nil {
		t.Fatalf("Promote: %v", err)
	}
	if err := client(t, b2, "2").Set(ctx, "during", "1", 0).Err(); err != nil {
		t.Fatalf("the promoted replica refuses writes: %v", err)
	}
	if _, err := p2.client.Promote(ctx, p1.addr, "1", agent.PromoteRequest{OldNode: p2.addr, OldNodeUID: 2, OldShard: "2"}); err != nil {
		t.Fatalf("Promote back: %v", err)
	}
	if err := masterAndReplica(t, b1, "1", b2, "2"); err != nil {
		t.Fatal(err)
	}
	if got, err := client(t, b1, "1").Get(ctx, "during").Result(); err != nil || got != "1" {
		t.Errorf("a write acknowledged by the promoted replica: %q, %v", got, err)
	}
}

// A replica made before its master's address was known runs as an empty
// master; promoted in its master's place (a failover right after the
// database was created), it copies from the old master first and takes
// over from it, rather than refusing until the action's deadline.
func TestPromoteOfARedisReplicaThatNeverFollowedCopiesFromTheOldMasterFirst(t *testing.T) {
	src, dst := newRedisBackend(t, redisOpts{}), newRedisBackend(t, redisOpts{})
	ctx := t.Context()
	if err := src.Materialise(ctx, agent.Spec{UID: "7", Role: fsm.RoleMaster, Memory: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := client(t, src, "7").Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := dst.Materialise(ctx, agent.Spec{UID: "8", Role: fsm.RoleSlave, Memory: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := dst.Promote(ctx, "8", shardAddr(t, src, "7")); err != nil {
		t.Fatalf("Promote: %v", err)
	}
	if err := masterAndReplica(t, dst, "8", src, "7"); err != nil {
		t.Fatal(err)
	}
	if got, err := client(t, dst, "8").Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("promoted shard's key: %q, %v; want the old master's", got, err)
	}
}

// A switch-over never takes over from a copy that another switch-over has
// made a replica meanwhile: that would make a second master.
func TestPromoteRefusesToTakeOverFromACopyThatIsNoMasterAnyMore(t *testing.T) {
	a, b := newRedisBackend(t, redisOpts{}), newRedisBackend(t, redisOpts{})
	ctx := t.Context()
	if err := a.Materialise(ctx, agent.Spec{UID: "1", Role: fsm.RoleMaster, Memory: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	master := shardAddr(t, a, "1")
	// The old master of the promotion, demoted by another switch-over.
	if err := a.Materialise(ctx, agent.Spec{UID: "2", Role: fsm.RoleSlave, Memory: 32 << 20, Master: master}); err != nil {
		t.Fatal(err)
	}
	old := shardAddr(t, a, "2")
	if err := b.Materialise(ctx, agent.Spec{UID: "3", Role: fsm.RoleSlave, Memory: 32 << 20, Master: old}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if info := redisInfo(t, b, "3"); !info.InSync {
			return fmt.Errorf("replica 3: %+v", info)
		}
		return nil
	})
	err := b.Promote(ctx, "3", old)
	if err == nil || !strings.Contains(err.Error(), "no master any more") {
		t.Fatalf("Promote from a replica: %v, want a refusal", err)
	}
	if info := redisInfo(t, b, "3"); info.Role != fsm.RoleSlave {
		t.Errorf("shard 3 after the refused promotion: %+v, want still a replica", info)
	}
}
