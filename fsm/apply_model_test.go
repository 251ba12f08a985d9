package fsm_test

import (
	"testing"

	"cnm/fsm"
)

func TestDefaultPolicy_IsDenseWithEverythingElseOff(t *testing.T) {
	want := fsm.Policy{DefaultShardsPlacement: "dense"}
	if got := fsm.DefaultPolicy(); got != want {
		t.Errorf("DefaultPolicy() = %+v, want %+v", got, want)
	}
	if got := fsm.NewState().Policy; got != want {
		t.Errorf("NewState().Policy = %+v, want %+v", got, want)
	}
	f := fsm.New()
	mustApply(t, f, idx(1), bootstrapCmd())
	if s, _ := readState(t, f); s.Policy != want {
		t.Errorf("policy of a new cluster = %+v, want %+v", s.Policy, want)
	}
}

func TestApply_UpdatePolicy(t *testing.T) {
	boot := []any{bootstrapCmd()}
	// policyCase sets the policy to want by cmd, starting from setup.
	policyCase := func(name string, setup []any, cmd *fsm.UpdatePolicy, want fsm.Policy) applyCase {
		if cmd.Actor == (fsm.Actor{}) {
			cmd.Actor = adminActor
		}
		return applyCase{
			name:      name,
			setup:     setup,
			cmd:       cmd,
			want:      func(s *fsm.State, _ uint64) { s.Policy = want },
			wantValue: func(uint64) any { return want },
		}
	}
	allOn := fsm.Policy{PersistentNodeRemoval: true, DefaultShardsPlacement: fsm.PlacementSparse, RackAware: true, ShardsOverbooking: true}
	withAllOn := with(boot, &fsm.UpdatePolicy{Actor: adminActor, PersistentNodeRemoval: ptr(true),
		DefaultShardsPlacement: ptr(fsm.PlacementSparse), RackAware: ptr(true), ShardsOverbooking: ptr(true)})

	runApplyCases(t, []applyCase{
		policyCase("sets persistent_node_removal alone", boot,
			&fsm.UpdatePolicy{PersistentNodeRemoval: ptr(true)},
			fsm.Policy{PersistentNodeRemoval: true, DefaultShardsPlacement: fsm.PlacementDense}),
		policyCase("sets default_shards_placement alone", boot,
			&fsm.UpdatePolicy{DefaultShardsPlacement: ptr(fsm.PlacementSparse)},
			fsm.Policy{DefaultShardsPlacement: fsm.PlacementSparse}),
		policyCase("sets rack_aware alone", boot,
			&fsm.UpdatePolicy{RackAware: ptr(true)},
			fsm.Policy{DefaultShardsPlacement: fsm.PlacementDense, RackAware: true}),
		policyCase("sets shards_overbooking alone", boot,
			&fsm.UpdatePolicy{ShardsOverbooking: ptr(true)},
			fsm.Policy{DefaultShardsPlacement: fsm.PlacementDense, ShardsOverbooking: true}),
		policyCase("sets every field at once", boot,
			&fsm.UpdatePolicy{PersistentNodeRemoval: ptr(true), DefaultShardsPlacement: ptr(fsm.PlacementSparse),
				RackAware: ptr(true), ShardsOverbooking: ptr(true)},
			allOn),
		policyCase("clears persistent_node_removal alone", withAllOn,
			&fsm.UpdatePolicy{PersistentNodeRemoval: ptr(false)},
			fsm.Policy{DefaultShardsPlacement: fsm.PlacementSparse, RackAware: true, ShardsOverbooking: true}),
		policyCase("sets dense again alone", withAllOn,
			&fsm.UpdatePolicy{DefaultShardsPlacement: ptr(fsm.PlacementDense)},
			fsm.Policy{PersistentNodeRemoval: true, DefaultShardsPlacement: fsm.PlacementDense, RackAware: true, ShardsOverbooking: true}),
		policyCase("clears rack_aware alone", withAllOn,
			&fsm.UpdatePolicy{RackAware: ptr(false)},
			fsm.Policy{PersistentNodeRemoval: true, DefaultShardsPlacement: fsm.PlacementSparse, ShardsOverbooking: true}),
		policyCase("clears shards_overbooking alone", withAllOn,
			&fsm.UpdatePolicy{ShardsOverbooking: ptr(false)},
			fsm.Policy{PersistentNodeRemoval: true, DefaultShardsPlacement: fsm.PlacementSparse, RackAware: true}),
		policyCase("without fields changes nothing and answers the policy", withAllOn,
			&fsm.UpdatePolicy{}, allOn),
		policyCase("on behalf of the cluster", boot,
			&fsm.UpdatePolicy{Actor: fsm.Actor{}, RackAware: ptr(true)},
			fsm.Policy{DefaultShardsPlacement: fsm.PlacementDense, RackAware: true}),
		{
			name:    "unknown default_shards_placement is invalid_parameter",
			setup:   boot,
			cmd:     &fsm.UpdatePolicy{Actor: adminActor, DefaultShardsPlacement: ptr("random")},
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:    "empty default_shards_placement is invalid_parameter",
			setup:   boot,
			cmd:     &fsm.UpdatePolicy{Actor: adminActor, DefaultShardsPlacement: ptr("")},
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:    "default_shards_placement in capitals is invalid_parameter",
			setup:   boot,
			cmd:     &fsm.UpdatePolicy{Actor: adminActor, DefaultShardsPlacement: ptr("Sparse")},
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:  "other fields do not land when default_shards_placement is rejected",
			setup: boot,
			cmd: &fsm.UpdatePolicy{Actor: adminActor, PersistentNodeRemoval: ptr(true), RackAware: ptr(true),
				ShardsOverbooking: ptr(true), DefaultShardsPlacement: ptr("spread")},
			wantErr: fsm.ErrInvalidParameter,
		},
	})
}

