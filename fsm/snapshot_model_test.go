package fsm_test

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"cnm/fsm"
)

// populatedModel returns an FSM with databases (one deleted), shards, a
// non-default policy, changed nodes, node snapshots and a node in
// maintenance, at index 90.
func populatedModel(t *testing.T) *fsm.FSM {
	t.Helper()
	f := fsm.New()
	for i, p := range with(threeNodes(),
		createBDB(newBDB("orders", 4*gib, 2, true), 1, 1, 2, 3, 1),
		createBDB(newBDB("gone", gib, 1, false), 3, 3),
		createBDB(newBDB("cache", gib, 2, false), 2, 2, 3),
		&fsm.DeleteBDB{Actor: adminActor, UID: 2},
		&fsm.UpdatePolicy{Actor: adminActor, DefaultShardsPlacement: ptr(fsm.PlacementSparse), ShardsOverbooking: ptr(true)},
		&fsm.UpdateNode{Actor: adminActor, UID: 3, MaxRedisServers: ptr(9), RackID: ptr("rack-x")},
	) {
		mustApply(t, f, idx(i+1), p)
	}
	return restoredWith(t, f, func(s *fsm.State) {
		snapshotsOf2(s)
		s.Nodes[2].Maintenance = true
	})
}

func TestSnapshot_RoundTripOfTheClusterModel(t *testing.T) {
	f := populatedModel(t)
	want, wantIndex := readState(t, f)
	if len(want.BDBs) != 2 || len(want.Shards) != 6 || len(want.Snapshots) != 2 ||
		want.Policy == fsm.DefaultPolicy() || !want.Nodes[2].Maintenance {
		t.Fatalf("populatedModel lacks part of the model: %s", mustJSON(t, want))
	}

	g := roundTrip(t, f)

	got, gotIndex := readState(t, g)
	assertState(t, got, want)
	if gotIndex != wantIndex || wantIndex != idx(9) {
		t.Errorf("restored index %d, original %d, want %d", gotIndex, wantIndex, idx(9))
	}

	// Both keep applying the same log to the same answers and state.
	cmds := []any{
		createBDB(newBDB("next", gib, 1, true), 1, 1, 3),
		createBDB(newBDB("orders", gib, 1, false), 1, 1),
		&fsm.DeleteSnapshot{Actor: adminActor, Node: 2, Name: latestSnapshot().Name},
		&fsm.DeleteSnapshot{Actor: adminActor, Node: 2, Name: olderSnapshot().Name},
		&fsm.DeleteSnapshot{Actor: adminActor, Node: 3, Name: "maintenance_mode_2025-03-01_00-00-00"},
		&fsm.UpdatePolicy{Actor: adminActor, RackAware: ptr(true)},
		createBDB(newBDB("racked", gib, 1, true), 1, 1, 3),
		&fsm.DeleteBDB{Actor: adminActor, UID: 1},
		&fsm.UpdateNode{Actor: adminActor, UID: 1, AcceptServers: ptr(false)},
		createBDB(newBDB("refused", gib, 1, false), 1, 1),
	}
	for i, c := range cmds {
		index := idx(10 + i)
		rf := apply(t, f, index, c)
		rg := apply(t, g, index, c)
		if a, b := mustJSON(t, rf), mustJSON(t, rg); !bytes.Equal(a, b) {
			t.Errorf("command %d (%T): original answered %s, restored %s", i, c, a, b)
		}
	}
	sf, _ := readState(t, f)
	sg, _ := readState(t, g)
	assertState(t, sg, sf)
	if b := sf.BDBs[4]; b == nil || b.Name != "next" || sf.ShardsOf(4)[0].UID != "8" {
		t.Errorf("a database created after the restore did not continue the uids: %s", mustJSON(t, sf.BDBs))
	}
}

// oldSnapshot is a snapshot document as written before databases, shards,
// node snapshots and the policy existed.
const oldSnapshot = `{"version":1,"applied":42,"state":{
"cluster":{"name":"old","created_at":1700000000,"ca_cert_pem":"cert","ca_key_pem":"key"},
"nodes":{"1":{"uid":1,"addr":"10.0.0.1","api_addr":"10.0.0.1:9443","raft_addr":"10.0.0.1:7000",
  "status":"active","accept_servers":true,"max_redis_servers":100,"total_memory":68719476736,
  "rack_id":"rack-1","software_version":"7.4.2","joined_at":1700000001}},
"users":{"1":{"uid":1,"email":"admin@example.com","name":"Admin","role":"admin",
  "password_hash":"$2a$10$h","revision":3}},
"next_user_uid":2}}
`

func TestRestore_OldSnapshotGetsAnEmptyClusterModel(t *testing.T) {
	f := fsm.New()
	if err := f.Restore(io.NopCloser(strings.NewReader(oldSnapshot))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	got, index := readState(t, f)
	want := &fsm.State{
		Cluster: fsm.ClusterInfo{Name: "old", CreatedAt: 1700000000, CACertPEM: "cert", CAKeyPEM: "key"},
		Nodes:   map[int]*fsm.Node{1: ptr(node(1))},
		Users: map[int]*fsm.User{1: {UID: 1, Email: "admin@example.com", Name: "Admin", Role: fsm.RoleAdmin,
			PasswordHash: "$2a$10$h", Revision: 3}},
		NextUserUID:  2,
		Policy:       fsm.Policy{DefaultShardsPlacement: fsm.PlacementDense},
		BDBs:         map[int]*fsm.BDB{},
		NextBDBUID:   1,
		Shards:       map[string]*fsm.Shard{},
		NextShardUID: 1,
		Snapshots:    map[int][]*fsm.NodeSnapshot{},
	}
	assertState(t, got, want)
	if index != 42 {
		t.Errorf("restored index %d, want 42", index)
	}

	// The restored state takes the new commands as a new cluster would.
	admin := fsm.Actor{UID: 1, Revision: 3}
	res := mustApply(t, f, 43, &fsm.CreateBDB{Actor: admin, BDB: newBDB("cache", gib, 1, false), Placement: []int{1}, EndpointNode: 1})
	checkValue(t, res.Value, func(uint64) any { return storedBDB(newBDB("cache", gib, 1, false), 1, 1) }, 43)
	mustApply(t, f, 44, &fsm.UpdatePolicy{Actor: admin, RackAware: ptr(true)})
	mustApply(t, f, 45, &fsm.UpdateNode{Actor: admin, UID: 1, MaxRedisServers: ptr(5)})
	if res := apply(t, f, 46, &fsm.DeleteSnapshot{Actor: admin, Node: 1, Name: "s"}); res.Err == nil || res.Err.Code != fsm.ErrSnapshotNotFound.Code {
		t.Errorf("DeleteSnapshot after Restore: %v, want snapshot_not_found", res.Err)
	}
	mustApply(t, f, 47, &fsm.DeleteBDB{Actor: admin, UID: 1})

	want.BDBs, want.NextBDBUID, want.NextShardUID = map[int]*fsm.BDB{}, 2, 2
	want.Policy.RackAware = true
	want.Nodes[1].MaxRedisServers = 5
	got, _ = readState(t, f)
	assertState(t, got, want)
}
