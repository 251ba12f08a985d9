package fsm_test

import (
	"encoding/json"
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