func TestApply_UpdateNode(t *testing.T) {
	// nodeCase changes node 2, which is start after setup and prepare, by
	// cmd and expects start changed by edit.
	nodeCase := func(name string, setup []any, prepare func(*fsm.State), start fsm.Node, cmd *fsm.UpdateNode, edit func(n *fsm.Node)) applyCase {
		cmd.Actor = adminActor
		cmd.UID = 2
		after := start
		edit(&after)
		return applyCase{
			name:  name,
			setup: setup,
			edit:  prepare,
			cmd:   cmd,
			// The value pins start: edit of any other node 2 answers
			// something else.
			want:      func(s *fsm.State, _ uint64) { edit(s.Nodes[2]) },
			wantValue: func(uint64) any { return after },
		}
	}
	nodes := threeNodes()
	refusing := with(nodes, &fsm.UpdateNode{Actor: adminActor, UID: 2, AcceptServers: ptr(false)})
	removing := func(s *fsm.State) {
		s.Nodes[2].Removing = true
		s.Nodes[2].AcceptServers = false
	}
	inMaintenance := func(s *fsm.State) { s.Nodes[2].Maintenance = true }
	plain := node(2)
	notAccepting := nodeWith(2, func(n *fsm.Node) { n.AcceptServers = false })
	beingRemoved := nodeWith(2, func(n *fsm.Node) { n.AcceptServers, n.Removing = false, true })
	maintained := nodeWith(2, func(n *fsm.Node) { n.AcceptServers, n.Maintenance = false, true })

	runApplyCases(t, []applyCase{
		nodeCase("sets accept_servers false", nodes, nil, plain,
			&fsm.UpdateNode{AcceptServers: ptr(false)},
			func(n *fsm.Node) { n.AcceptServers = false }),
		nodeCase("sets accept_servers true again", refusing, nil, notAccepting,
			&fsm.UpdateNode{AcceptServers: ptr(true)},
			func(n *fsm.Node) { n.AcceptServers = true }),
		nodeCase("sets max_redis_servers", nodes, nil, plain,
			&fsm.UpdateNode{MaxRedisServers: ptr(7)},
			func(n *fsm.Node) { n.MaxRedisServers = 7 }),
		nodeCase("sets max_redis_servers to 0", nodes, nil, plain,
			&fsm.UpdateNode{MaxRedisServers: ptr(0)},
			func(n *fsm.Node) { n.MaxRedisServers = 0 }),
		nodeCase("sets max_redis_servers below the shards the node hosts",
			with(nodes, createBDB(newBDB("cache", 2*gib, 2, false), 2, 2, 2)), nil, plain,
			&fsm.UpdateNode{MaxRedisServers: ptr(1)},
			func(n *fsm.Node) { n.MaxRedisServers = 1 }),
		nodeCase("sets rack_id", nodes, nil, plain,
			&fsm.UpdateNode{RackID: ptr("rack-9")},
			func(n *fsm.Node) { n.RackID = "rack-9" }),
		nodeCase("clears rack_id", nodes, nil, plain,
			&fsm.UpdateNode{RackID: ptr("")},
			func(n *fsm.Node) { n.RackID = "" }),
		nodeCase("sets every field at once", nodes, nil, plain,
			&fsm.UpdateNode{AcceptServers: ptr(false), MaxRedisServers: ptr(3), RackID: ptr("r")},
			func(n *fsm.Node) {
				n.AcceptServers = false
				n.MaxRedisServers = 3
				n.RackID = "r"
			}),
		nodeCase("without fields changes nothing and answers the node", nodes, nil, plain,
			&fsm.UpdateNode{},
			func(*fsm.Node) {}),
		nodeCase("keeps accept_servers false on a node being removed", nodes, removing, beingRemoved,
			&fsm.UpdateNode{AcceptServers: ptr(false), MaxRedisServers: ptr(5)},
			func(n *fsm.Node) { n.MaxRedisServers = 5 }),
		nodeCase("changes a node being removed", nodes, removing, beingRemoved,
			&fsm.UpdateNode{RackID: ptr("rack-7")},
			func(n *fsm.Node) { n.RackID = "rack-7" }),
		nodeCase("sets accept_servers on a node in maintenance and keeps it in maintenance", refusing, inMaintenance, maintained,
			&fsm.UpdateNode{AcceptServers: ptr(true)},
			func(n *fsm.Node) { n.AcceptServers = true }),
		{
			name:    "negative max_redis_servers is invalid_parameter",
			setup:   nodes,
			cmd:     &fsm.UpdateNode{Actor: adminActor, UID: 2, MaxRedisServers: ptr(-1)},
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:    "other fields do not land when max_redis_servers is rejected",
			setup:   nodes,
			cmd:     &fsm.UpdateNode{Actor: adminActor, UID: 2, AcceptServers: ptr(false), RackID: ptr("x"), MaxRedisServers: ptr(-5)},
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:    "accept_servers true on a node being removed is invalid_parameter",
			setup:   nodes,
			edit:    removing,
			cmd:     &fsm.UpdateNode{Actor: adminActor, UID: 2, AcceptServers: ptr(true)},
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:    "other fields do not land when accept_servers is rejected",
			setup:   nodes,
			edit:    removing,
			cmd:     &fsm.UpdateNode{Actor: adminActor, UID: 2, AcceptServers: ptr(true), MaxRedisServers: ptr(1), RackID: ptr("x")},
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:    "unknown node is node_not_found",
			setup:   nodes,
			cmd:     &fsm.UpdateNode{Actor: adminActor, UID: 4, AcceptServers: ptr(false)},
			wantErr: fsm.ErrNodeNotFound,
		},
		{
			name:    "node 0 is node_not_found",
			setup:   nodes,
			cmd:     &fsm.UpdateNode{Actor: adminActor, RackID: ptr("x")},
			wantErr: fsm.ErrNodeNotFound,
		},
	})
}

