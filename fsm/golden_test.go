package fsm_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"cnm/fsm"
)

var update = flag.Bool("update", false, "rewrite fsm/testdata/golden from goldenEntries")

const goldenDir = "testdata/golden"

// goldenEntries is a short history of the cluster as raft logs hold it, one
// entry of each command type, applied at indexes 1, 2, ... The files in
// testdata/golden are these payloads as an older build encoded them; they
// stand for entries that already sit in raft logs, so they must keep
// decoding and applying to testdata/golden/state.json.
//
// Do not regenerate existing .bin files to make a change pass: that throws
// away the old encoding the test exists to keep. When a command gains a
// field, add a new entry with a new file name and run
//
//	go test ./fsm -run TestGolden -update
//
// then check that the diff only adds files and changes state.json as
// intended.
var goldenEntries = []struct {
	file    string
	payload any
}{
	{"01_bootstrap.bin", &fsm.Bootstrap{
		Cluster: fsm.ClusterInfo{
			Name:      "golden",
			CreatedAt: 1735689600,
			CACertPEM: "-----BEGIN CERTIFICATE-----\nZ29sZGVuIGNh\n-----END CERTIFICATE-----\n",
			CAKeyPEM:  "-----BEGIN EC PRIVATE KEY-----\nZ29sZGVuIGtleQ==\n-----END EC PRIVATE KEY-----\n",
		},
		Node: fsm.Node{
			UID:             1,
			Addr:            "192.0.2.1",
			APIAddr:         "192.0.2.1:9443",
			RaftAddr:        "192.0.2.1:7000",
			Status:          fsm.NodeActive,
			AcceptServers:   true,
			MaxRedisServers: 50,
			TotalMemory:     34359738368,
			RackID:          "r1",
			SoftwareVersion: "1.0.0",
			JoinedAt:        1735689600,
		},
		Admin: fsm.User{
			Email:        "root@example.com",
			Name:         "Root",
			PasswordHash: "$2a$10$rootrootrootrootrootroOQ3zq9YQ0nF3u2qjM0k3m5a1pZK6s2",
		},
	}},
	{"02_add_node.bin", &fsm.AddNode{
		Actor: fsm.Actor{UID: 1, Revision: 1},
		Node: fsm.Node{
			UID:             2,
			Addr:            "192.0.2.2",
			APIAddr:         "192.0.2.2:9443",
			RaftAddr:        "192.0.2.2:7000",
			Status:          fsm.NodeProvisioning,
			AcceptServers:   false,
			MaxRedisServers: 20,
			TotalMemory:     17179869184,
			RackID:          "r2",
			SoftwareVersion: "1.0.1",
			JoinedAt:        1735689700,
		},
	}},
	{"03_create_user.bin", &fsm.CreateUser{
		Actor: fsm.Actor{UID: 1, Revision: 1},
		User: fsm.User{
			Email:        "ops@example.com",
			Name:         "Ops",
			Role:         fsm.RoleClusterMember,
			PasswordHash: "$2a$10$opsopsopsopsopsopsopsuW1yW8rEJ4b0uOQ0QxkV2m8i6bq1kLa",
		},
	}},
	{"04_update_user.bin", &fsm.UpdateUser{
		Actor:        fsm.Actor{UID: 1, Revision: 1},
		UID:          2,
		Email:        ptr("ops-lead@example.com"),
		Name:         ptr("Ops Lead"),
		Role:         ptr(fsm.RoleAdmin),
		PasswordHash: ptr("$2a$10$leadleadleadleadleadleHq7m2yqB0Jx0f3W5bJqYH1oX3yV0aC"),
	}},
	{"05_delete_user.bin", &fsm.DeleteUser{
		Actor: fsm.Actor{UID: 2, Revision: 4},
		UID:   1,
	}},
	{"06_set_node_status.bin", &fsm.SetNodeStatus{
		Actor:  fsm.Actor{UID: 2, Revision: 4},
		UID:    2,
		Status: fsm.NodeActive,
	}},
}

