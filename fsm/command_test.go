package fsm_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"

	"cnm/fsm"
)

// The type numbers live in raft logs forever.
func TestCommandType_NumbersNeverChange(t *testing.T) {
	cases := []struct {
		typ     fsm.CommandType
		number  byte
		name    string
		payload any
	}{
		{fsm.CmdBootstrap, 1, "bootstrap", &fsm.Bootstrap{}},
		{fsm.CmdAddNode, 2, "add_node", &fsm.AddNode{}},
		{fsm.CmdCreateUser, 3, "create_user", &fsm.CreateUser{}},
		{fsm.CmdUpdateUser, 4, "update_user", &fsm.UpdateUser{}},
		{fsm.CmdDeleteUser, 5, "delete_user", &fsm.DeleteUser{}},
		{fsm.CmdSetNodeStatus, 6, "set_node_status", &fsm.SetNodeStatus{}},
		{fsm.CmdCreateBDB, 7, "create_bdb", &fsm.CreateBDB{}},
		{fsm.CmdDeleteBDB, 8, "delete_bdb", &fsm.DeleteBDB{}},
		{fsm.CmdUpdatePolicy, 9, "update_policy", &fsm.UpdatePolicy{}},
		{fsm.CmdUpdateNode, 10, "update_node", &fsm.UpdateNode{}},
		{fsm.CmdDeleteSnapshot, 11, "delete_snapshot", &fsm.DeleteSnapshot{}},
		{fsm.CmdSetShardStats, 23, "set_shard_stats", &fsm.SetShardStats{}},
		{fsm.CmdBeginStep, 24, "begin_step", &fsm.BeginStep{}},
		{fsm.CmdReleaseStep, 25, "release_step", &fsm.ReleaseStep{}},
	}
	for _, tc := range cases {
		if byte(tc.typ) != tc.number {
			t.Errorf("%s has number %d, want %d", tc.name, byte(tc.typ), tc.number)
		}
		if tc.typ.String() != tc.name {
			t.Errorf("CommandType(%d).String() = %q, want %q", tc.number, tc.typ.String(), tc.name)
		}
		b, err := fsm.Encode(tc.payload)
		if err != nil {
			t.Fatalf("Encode(%T): %v", tc.payload, err)
		}
		if len(b) < 3 || b[0] != tc.number || b[1] != 1 || b[2] != '{' {
			t.Errorf("Encode(%T) = %q, want type byte %d, version byte 1, JSON object", tc.payload, b, tc.number)
		}
	}
	if got := fsm.CommandType(200).String(); got != "command(200)" {
		t.Errorf("CommandType(200).String() = %q", got)
	}
}

func TestEncode_RefusesNonCommands(t *testing.T) {
	for _, p := range []any{nil, fsm.Bootstrap{}, &fsm.User{}, "bootstrap", 1} {
		if b, err := fsm.Encode(p); err == nil {
			t.Errorf("Encode(%#v) = %q, want an error", p, b)
		}
	}
}

