package cluster

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"cnm/fsm"
)

// modelState builds nodes 1..n (active, 10 shards, 10 GiB each) and one
// replicated database whose pairs (master node, replica node) are given.
func modelState(n int, pairs [][2]int, persistence string) *fsm.State {
	st := fsm.NewState()
	st.Cluster.Name = "test"
	for uid := 1; uid <= n; uid++ {
		st.Nodes[uid] = &fsm.Node{UID: uid, Status: fsm.NodeActive, AcceptServers: true, MaxRedisServers: 10,
			TotalMemory: 10 << 30, RackID: "r" + strconv.Itoa(uid)}
	}
	st.BDBs[1] = &fsm.BDB{UID: 1, Name: "db", MemorySize: int64(len(pairs)) << 30, ShardsCount: len(pairs),
		Replication: true, DataPersistence: persistence,
		Endpoints: []fsm.Endpoint{{UID: "1:1", NodeUID: pairs[0][0], Port: 12001}}}
	id := 1
	for i, p := range pairs {
		slots := fsm.SlotRange(i, len(pairs))
		st.Shards[strconv.Itoa(id)] = &fsm.Shard{UID: strconv.Itoa(id), BDBUID: 1, NodeUID: p[0], Role: fsm.RoleMaster, Memory: 1 << 30, AssignedSlots: slots}
		st.Shards[strconv.Itoa(id+1)] = &fsm.Shard{UID: strconv.Itoa(id + 1), BDBUID: 1, NodeUID: p[1], Role: fsm.RoleSlave, Memory: 1 << 30, AssignedSlots: slots}
		id += 2
	}
	return st
}

func kinds(steps []fsm.Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Kind
	}
	return out
}

func action(name string, node int, params string) *fsm.Action {
	return &fsm.Action{TaskID: "t", Action: name, NodeUID: node, Params: json.RawMessage(params)}
}

