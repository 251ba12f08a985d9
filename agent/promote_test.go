package agent_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cnm/agent"
	"cnm/fsm"
)

// A backend without a Promoter is promoted by a role switch, as reconcile
// would after the commit; the call is fenced by term and idempotent.
func TestPromoteOfAFileShardSwitchesItsRole(t *testing.T) {
	ca := newCA(t)
	p := startPeer(t, ca, 2, "127.0.0.1", peerOpts{})
	materialise(t, p.backend, agent.Spec{UID: "2", Role: fsm.RoleSlave, Size: 64})
	materialise(t, p.backend, agent.Spec{UID: "3", Role: fsm.RoleSlave, Size: 64})
	materialise(t, p.backend, agent.Spec{UID: "4", Role: fsm.RoleSlave, Size: 64})
	// Shard 4 is a replica that has not caught up.
	metaPath := filepath.Join(p.dir, "4.meta")
	meta := strings.Replace(string(readFile(t, metaPath)), `"in_sync":true`, `"in_sync":false`, 1)
	if !strings.Contains(meta, `"in_sync":false`) {
		t.Fatalf("no in_sync in %s", meta)
	}
	if err := os.WriteFile(metaPath, []byte(meta), 0o600); err != nil {
		t.Fatal(err)
	}
	op := func(term uint64) agent.Op { return agent.Op{TaskID: "f", Step: 1, Term: term} }
	cases := []struct {
		name     string
		uid      string
		op       agent.Op
		inSync   bool // only a replica in sync
		wantErr  error
		wantRole string
	}{
		{name: "a replica becomes the master", uid: "2", op: op(3), wantRole: fsm.RoleMaster},
		{name: "a retried call succeeds", uid: "2", op: op(3), wantRole: fsm.RoleMaster},
		{name: "an older term is refused", uid: "3", op: op(2), wantErr: agent.ErrStaleTerm, wantRole: fsm.RoleSlave},
		{name: "a shard that is not here", uid: "9", op: op(3), wantErr: agent.ErrNoShard},
		{name: "a replica behind is refused where one in sync is asked for", uid: "4", op: op(3), inSync: true, wantErr: fsm.ErrNotInSync, wantRole: fsm.RoleSlave},
		{name: "the master asked for in sync succeeds again", uid: "2", op: op(3), inSync: true, wantRole: fsm.RoleMaster},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := agent.PromoteRequest{OldNode: "127.0.0.1:1", OldNodeUID: 1, OldShard: "1", Op: c.op, InSync: c.inSync}
			if _, err := p.client.Promote(t.Context(), p.addr, c.uid, req); !errors.Is(err, c.wantErr) {
				t.Fatalf("Promote: %v, want %v", err, c.wantErr)
			}
			if c.wantRole == "" {
				return
			}
			if info, err := p.backend.Info(c.uid); err != nil || info.Role != c.wantRole {
				t.Errorf("shard %s: %+v, %v; want %s", c.uid, info, err, c.wantRole)
			}
		})
	}
	// The retry switched nothing, so only the first promotion is recorded.
	if ops := p.agent.Ops(); len(ops) != 1 || ops[0].Kind != "promote" || ops[0].Op != op(3) {
		t.Errorf("op log %+v, want the one promotion of term 3", ops)
	}
}

// A promotion can reach the replica's node before that node has applied
// the commit that began the promotion's step (a follower learns of a
// commit with the leader's next message). Until this node's state has the
// step committed, or its action over, its passes leave the promoted copy
// the master; once the action ended without the commit, the state's role
// comes back.
func TestPromotedCopyIsLeftAloneUntilItsStepCommits(t *testing.T) {
	cases := []struct {
		name     string
		end      func(l *stateLog)
		wantRole string
	}{
		{name: "the step commits", wantRole: fsm.RoleMaster, end: func(l *stateLog) {
			l.apply(t, &fsm.StepDone{TaskID: "t", Term: 3, Index: 1})
		}},
		{name: "the action fails first", wantRole: fsm.RoleSlave, end: func(l *stateLog) {
			l.apply(t, &fsm.FinishAction{TaskID: "t", Term: 3, Status: fsm.StatusFailed, ErrorCode: "internal_error"})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newClusterState(t)
			// Shard 1, the master, on node 2; shard 2, its replica, here.
			l.createBDB(t, fsm.BDB{Name: "pair", MemorySize: 4 << 20, ShardsCount: 1, Replication: true,
				DataPersistence: fsm.PersistenceDisabled}, []int{2, 1})
			p := startPeer(t, newCA(t), 1, "127.0.0.1", peerOpts{fsm: l.f})
			role := func(what string) string {
				t.Helper()
				if err := p.agent.Reconcile(t.Context()); err != nil {
					t.Fatalf("reconcile %s: %v", what, err)
				}
				info, err := p.backend.Info("2")
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				return info.Role
			}
			if r := role("at the start"); r != fsm.RoleSlave {
				t.Fatalf("shard 2 is %s at the start, want slave", r)
			}
			for _, cmd := range []any{
				&fsm.SubmitAction{Action: fsm.Action{TaskID: "t", Action: fsm.ActionEnslaveNode, NodeUID: 2, Deadline: 1 << 40}, By: "test"},
				&fsm.ClaimAction{TaskID: "t", Term: 3, Leader: 2},
				&fsm.PlanAction{TaskID: "t", Term: 3, Steps: []fsm.Step{{Kind: fsm.StepMaintenance}, {Kind: fsm.StepFailover, Shard: "1"}}},
			} {
				l.apply(t, cmd)
			}
			// The leader has committed step 0 with step 1 begun; this
			// node has not applied it yet when the promotion arrives.
			req := agent.PromoteRequest{OldNode: "127.0.0.1:1", OldNodeUID: 2, OldShard: "1", Op: agent.Op{TaskID: "t", Step: 1, Term: 3}, InSync: true}
			if _, err := p.client.Promote(t.Context(), p.addr, "2", req); err != nil {
				t.Fatal(err)
			}
			if r := role("before this node has the step begun"); r != fsm.RoleMaster {
				t.Fatalf("a pass switched the promoted shard 2 back to %s before its step was begun here", r)
			}
			l.apply(t, &fsm.StepDone{TaskID: "t", Term: 3, Index: 0, BeginNext: true})
			if r := role("with the step begun"); r != fsm.RoleMaster {
				t.Fatalf("a pass switched the promoted shard 2 back to %s while its step runs", r)
			}
			c.end(l)
			if r := role("at the end"); r != c.wantRole {
				t.Errorf("shard 2 is %s at the end, want %s", r, c.wantRole)
			}
		})
	}
}
