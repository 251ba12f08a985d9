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