// snapshotsOf2 gives node 2 an older and a latest snapshot, and node 3 one.
func snapshotsOf2(s *fsm.State) {
	s.Snapshots[2] = []*fsm.NodeSnapshot{olderSnapshot(), latestSnapshot()}
	s.Snapshots[3] = []*fsm.NodeSnapshot{{
		Name: "maintenance_mode_2025-03-01_00-00-00", Time: 1740787200,
		Shards: []fsm.SnapshotShard{}, Endpoints: []string{},
	}}
}

func olderSnapshot() *fsm.NodeSnapshot {
	return &fsm.NodeSnapshot{
		Name: "maintenance_mode_2025-01-01_10-00-00", Time: 1735725600,
		Shards:    []fsm.SnapshotShard{{UID: "1", BDBUID: 1, Role: fsm.RoleMaster}},
		Endpoints: []string{"1:1"},
	}
}

func latestSnapshot() *fsm.NodeSnapshot {
	return &fsm.NodeSnapshot{
		Name: "maintenance_mode_2025-02-01_10-00-00", Time: 1738404000,
		Shards: []fsm.SnapshotShard{
			{UID: "1", BDBUID: 1, Role: fsm.RoleSlave},
			{UID: "4", BDBUID: 1, Role: fsm.RoleMaster},
		},
		Endpoints: []string{},
	}
}

