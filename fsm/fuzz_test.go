package fsm_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"cnm/fsm"
)

func FuzzDecode(f *testing.F) {
	entries, err := os.ReadDir(goldenDir)
	if err != nil {
		f.Fatalf("%v (run go test ./fsm -run TestGolden -update to create the golden files)", err)
	}
	seeds := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".bin") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(goldenDir, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		seeds++
	}
	if seeds == 0 {
		f.Fatalf("no golden entries in %s to seed from", goldenDir)
	}
	for _, tc := range badEntries {
		f.Add(tc.data)
	}
	f.Add([]byte{})
	f.Add([]byte{byte(fsm.CmdCreateUser)})
	f.Add([]byte{42, 1, '{', '}'})
	f.Add([]byte{byte(fsm.CmdBootstrap), 7, '{', '}'})
	f.Add(append([]byte{byte(fsm.CmdUpdateUser), 1}, `{"uid":2,"email":nul}`...))
	f.Add(append([]byte{byte(fsm.CmdUpdateUser), 1}, `{"uid":2,"email":null,"Name":"x","role":"admin"}`...))
	f.Add(append([]byte{byte(fsm.CmdCreateUser), 1}, "{\"user\":{\"email\":\"\xff\",\"role\":\"none\",\"password_hash\":\"h\"}}"...))
	f.Add(append([]byte{byte(fsm.CmdBootstrap), 1}, `null`...))
	for _, p := range []any{
		createBDB(newBDB("fz", 2*gib, 2, true), 1, 1, 2, 2, 1),
		createBDB(newBDB("fz", gib, 512, false), 1, repeat(1, 512)...),
		&fsm.CreateBDB{BDB: fsm.BDB{Name: "fz", MemorySize: 1<<62 + 1, ShardsCount: 3, DataPersistence: fsm.PersistenceSnapshot}, Placement: []int{1, 2, -1}, EndpointNode: -1},
		&fsm.DeleteBDB{UID: 1},
		&fsm.DeleteBDB{UID: -1},
		&fsm.UpdatePolicy{DefaultShardsPlacement: ptr(fsm.PlacementSparse), RackAware: ptr(true), ShardsOverbooking: ptr(true), PersistentNodeRemoval: ptr(true)},
		&fsm.UpdatePolicy{DefaultShardsPlacement: ptr("")},
		&fsm.UpdateNode{UID: 2, AcceptServers: ptr(false), MaxRedisServers: ptr(-1), RackID: ptr("r")},
		&fsm.UpdateNode{UID: 1, MaxRedisServers: ptr(0)},
		&fsm.DeleteSnapshot{Node: 1, Name: "maintenance_mode_2025-01-01_00-00-00"},
		&fsm.DeleteSnapshot{Node: 9},
	} {
		data, err := fsm.Encode(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(append([]byte{byte(fsm.CmdCreateBDB), 1}, `{"bdb":{"name":"x","memory_size":1,"shards_count":1,"data_persistence":"aof"},"placement":[1],"endpoint_node":1}`...))
	f.Add(append([]byte{byte(fsm.CmdCreateBDB), 1}, `{"bdb":{"name":"x","memory_size":9223372036854775807,"shards_count":512,"replication":true,"data_persistence":"disabled"},"placement":[]}`...))
	f.Add(append([]byte{byte(fsm.CmdCreateBDB), 1}, `{"bdb":{"name":"x","shards_count":-9223372036854775808},"placement":null}`...))
	f.Add(append([]byte{byte(fsm.CmdUpdateNode), 1}, `{"uid":2,"max_redis_servers":null,"accept_servers":true}`...))
	f.Add(append([]byte{byte(fsm.CmdDeleteSnapshot), 1}, `{"node":1,"name":"\u0000"}`...))

	// Every decodable entry is applied to a bootstrapped FSM, which must
	// either accept it or leave the state exactly as it was.
	// The state has a second node and a replicated database, so that
	// entries of every type can be accepted as well as refused.
	var base [][]byte
	for _, p := range []any{
		bootstrapCmd(),
		createUser(fsm.Actor{}, "bob", fsm.RoleDBViewer),
		&fsm.AddNode{Node: node(2)},
		&fsm.CreateBDB{BDB: newBDB("db", 2*gib, 2, true), Placement: []int{1, 2, 2, 1}, EndpointNode: 1},
	} {
		data, err := fsm.Encode(p)
		if err != nil {
			f.Fatal(err)
		}
		base = append(base, data)
	}
	last := uint64(len(base) + 1)

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := fsm.Decode(data)
		if err != nil {
			if !errors.Is(err, fsm.ErrDecode) {
				t.Fatalf("Decode(%q) error %v is not ErrDecode", data, err)
			}
			return
		}
		if c.Type != fsm.CommandType(data[0]) {
			t.Fatalf("Decode(%q).Type = %s, want %d", data, c.Type, data[0])
		}
		again, err := fsm.Encode(c.Payload)
		if err != nil {
			t.Fatalf("Encode of decoded %#v: %v", c.Payload, err)
		}
		c2, err := fsm.Decode(again)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))) = %v", data, err)
		}
		if c2.Type != c.Type || !reflect.DeepEqual(c2.Payload, c.Payload) {
			t.Fatalf("round trip of %q changed the command:\n%s %#v\n%s %#v", data, c.Type, c.Payload, c2.Type, c2.Payload)
		}

		newBase := func() *fsm.FSM {
			m := fsm.New()
			for i, b := range base {
				if res := m.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: b}).(*fsm.Result); res.Err != nil {
					t.Fatalf("base entry %d: %v", i+1, res.Err)
				}
			}
			return m
		}
		m := newBase()
		before, _ := readState(t, m)
		res := m.Apply(&raft.Log{Index: last, Type: raft.LogCommand, Data: data}).(*fsm.Result)
		after, _ := readState(t, m)
		if res.Err != nil {
			if res.Err.Code == "" || res.Err.Description == "" {
				t.Fatalf("Apply(%q) error without code or description: %#v", data, res.Err)
			}
			assertState(t, after, before)
		}
		if m.Applied() != last {
			t.Fatalf("Applied() = %d after entry %d", m.Applied(), last)
		}

		// Another replica applying the same entry answers and ends the same.
		m2 := newBase()
		res2 := m2.Apply(&raft.Log{Index: last, Type: raft.LogCommand, Data: data}).(*fsm.Result)
		if a, b := mustJSON(t, res), mustJSON(t, res2); string(a) != string(b) {
			t.Fatalf("Apply(%q) answered %s on one FSM and %s on another", data, a, b)
		}
		after2, _ := readState(t, m2)
		assertState(t, after2, after)
	})
}