// goldenState is the layout of state.json.
type goldenState struct {
	Applied uint64     `json:"applied"`
	State   *fsm.State `json:"state"`
}

func TestGolden_DecodeAndApply(t *testing.T) {
	if *update {
		writeGolden(t)
	}
	files := goldenFiles(t)
	for _, e := range goldenEntries {
		if !slices.Contains(files, e.file) {
			t.Errorf("golden file %s is missing; entries in raft logs cannot be taken back", e.file)
		}
	}

	f := fsm.New()
	seen := map[fsm.CommandType]bool{}
	for i, name := range files {
		data := readGolden(t, name)
		c, err := fsm.Decode(data)
		if err != nil {
			t.Fatalf("%s no longer decodes: %v", name, err)
		}
		seen[c.Type] = true
		// Apply the stored bytes, not a re-encoding of what they decode to.
		out := f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data})
		res, ok := out.(*fsm.Result)
		if !ok {
			t.Fatalf("%s: Apply returned %T", name, out)
		}
		if res.Err != nil {
			t.Fatalf("%s (%s) at index %d is rejected: %v", name, c.Type, i+1, res.Err)
		}
	}
	for _, typ := range []fsm.CommandType{fsm.CmdBootstrap, fsm.CmdAddNode, fsm.CmdCreateUser, fsm.CmdUpdateUser, fsm.CmdDeleteUser, fsm.CmdSetNodeStatus} {
		if !seen[typ] {
			t.Errorf("no golden file holds a %s entry", typ)
		}
	}

	got, index := readState(t, f)
	want := readGoldenState(t)
	if index != want.Applied {
		t.Errorf("applied index %d, state.json says %d", index, want.Applied)
	}
	if !reflect.DeepEqual(got, want.State) {
		t.Errorf("applying the golden entries gives\n%s\nstate.json holds\n%s", mustJSON(t, got), mustJSON(t, want.State))
	}
}

// TestGolden_FilesDecodeToTheirPayloads catches a renamed or retyped JSON
// field: the old entry would still decode, but without that field.
func TestGolden_FilesDecodeToTheirPayloads(t *testing.T) {
	for _, e := range goldenEntries {
		c, err := fsm.Decode(readGolden(t, e.file))
		if err != nil {
			t.Errorf("%s: %v", e.file, err)
			continue
		}
		if !reflect.DeepEqual(c.Payload, e.payload) {
			t.Errorf("%s decodes to\n%s\nwant\n%s", e.file, mustJSON(t, c.Payload), mustJSON(t, e.payload))
		}
	}
}

func goldenFiles(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatalf("%v (run go test ./fsm -run TestGolden -update to create the golden files)", err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".bin") {
			files = append(files, e.Name())
		}
	}
	slices.Sort(files)
	if len(files) == 0 {
		t.Fatalf("no .bin files in %s", goldenDir)
	}
	return files
}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readGoldenState(t *testing.T) goldenState {
	t.Helper()
	data := readGolden(t, "state.json")
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var g goldenState
	if err := dec.Decode(&g); err != nil {
		t.Fatalf("decode state.json: %v", err)
	}
	if g.State == nil {
		t.Fatal("state.json has no state")
	}
	return g
}

// writeGolden writes every entry of goldenEntries and the state they lead to.
func writeGolden(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll(goldenDir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := fsm.New()
	for i, e := range goldenEntries {
		data, err := fsm.Encode(e.payload)
		if err != nil {
			t.Fatalf("encode %s: %v", e.file, err)
		}
		if err := os.WriteFile(filepath.Join(goldenDir, e.file), data, 0o644); err != nil {
			t.Fatal(err)
		}
		mustApply(t, f, uint64(i+1), e.payload)
	}
	s, index := readState(t, f)
	out, err := json.MarshalIndent(goldenState{Applied: index, State: s}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(goldenDir, "state.json"), append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d entries and state.json to %s", len(goldenEntries), goldenDir)
}