func TestApply_DeleteSnapshot(t *testing.T) {
	nodes := threeNodes()
	maintenance := func(s *fsm.State) {
		snapshotsOf2(s)
		s.Nodes[2].Maintenance = true
	}
	del := func(node int, name string) *fsm.DeleteSnapshot {
		return &fsm.DeleteSnapshot{Actor: adminActor, Node: node, Name: name}
	}
	older, latest := olderSnapshot().Name, latestSnapshot().Name

	runApplyCases(t, []applyCase{
		{
			name:  "deletes an older snapshot",
			setup: nodes,
			edit:  snapshotsOf2,
			cmd:   del(2, older),
			want: func(s *fsm.State, _ uint64) {
				s.Snapshots[2] = []*fsm.NodeSnapshot{latestSnapshot()}
			},
		},
		{
			name:  "deletes an older snapshot of a node in maintenance",
			setup: nodes,
			edit:  maintenance,
			cmd:   del(2, older),
			want: func(s *fsm.State, _ uint64) {
				s.Snapshots[2] = []*fsm.NodeSnapshot{latestSnapshot()}
			},
		},
		{
			name:  "deletes the latest snapshot of a node not in maintenance",
			setup: nodes,
			edit:  snapshotsOf2,
			cmd:   del(2, latest),
			want: func(s *fsm.State, _ uint64) {
				s.Snapshots[2] = []*fsm.NodeSnapshot{olderSnapshot()}
			},
		},
		{
			name:  "deleting the only snapshot of a node forgets the node's list",
			setup: nodes,
			edit:  snapshotsOf2,
			cmd:   del(3, "maintenance_mode_2025-03-01_00-00-00"),
			want:  func(s *fsm.State, _ uint64) { delete(s.Snapshots, 3) },
		},
		{
			name:  "deleting the older and then the latest forgets the node's list",
			setup: nodes,
			edit: func(s *fsm.State) {
				snapshotsOf2(s)
				s.Snapshots[2] = s.Snapshots[2][1:]
			},
			cmd:  del(2, latest),
			want: func(s *fsm.State, _ uint64) { delete(s.Snapshots, 2) },
		},
		{
			name:    "the latest snapshot of a node in maintenance is snapshot_in_use",
			setup:   nodes,
			edit:    maintenance,
			cmd:     del(2, latest),
			wantErr: fsm.ErrSnapshotInUse,
		},
		{
			name:    "the latest snapshot of a node in maintenance is snapshot_in_use on behalf of the cluster",
			setup:   nodes,
			edit:    maintenance,
			cmd:     &fsm.DeleteSnapshot{Node: 2, Name: latest},
			wantErr: fsm.ErrSnapshotInUse,
		},
		{
			name:    "unknown name is snapshot_not_found",
			setup:   nodes,
			edit:    snapshotsOf2,
			cmd:     del(2, "maintenance_mode_2024-12-31_23-59-59"),
			wantErr: fsm.ErrSnapshotNotFound,
		},
		{
			name:    "empty name is snapshot_not_found",
			setup:   nodes,
			edit:    snapshotsOf2,
			cmd:     del(2, ""),
			wantErr: fsm.ErrSnapshotNotFound,
		},
		{
			name:    "name of another node's snapshot is snapshot_not_found",
			setup:   nodes,
			edit:    snapshotsOf2,
			cmd:     del(1, older),
			wantErr: fsm.ErrSnapshotNotFound,
		},
		{
			name:    "node without snapshots is snapshot_not_found",
			setup:   nodes,
			cmd:     del(2, older),
			wantErr: fsm.ErrSnapshotNotFound,
		},
		{
			name:    "unknown node is node_not_found",
			setup:   nodes,
			edit:    snapshotsOf2,
			cmd:     del(4, older),
			wantErr: fsm.ErrNodeNotFound,
		},
	})
}