func TestPlanAction(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		st     *fsm.State
		action *fsm.Action
		want   []string
		code   string // expected *fsm.Error code
		check  func(t *testing.T, steps []fsm.Step)
	}{
		{name: "remove: hand-off, replica moves, master fails over and moves, rebind, leave",
			st: modelState(3, [][2]int{{1, 2}, {3, 1}}, fsm.PersistenceDisabled), action: action(fsm.ActionRemove, 1, `{}`),
			want: []string{fsm.StepTransferLeader, fsm.StepFailover, fsm.StepMove, fsm.StepMove, fsm.StepRebind, fsm.StepRemoveMember},
			check: func(t *testing.T, steps []fsm.Step) {
				if steps[1].Shard != "1" {
					t.Errorf("failover of %s, want the master 1", steps[1].Shard)
				}
				for _, s := range steps[2:4] {
					if s.From != 1 || s.To == 1 {
						t.Errorf("move %+v does not leave node 1", s)
					}
				}
			}},
		{name: "remove with persistence waits for every moved shard",
			st: modelState(3, [][2]int{{1, 2}}, fsm.PersistenceAOF), action: action(fsm.ActionRemove, 1, `{"wait_for_persistence":true}`),
			want: []string{fsm.StepTransferLeader, fsm.StepFailover, fsm.StepMove, fsm.StepWaitPersistence, fsm.StepRebind, fsm.StepRemoveMember}},
		{name: "remove that leaves no majority is quorum_loss",
			st: func() *fsm.State {
				s := modelState(3, [][2]int{{1, 2}}, fsm.PersistenceDisabled)
				s.Nodes[3].Status = fsm.NodeDown
				return s
			}(), action: action(fsm.ActionRemove, 1, `{}`), code: "quorum_loss"},
		{name: "maintenance_on snapshots, stops accepting, fails over, evacuates",
			st: modelState(3, [][2]int{{2, 1}, {1, 3}}, fsm.PersistenceDisabled), action: action(fsm.ActionMaintenanceOn, 1, `{}`),
			want: []string{fsm.StepSnapshot, fsm.StepMaintenance, fsm.StepFailover, fsm.StepMove, fsm.StepMove},
			check: func(t *testing.T, steps []fsm.Step) {
				if steps[0].Snapshot != "maintenance_mode_2026-01-02_03-04-05" {
					t.Errorf("snapshot name %q", steps[0].Snapshot)
				}
			}},
		{name: "maintenance_on with keep_slave_shards moves no replica",
			st: modelState(3, [][2]int{{2, 1}, {1, 3}}, fsm.PersistenceDisabled), action: action(fsm.ActionMaintenanceOn, 1, `{"keep_slave_shards":true}`),
			want: []string{fsm.StepSnapshot, fsm.StepMaintenance, fsm.StepFailover}},
		{name: "maintenance_on with evict_dbs of another db moves nothing but fails over",
			st: modelState(3, [][2]int{{2, 1}, {1, 3}}, fsm.PersistenceDisabled), action: action(fsm.ActionMaintenanceOn, 1, `{"evict_dbs":["7"]}`),
			want: []string{fsm.StepSnapshot, fsm.StepMaintenance, fsm.StepFailover}},
		{name: "maintenance_on keeps an existing snapshot unless told to overwrite",
			st: func() *fsm.State {
				s := modelState(3, [][2]int{{2, 1}}, fsm.PersistenceDisabled)
				s.Snapshots[1] = []*fsm.NodeSnapshot{{Name: "old"}}
				return s
			}(), action: action(fsm.ActionMaintenanceOn, 1, `{}`),
			want: []string{fsm.StepMaintenance, fsm.StepMove}},
		{name: "maintenance_on that cannot evacuate still enters maintenance, then fails",
			st: func() *fsm.State {
				s := modelState(3, [][2]int{{2, 1}}, fsm.PersistenceDisabled)
				s.Nodes[3].MaxRedisServers = 0
				return s
			}(), action: action(fsm.ActionMaintenanceOn, 1, `{}`),
			want: []string{fsm.StepSnapshot, fsm.StepMaintenance, fsm.StepFail},
			check: func(t *testing.T, steps []fsm.Step) {
				if steps[2].Code != "insufficient_resources" || steps[2].Message == "" {
					t.Errorf("fail step %+v", steps[2])
				}
			}},
		{name: "maintenance_off without a snapshot is snapshot_not_found",
			st: modelState(3, [][2]int{{2, 1}}, fsm.PersistenceDisabled), action: action(fsm.ActionMaintenanceOff, 1, `{}`), code: "snapshot_not_found"},
		{name: "maintenance_off with skip_shards_restore only ends maintenance",
			st: modelState(3, [][2]int{{2, 1}}, fsm.PersistenceDisabled), action: action(fsm.ActionMaintenanceOff, 1, `{"skip_shards_restore":true}`),
			want: []string{fsm.StepEndMaintenance}},
		{name: "maintenance_off moves shards back, restores roles and endpoints, drops the snapshot",
			st: func() *fsm.State {
				// Node 1 held master 1 and the endpoint; maintenance made 2
				// the master and moved 1 to node 3.
				s := modelState(3, [][2]int{{3, 2}}, fsm.PersistenceDisabled)
				s.Shards["1"].Role, s.Shards["2"].Role = fsm.RoleSlave, fsm.RoleMaster
				s.BDBs[1].Endpoints[0].NodeUID = 2
				s.Nodes[1].Maintenance = true
				s.Snapshots[1] = []*fsm.NodeSnapshot{{Name: "m", Shards: []fsm.SnapshotShard{{UID: "1", BDBUID: 1, Role: fsm.RoleMaster}}, Endpoints: []string{"1:1"}}}
				return s
			}(), action: action(fsm.ActionMaintenanceOff, 1, `{}`),
			want: []string{fsm.StepEndMaintenance, fsm.StepMove, fsm.StepFailover, fsm.StepRebind, fsm.StepDeleteSnapshot},
			check: func(t *testing.T, steps []fsm.Step) {
				if steps[1].Shard != "1" || steps[1].To != 1 || steps[2].Shard != "2" || steps[3].To != 1 {
					t.Errorf("steps %+v", steps)
				}
			}},
		{name: "enslave_node fails over every master and hands leadership off",
			st: modelState(3, [][2]int{{1, 2}, {1, 3}}, fsm.PersistenceDisabled), action: action(fsm.ActionEnslaveNode, 1, `{}`),
			want: []string{fsm.StepFailover, fsm.StepFailover, fsm.StepRebind, fsm.StepTransferLeader}},
		{name: "enslave_node with endpoints_only leaves masters",
			st: modelState(3, [][2]int{{1, 2}}, fsm.PersistenceDisabled), action: action(fsm.ActionEnslaveNode, 1, `{"endpoints_only":true}`),
			want: []string{fsm.StepRebind, fsm.StepTransferLeader}, code: "insufficient_resources"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			steps, err := PlanAction(tc.st, tc.action, now)
			if tc.code != "" && tc.want == nil {
				var pe *fsm.Error
				if !errors.As(err, &pe) || pe.Code != tc.code {
					t.Fatalf("got %v, want %s", err, tc.code)
				}
				return
			}
			if tc.code != "" {
				// endpoints_only: the endpoint cannot move while node 1 hosts
				// the only master.
				var pe *fsm.Error
				if !errors.As(err, &pe) || pe.Code != tc.code {
					t.Fatalf("got %v %v, want %s", kinds(steps), err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := kinds(steps)
			if len(got) != len(tc.want) {
				t.Fatalf("steps %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("steps %v, want %v", got, tc.want)
				}
			}
			if tc.check != nil {
				tc.check(t, steps)
			}
		})
	}
}

func TestPlanAction_EnslaveMasterWithoutReplicaNamesIt(t *testing.T) {
	st := modelState(2, [][2]int{{1, 2}}, fsm.PersistenceDisabled)
	delete(st.Shards, "2")
	_, err := PlanAction(st, action(fsm.ActionEnslaveNode, 1, `{}`), time.Now())
	var pe *fsm.Error
	if !errors.As(err, &pe) || pe.Code != "insufficient_resources" || pe.Description == "" {
		t.Fatalf("got %v", err)
	}
}

func TestLiveMajorityWithout(t *testing.T) {
	tests := []struct {
		name    string
		nodes   int
		down    []int
		leaving int
		ok      bool
	}{
		{"three up, one leaves", 3, nil, 3, true},
		{"one of the two left is down", 3, []int{2}, 3, false},
		{"the leaving node is the one down", 3, []int{3}, 3, true},
		{"four nodes, one of three left down", 4, []int{2}, 4, true},
		{"four nodes, two of three left down", 4, []int{1, 2}, 4, false},
		{"the last node", 1, nil, 1, false},
		// Left-over node-table entries that are not voters do not count.
		{"two voters up, stale entries", 2, nil, 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := modelState(tc.nodes, [][2]int{{1, 1}}, fsm.PersistenceDisabled)
			for _, d := range tc.down {
				st.Nodes[d].Status = fsm.NodeDown
			}
			var voters []int
			for uid := 1; uid <= tc.nodes; uid++ {
				voters = append(voters, uid)
			}
			err := LiveMajorityWithout(st, voters, tc.leaving)
			if (err == nil) != tc.ok {
				t.Fatalf("LiveMajorityWithout = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// maintenance_on with evict_dbs keeps the other databases on the node, so
// an endpoint whose only master stays there stays too; without evict_dbs
// that master moves and its endpoint follows it.
func TestPlanAction_MaintenanceWithEvictDBsKeepsOtherDatabasesEndpoints(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := modelState(3, [][2]int{{1, 2}}, fsm.PersistenceDisabled)
	// Database 2: one master without a replica, on node 1, with its endpoint.
	st.BDBs[2] = &fsm.BDB{UID: 2, Name: "solo", MemorySize: 1 << 30, ShardsCount: 1, DataPersistence: fsm.PersistenceDisabled,
		Endpoints: []fsm.Endpoint{{UID: "2:1", NodeUID: 1, Port: 12002}}}
	st.Shards["9"] = &fsm.Shard{UID: "9", BDBUID: 2, NodeUID: 1, Role: fsm.RoleMaster, Memory: 1 << 30, AssignedSlots: "0-16383"}

	steps, err := PlanAction(st, action(fsm.ActionMaintenanceOn, 1, `{"evict_dbs":["1"]}`), now)
	if err != nil {
		t.Fatalf("evict_dbs [1]: %v", err)
	}
	for _, s := range steps {
		if s.BDB == 2 || s.Shard == "9" || s.Kind == fsm.StepFail {
			t.Fatalf("evict_dbs [1] touches database 2 or fails: %+v in %v", s, kinds(steps))
		}
	}
	if !slices.Contains(kinds(steps), fsm.StepRebind) {
		t.Fatalf("database 1's endpoint is not rebound: %v", kinds(steps))
	}

	steps, err = PlanAction(st, action(fsm.ActionMaintenanceOn, 1, `{}`), now)
	if err != nil {
		t.Fatalf("all databases: %v", err)
	}
	var movedSolo, reboundSolo bool
	for _, s := range steps {
		movedSolo = movedSolo || (s.Kind == fsm.StepMove && s.Shard == "9")
		reboundSolo = reboundSolo || (s.Kind == fsm.StepRebind && s.BDB == 2)
	}
	if !movedSolo || !reboundSolo {
		t.Fatalf("without evict_dbs database 2 should move with its endpoint: %v", kinds(steps))
	}
}
