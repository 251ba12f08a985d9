package fsm_test

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strconv"
	"testing"

	"github.com/hashicorp/raft"

	"cnm/fsm"
)

// entry encodes payload into a command log entry at index.
func entry(t *testing.T, index uint64, payload any) *raft.Log {
	t.Helper()
	data, err := fsm.Encode(payload)
	if err != nil {
		t.Fatalf("encode %T: %v", payload, err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

// apply applies payload at index and returns the Result.
func apply(t *testing.T, f *fsm.FSM, index uint64, payload any) *fsm.Result {
	t.Helper()
	out := f.Apply(entry(t, index, payload))
	res, ok := out.(*fsm.Result)
	if !ok {
		t.Fatalf("Apply(%T) returned %T, want *fsm.Result", payload, out)
	}
	if res.Index != index {
		t.Fatalf("Apply(%T) at %d: Result.Index = %d", payload, index, res.Index)
	}
	return res
}

// mustApply applies payload at index and fails the test if Apply rejects it.
func mustApply(t *testing.T, f *fsm.FSM, index uint64, payload any) *fsm.Result {
	t.Helper()
	res := apply(t, f, index, payload)
	if res.Err != nil {
		t.Fatalf("Apply(%T) at %d: %v", payload, index, res.Err)
	}
	return res
}

// readState returns a copy of the FSM's state and the index it reflects.
func readState(t *testing.T, f *fsm.FSM) (*fsm.State, uint64) {
	t.Helper()
	var (
		s   *fsm.State
		idx uint64
	)
	f.Read(func(st *fsm.State, index uint64) {
		s = st.Clone()
		idx = index
	})
	return s, idx
}

// assertState fails the test unless got and want are equal, printing both as
// JSON.
func assertState(t *testing.T, got, want *fsm.State) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("state differs\n got: %s\nwant: %s", mustJSON(t, got), mustJSON(t, want))
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	return b
}

// Fixtures. Entries in the tests land at indexes 10, 20, 30, ... so that a
// revision (the index of a user's last change) never equals a count or a uid
// by accident.

const bootIndex = 10

func idx(n int) uint64 { return uint64(10 * n) }

// adminActor is the bootstrap admin as long as nothing changed it.
var adminActor = fsm.Actor{UID: 1, Revision: bootIndex}

func ptr[T any](v T) *T { return &v }

func bootstrapCmd() *fsm.Bootstrap {
	return &fsm.Bootstrap{
		Cluster: fsm.ClusterInfo{
			Name:      "prod-eu",
			CreatedAt: 1700000000,
			CACertPEM: "-----BEGIN CERTIFICATE-----\nY2E=\n-----END CERTIFICATE-----\n",
			CAKeyPEM:  "-----BEGIN EC PRIVATE KEY-----\na2V5\n-----END EC PRIVATE KEY-----\n",
		},
		Node: node(1),
		Admin: fsm.User{
			Email:        "admin@example.com",
			Name:         "First Admin",
			PasswordHash: "$2a$10$adminadminadminadminadminadminadminadminadminadmin",
		},
	}
}

// node returns a node whose addresses are derived from its uid.
func node(uid int) fsm.Node {
	host := "10.0.0." + strconv.Itoa(uid)
	return fsm.Node{
		UID:             uid,
		Addr:            host,
		APIAddr:         host + ":9443",
		RaftAddr:        host + ":7000",
		Status:          fsm.NodeActive,
		AcceptServers:   true,
		MaxRedisServers: 100,
		TotalMemory:     64 << 30,
		RackID:          "rack-" + strconv.Itoa(uid),
		SoftwareVersion: "7.4.2",
		JoinedAt:        1700000000 + int64(uid),
	}
}

// user returns a user payload for CreateUser named after key.
func user(key, role string) fsm.User {
	return fsm.User{
		Email:        key + "@example.com",
		Name:         "User " + key,
		Role:         role,
		PasswordHash: "$2a$10$" + key,
	}
}

func createUser(actor fsm.Actor, key, role string) *fsm.CreateUser {
	return &fsm.CreateUser{Actor: actor, User: user(key, role)}
}

// Model fixtures: nodes of 64 GiB for 100 shards on racks rack-1, rack-2,
// ..., databases created by the admin.

const gib = int64(1) << 30

func addNode(n fsm.Node) *fsm.AddNode { return &fsm.AddNode{Actor: adminActor, Node: n} }

// nodeWith returns node(uid) changed by edit.
func nodeWith(uid int, edit func(n *fsm.Node)) fsm.Node {
	n := node(uid)
	edit(&n)
	return n
}

// threeNodes is the log of a cluster of nodes 1, 2 and 3.
func threeNodes() []any {
	return []any{bootstrapCmd(), addNode(node(2)), addNode(node(3))}
}

// with returns a copy of log with more entries at the end.
func with(log []any, more ...any) []any {
	return append(append([]any(nil), log...), more...)
}

// newBDB is a database as a CreateBDB payload carries it.
func newBDB(name string, memory int64, shards int, replication bool) fsm.BDB {
	return fsm.BDB{
		Name:            name,
		MemorySize:      memory,
		ShardsCount:     shards,
		Replication:     replication,
		DataPersistence: fsm.PersistenceAOF,
		CreatedAt:       1700000500,
	}
}

func createBDB(b fsm.BDB, endpoint int, placement ...int) *fsm.CreateBDB {
	return &fsm.CreateBDB{Actor: adminActor, BDB: b, Placement: placement, EndpointNode: endpoint}
}

// storedBDB is b as CreateBDB stores it under uid, with its endpoint on node
// endpoint.
func storedBDB(b fsm.BDB, uid, endpoint int) fsm.BDB {
	b.UID = uid
	b.Status = "active"
	b.Endpoints = []fsm.Endpoint{{UID: strconv.Itoa(uid) + ":1", NodeUID: endpoint, Port: fsm.EndpointPort(uid)}}
	return b
}

// shard is a shard as CreateBDB stores it.
func shard(uid string, bdb, node int, role string, memory int64, slots string) *fsm.Shard {
	return &fsm.Shard{UID: uid, BDBUID: bdb, NodeUID: node, Role: role, Status: "active", Memory: memory, AssignedSlots: slots}
}

// putBDB puts a database and its shards into s; the uid counters are left
// to the caller.
func putBDB(s *fsm.State, b fsm.BDB, shards ...*fsm.Shard) {
	s.BDBs[b.UID] = &b
	for _, sh := range shards {
		s.Shards[sh.UID] = sh
	}
}

// restoredWith returns a new FSM holding f's state changed by edit, put
// there the way raft does it: Snapshot and Persist of f, Restore into the new
// FSM. It is how tests reach states no command makes on its own (nodes in
// maintenance, node snapshots).
func restoredWith(t *testing.T, f *fsm.FSM, edit func(s *fsm.State)) *fsm.FSM {
	t.Helper()
	var doc struct {
		Version int        `json:"version"`
		Applied uint64     `json:"applied"`
		State   *fsm.State `json:"state"`
	}
	if err := json.Unmarshal(persist(t, f), &doc); err != nil {
		t.Fatalf("decode persisted snapshot: %v", err)
	}
	edit(doc.State)
	g := fsm.New()
	if err := g.Restore(io.NopCloser(bytes.NewReader(mustJSON(t, doc)))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	return g
}