func TestDecode_RoundTripsEveryCommand(t *testing.T) {
	cases := []struct {
		typ     fsm.CommandType
		payload any
	}{
		{fsm.CmdBootstrap, bootstrapCmd()},
		{fsm.CmdAddNode, &fsm.AddNode{Actor: adminActor, Node: node(4)}},
		{fsm.CmdCreateUser, createUser(adminActor, "bob", fsm.RoleDBMember)},
		{fsm.CmdUpdateUser, &fsm.UpdateUser{Actor: adminActor, UID: 2, Email: ptr(""), Role: ptr(fsm.RoleNone)}},
		{fsm.CmdUpdateUser, &fsm.UpdateUser{UID: 2, Name: ptr("n"), PasswordHash: ptr("h")}},
		{fsm.CmdDeleteUser, &fsm.DeleteUser{Actor: adminActor, UID: 3}},
		{fsm.CmdSetNodeStatus, &fsm.SetNodeStatus{Actor: adminActor, UID: 3, Status: fsm.NodeDown}},
		{fsm.CmdCreateBDB, createBDB(newBDB("cache", 3*gib, 2, true), 2, 2, 1, 3, 2)},
		{fsm.CmdCreateBDB, &fsm.CreateBDB{BDB: fsm.BDB{UID: 4, Name: "n", CRDT: true, Status: "x",
			Endpoints: []fsm.Endpoint{{UID: "4:1", NodeUID: 1, Port: 12004}}}}},
		{fsm.CmdDeleteBDB, &fsm.DeleteBDB{Actor: adminActor, UID: 3}},
		{fsm.CmdUpdatePolicy, &fsm.UpdatePolicy{Actor: adminActor, PersistentNodeRemoval: ptr(false),
			DefaultShardsPlacement: ptr(fsm.PlacementSparse), RackAware: ptr(true), ShardsOverbooking: ptr(false)}},
		{fsm.CmdUpdatePolicy, &fsm.UpdatePolicy{RackAware: ptr(false)}},
		{fsm.CmdUpdateNode, &fsm.UpdateNode{Actor: adminActor, UID: 2, AcceptServers: ptr(false), MaxRedisServers: ptr(0), RackID: ptr("")}},
		{fsm.CmdUpdateNode, &fsm.UpdateNode{UID: 2}},
		{fsm.CmdDeleteSnapshot, &fsm.DeleteSnapshot{Actor: adminActor, Node: 2, Name: "maintenance_mode_2025-01-01_10-00-00"}},
	}
	for _, tc := range cases {
		b, err := fsm.Encode(tc.payload)
		if err != nil {
			t.Fatalf("Encode(%T): %v", tc.payload, err)
		}
		c, err := fsm.Decode(b)
		if err != nil {
			t.Fatalf("Decode(%q): %v", b, err)
		}
		if c.Type != tc.typ {
			t.Errorf("Decode(%q).Type = %s, want %s", b, c.Type, tc.typ)
		}
		if !reflect.DeepEqual(c.Payload, tc.payload) {
			t.Errorf("Decode(%q).Payload = %#v, want %#v", b, c.Payload, tc.payload)
		}
	}
}

// badEntries are log entries that are not valid commands.
var badEntries = []struct {
	name string
	data []byte
}{
	{"nil", nil},
	{"empty", []byte{}},
	{"one byte", []byte{byte(fsm.CmdBootstrap)}},
	{"version 0", append([]byte{byte(fsm.CmdCreateUser), 0}, `{}`...)},
	{"version 2", append([]byte{byte(fsm.CmdCreateUser), 2}, `{}`...)},
	{"version 255", append([]byte{byte(fsm.CmdDeleteUser), 255}, `{"uid":1}`...)},
	{"type 0", append([]byte{0, 1}, `{}`...)},
	{"type 99", append([]byte{99, 1}, `{}`...)},
	{"type 255", append([]byte{255, 1}, `{}`...)},
	{"unknown type and version", append([]byte{98, 9}, `{}`...)},
	{"no payload", []byte{byte(fsm.CmdBootstrap), 1}},
	{"invalid json", append([]byte{byte(fsm.CmdAddNode), 1}, `{"node":`...)},
	{"trailing data", append([]byte{byte(fsm.CmdDeleteUser), 1}, `{"uid":1} {}`...)},
	{"json array", append([]byte{byte(fsm.CmdDeleteUser), 1}, `[1]`...)},
	{"wrong field type", append([]byte{byte(fsm.CmdDeleteUser), 1}, `{"uid":"one"}`...)},
	{"fractional uid", append([]byte{byte(fsm.CmdDeleteUser), 1}, `{"uid":1.5}`...)},
	{"negative revision", append([]byte{byte(fsm.CmdCreateUser), 1}, `{"actor":{"uid":1,"revision":-1}}`...)},
	{"create bdb version 2", append([]byte{byte(fsm.CmdCreateBDB), 2}, `{}`...)},
	{"placement not a list", append([]byte{byte(fsm.CmdCreateBDB), 1}, `{"placement":1}`...)},
	{"placement of strings", append([]byte{byte(fsm.CmdCreateBDB), 1}, `{"placement":["1"]}`...)},
	{"memory_size as a string", append([]byte{byte(fsm.CmdCreateBDB), 1}, `{"bdb":{"memory_size":"1GB"}}`...)},
	{"memory_size beyond int64", append([]byte{byte(fsm.CmdCreateBDB), 1}, `{"bdb":{"memory_size":9223372036854775808}}`...)},
	{"delete bdb uid as a string", append([]byte{byte(fsm.CmdDeleteBDB), 1}, `{"uid":"1"}`...)},
	{"rack_aware as a string", append([]byte{byte(fsm.CmdUpdatePolicy), 1}, `{"rack_aware":"yes"}`...)},
	{"max_redis_servers fractional", append([]byte{byte(fsm.CmdUpdateNode), 1}, `{"uid":2,"max_redis_servers":1.5}`...)},
	{"snapshot name as a number", append([]byte{byte(fsm.CmdDeleteSnapshot), 1}, `{"node":2,"name":7}`...)},
	{"delete snapshot truncated", append([]byte{byte(fsm.CmdDeleteSnapshot), 1}, `{"node":2,"name":"m`...)},
}