// TestApply_ModelCommandsCheckTheActor: the commands on databases, policy,
// nodes and snapshots are refused for an actor whose credentials changed,
// before anything about the target is looked at.
func TestApply_ModelCommandsCheckTheActor(t *testing.T) {
	setup := with(threeNodes(),
		createBDB(newBDB("cache", gib, 1, false), 1, 1),
		&fsm.UpdateUser{Actor: adminActor, UID: 1, Name: ptr("Renamed")},
	)
	stale := adminActor
	var cases []applyCase
	for _, c := range []struct {
		name string
		cmd  any
	}{
		{"create bdb", &fsm.CreateBDB{Actor: stale, BDB: newBDB("new", gib, 1, false), Placement: []int{2}, EndpointNode: 2}},
		{"create bdb with a taken name", &fsm.CreateBDB{Actor: stale, BDB: newBDB("cache", gib, 1, false), Placement: []int{2}, EndpointNode: 2}},
		{"delete bdb", &fsm.DeleteBDB{Actor: stale, UID: 1}},
		{"delete unknown bdb", &fsm.DeleteBDB{Actor: stale, UID: 9}},
		{"update policy", &fsm.UpdatePolicy{Actor: stale, RackAware: ptr(true)}},
		{"update node", &fsm.UpdateNode{Actor: stale, UID: 2, AcceptServers: ptr(false)}},
		{"update unknown node", &fsm.UpdateNode{Actor: stale, UID: 9, AcceptServers: ptr(false)}},
		{"delete snapshot", &fsm.DeleteSnapshot{Actor: stale, Node: 2, Name: olderSnapshot().Name}},
	} {
		cases = append(cases, applyCase{
			name:    c.name + " by a stale actor is unauthorized",
			setup:   setup,
			edit:    snapshotsOf2,
			cmd:     c.cmd,
			wantErr: fsm.ErrUnauthorized,
		})
	}
	runApplyCases(t, cases)
}

func TestApply_ModelCommandsRefusedBeforeBootstrap(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "create bdb", cmd: createBDB(newBDB("cache", gib, 1, false), 1, 1), wantErr: fsm.ErrNotBootstrapped},
		{name: "delete bdb", cmd: &fsm.DeleteBDB{UID: 1}, wantErr: fsm.ErrNotBootstrapped},
		{name: "update policy", cmd: &fsm.UpdatePolicy{RackAware: ptr(true)}, wantErr: fsm.ErrNotBootstrapped},
		{name: "update node", cmd: &fsm.UpdateNode{UID: 1, MaxRedisServers: ptr(1)}, wantErr: fsm.ErrNotBootstrapped},
		{name: "delete snapshot", cmd: &fsm.DeleteSnapshot{Node: 1, Name: "s"}, wantErr: fsm.ErrNotBootstrapped},
	})
}
