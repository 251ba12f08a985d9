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

	// Every decodable entry is applied to a bootstrapped FSM, which must
	// either accept it or leave the state exactly as it was.
	boot, err := fsm.Encode(bootstrapCmd())
	if err != nil {
		f.Fatal(err)
	}
	bob, err := fsm.Encode(createUser(fsm.Actor{}, "bob", fsm.RoleDBViewer))
	if err != nil {
		f.Fatal(err)
	}

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

		m := fsm.New()
		m.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: boot})
		m.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: bob})
		before, _ := readState(t, m)
		res := m.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: data}).(*fsm.Result)
		if res.Err != nil {
			if res.Err.Code == "" || res.Err.Description == "" {
				t.Fatalf("Apply(%q) error without code or description: %#v", data, res.Err)
			}
			after, _ := readState(t, m)
			assertState(t, after, before)
		}
		if m.Applied() != 3 {
			t.Fatalf("Applied() = %d after entry 3", m.Applied())
		}
	})
}