func TestDecode_RejectsBadEntries(t *testing.T) {
	for _, tc := range badEntries {
		t.Run(tc.name, func(t *testing.T) {
			c, err := fsm.Decode(tc.data)
			if err == nil {
				t.Fatalf("Decode(%q) = %+v, want an error", tc.data, c)
			}
			if !errors.Is(err, fsm.ErrDecode) {
				t.Errorf("Decode(%q) error %v is not ErrDecode", tc.data, err)
			}
			if c.Payload != nil {
				t.Errorf("Decode(%q) returned payload %#v with its error", tc.data, c.Payload)
			}
		})
	}
}

func TestApply_PanicsOnUndecodableEntry(t *testing.T) {
	for _, tc := range badEntries {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.New()
			mustApply(t, f, 1, bootstrapCmd())
			before, _ := readState(t, f)
			ch := f.Changed()

			panicked := func() (p any) {
				defer func() { p = recover() }()
				f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: tc.data})
				return nil
			}()

			if panicked == nil {
				t.Fatalf("Apply(%q) did not panic", tc.data)
			}
			got, index := readState(t, f)
			assertState(t, got, before)
			if index != 1 || f.Applied() != 1 {
				t.Errorf("Applied() = %d after a corrupt entry, want 1", f.Applied())
			}
			if isClosed(ch) {
				t.Error("Changed was closed by a corrupt entry")
			}
		})
	}
}

func TestError_MatchesSentinelByCode(t *testing.T) {
	err := error(&fsm.Error{Code: "user_exists", Description: "a user with email x exists"})
	if !errors.Is(err, fsm.ErrUserExists) {
		t.Error("described user_exists does not match ErrUserExists")
	}
	if errors.Is(err, fsm.ErrUserNotFound) {
		t.Error("user_exists matches ErrUserNotFound")
	}
	if got, want := err.Error(), "user_exists: a user with email x exists"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := fsm.ErrLastAdmin.Error(); got != "last_admin" {
		t.Errorf("ErrLastAdmin.Error() = %q", got)
	}
	var target *fsm.Error
	if !errors.As(error(errWrap{err}), &target) || target.Code != "user_exists" {
		t.Errorf("errors.As through a wrapper gave %v", target)
	}
	if !errors.Is(errWrap{err}, fsm.ErrUserExists) {
		t.Error("wrapped user_exists does not match ErrUserExists")
	}
}

type errWrap struct{ err error }

func (w errWrap) Error() string { return "wrapped: " + w.err.Error() }
func (w errWrap) Unwrap() error { return w.err }
