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
// away the old encoding the test exists to keep (-update only writes files
// that do not exist yet). When a command gains a field, add a new entry with
// a new file name and run
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
	{"07_create_bdb.bin", &fsm.CreateBDB{
		Actor: fsm.Actor{UID: 2, Revision: 4},
		BDB: fsm.BDB{
			Name:            "scratch",
			MemorySize:      1073741824,
			ShardsCount:     1,
			DataPersistence: fsm.PersistenceDisabled,
			CreatedAt:       1735689800,
		},
		Placement:    []int{1},
		EndpointNode: 1,
	}},
	// Files apply in name order: this one follows 07_create_bdb.bin.
	{"07_create_bdb_sharded.bin", &fsm.CreateBDB{
		Actor: fsm.Actor{UID: 2, Revision: 4},
		BDB: fsm.BDB{
			Name:            "sessions",
			MemorySize:      4294967296,
			ShardsCount:     2,
			CRDT:            true,
			DataPersistence: fsm.PersistenceAOF,
			CreatedAt:       1735689900,
		},
		Placement:    []int{1, 1},
		EndpointNode: 1,
	}},
	{"08_delete_bdb.bin", &fsm.DeleteBDB{
		Actor: fsm.Actor{UID: 2, Revision: 4},
		UID:   1,
	}},
	{"09_update_policy.bin", &fsm.UpdatePolicy{
		Actor:                  fsm.Actor{UID: 2, Revision: 4},
		PersistentNodeRemoval:  ptr(true),
		DefaultShardsPlacement: ptr(fsm.PlacementSparse),
		RackAware:              ptr(true),
		ShardsOverbooking:      ptr(false),
	}},
	{"10_update_node.bin", &fsm.UpdateNode{
		Actor:           fsm.Actor{UID: 2, Revision: 4},
		UID:             2,
		AcceptServers:   ptr(true),
		MaxRedisServers: ptr(30),
		RackID:          ptr("r2b"),
	}},
	// No entry before it makes node snapshots, so it was refused.
	{"11_delete_snapshot.bin", &fsm.DeleteSnapshot{
		Actor: fsm.Actor{UID: 2, Revision: 4},
		Node:  1,
		Name:  "maintenance_mode_2025-01-01_00-00-00",
	}},
	// A node action's whole life: maintenance_on of node 1 runs and
	// completes, its record is forgotten, and a maintenance_off that moves
	// a shard back is retargeted and waits.
	{"12_submit_action.bin", &fsm.SubmitAction{
		Actor: fsm.Actor{UID: 2, Revision: 4},
		By:    "ops-lead@example.com through node 2",
		Action: fsm.Action{TaskID: "5f0e7c6a-1d2b-4c3d-9e8f-0a1b2c3d4e5f", Action: fsm.ActionMaintenanceOn, NodeUID: 1,
			CreationTime: 1735690000, Deadline: 1735690600, Params: json.RawMessage(`{"overwrite_snapshot":false}`)},
	}},
	{"13_claim_action.bin", &fsm.ClaimAction{TaskID: "5f0e7c6a-1d2b-4c3d-9e8f-0a1b2c3d4e5f", Term: 2, Leader: 2, Time: 1735690001, TimeMS: 1735690001250}},
	{"14_plan_action.bin", &fsm.PlanAction{TaskID: "5f0e7c6a-1d2b-4c3d-9e8f-0a1b2c3d4e5f", Term: 2, Time: 1735690002, Steps: []fsm.Step{
		{Kind: fsm.StepSnapshot, Snapshot: "maintenance_mode_2025-01-01_00-06-40", Time: 1735690000},
		{Kind: fsm.StepMaintenance},
	}}},
	{"15_step_done.bin", &fsm.StepDone{TaskID: "5f0e7c6a-1d2b-4c3d-9e8f-0a1b2c3d4e5f", Term: 2, Index: 0, Time: 1735690003, Message: "recorded snapshot"}},
	{"15_step_done_b.bin", &fsm.StepDone{TaskID: "5f0e7c6a-1d2b-4c3d-9e8f-0a1b2c3d4e5f", Term: 2, Index: 1, Time: 1735690004, Message: "node 1 stops accepting shards"}},
	{"16_finish_action.bin", &fsm.FinishAction{TaskID: "5f0e7c6a-1d2b-4c3d-9e8f-0a1b2c3d4e5f", Term: 2, Status: fsm.StatusCompleted, Time: 1735690005, TimeMS: 1735690005500}},
	{"17_cancel_action.bin", &fsm.CancelAction{Actor: fsm.Actor{UID: 2, Revision: 4}, Node: 1, Action: fsm.ActionMaintenanceOn, By: "ops-lead@example.com through node 1", Time: 1735690006}},
	// Files apply in name order: these follow 17_cancel_action.bin.
	{"17_then_a_submit_action.bin", &fsm.SubmitAction{
		Actor: fsm.Actor{UID: 2, Revision: 4},
		By:    "ops-lead@example.com through node 1",
		Action: fsm.Action{TaskID: "6a1f8d7b-2e3c-4d4e-8f90-1b2c3d4e5f60", Action: fsm.ActionMaintenanceOff, NodeUID: 1,
			CreationTime: 1735690010, Deadline: 1735690610, Params: json.RawMessage(`{"skip_shards_restore":false}`)},
	}},
	{"17_then_b_claim_action.bin", &fsm.ClaimAction{TaskID: "6a1f8d7b-2e3c-4d4e-8f90-1b2c3d4e5f60", Term: 3, Leader: 2, Time: 1735690011}},
	{"17_then_c_plan_action.bin", &fsm.PlanAction{TaskID: "6a1f8d7b-2e3c-4d4e-8f90-1b2c3d4e5f60", Term: 3, Time: 1735690012, Steps: []fsm.Step{
		{Kind: fsm.StepMove, Shard: "2", BDB: 2, From: 1, To: 2},
		{Kind: fsm.StepDeleteSnapshot, Snapshot: "maintenance_mode_2025-01-01_00-06-40"},
	}}},
	{"18_retarget_step.bin", &fsm.RetargetStep{TaskID: "6a1f8d7b-2e3c-4d4e-8f90-1b2c3d4e5f60", Term: 3, Index: 0, To: 2, Time: 1735690013}},
	// The move's work begins, holding its shard's slots until it commits.
	{"18_then_begin_step.bin", &fsm.BeginStep{TaskID: "6a1f8d7b-2e3c-4d4e-8f90-1b2c3d4e5f60", Term: 3, Index: 0}},
	{"19_set_waiting.bin", &fsm.SetWaiting{TaskID: "6a1f8d7b-2e3c-4d4e-8f90-1b2c3d4e5f60", Term: 3, Index: 0, Reason: "copy shard 2 from node 1: node 1 does not answer", Time: 1735690014}},
	{"20_checkpoint.bin", &fsm.Checkpoint{}},
	{"21_set_node_certs.bin", &fsm.SetNodeCerts{UID: 2, Add: &fsm.CertRef{Serial: "5e1a", NotAfter: 1743465600}, Time: 1735690015}},
	{"22_rotate_node_cert.bin", &fsm.RotateNodeCert{Actor: fsm.Actor{UID: 2, Revision: 4}, UID: 2}},
	// Time budgets as durations: the move's commit says how long it took,
	// and a new action on node 2 states its budget.
	{"20_step_done_elapsed.bin", &fsm.StepDone{TaskID: "6a1f8d7b-2e3c-4d4e-8f90-1b2c3d4e5f60", Term: 3, Index: 0, Time: 1735690020, Message: "shard 2 moved from node 1 to node 2", ElapsedMS: 8250}},
	{"21_submit_action_timeout.bin", &fsm.SubmitAction{
		Actor: fsm.Actor{UID: 2, Revision: 4},
		By:    "ops-lead@example.com through node 2",
		Action: fsm.Action{TaskID: "7b2a9e8c-3f4d-4e5f-9a01-2c3d4e5f6071", Action: fsm.ActionEnslaveNode, NodeUID: 2,
			CreationTime: 1735690030, Deadline: 1735690330, TimeoutMS: 300000, Params: json.RawMessage(`{"shards_only":false}`)},
	}},
	// Node 2's agent reports its master shard syncing again, and a shard
	// that is not on node 2, which is left out.
	{"23_set_shard_stats.bin", &fsm.SetShardStats{Node: 2, Shards: []fsm.ShardStat{
		{UID: "2", Status: fsm.ShardSyncing, UsedMemory: 1048576, Keys: 12},
		{UID: "3", Status: fsm.ShardDown},
	}}},
	// The maintenance_off is still running: its step's hold is its own
	// until it ends, so a release is refused.
	{"25_release_step.bin", &fsm.ReleaseStep{TaskID: "6a1f8d7b-2e3c-4d4e-8f90-1b2c3d4e5f60", Term: 3}},
	// A step's commit that begins the next step in the same entry; this
	// one names a step the action is not at, and is refused.
	{"26_step_done_begin_next.bin", &fsm.StepDone{TaskID: "6a1f8d7b-2e3c-4d4e-8f90-1b2c3d4e5f60", Term: 3, Index: 99, Time: 1735690040,
		Message: "shard 3 failed over to its replica 4 on node 1", ElapsedMS: 12, BeginNext: true}},
}

// goldenRefused holds, by file, the error code of golden entries that Apply
// refused when they were committed. They must be refused again with the same
// code: a refusal is part of where the log leads as much as a change is.
var goldenRefused = map[string]string{
	"11_delete_snapshot.bin":      "snapshot_not_found",
	"25_release_step.bin":         "stale_term",
	"26_step_done_begin_next.bin": "stale_term",
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

	f, seen := applyGolden(t, files)
	for _, typ := range []fsm.CommandType{fsm.CmdBootstrap, fsm.CmdAddNode, fsm.CmdCreateUser, fsm.CmdUpdateUser,
		fsm.CmdDeleteUser, fsm.CmdSetNodeStatus, fsm.CmdCreateBDB, fsm.CmdDeleteBDB, fsm.CmdUpdatePolicy,
		fsm.CmdUpdateNode, fsm.CmdDeleteSnapshot, fsm.CmdSubmitAction, fsm.CmdClaimAction, fsm.CmdPlanAction,
		fsm.CmdStepDone, fsm.CmdFinishAction, fsm.CmdCancelAction, fsm.CmdRetargetStep, fsm.CmdSetWaiting,
		fsm.CmdCheckpoint, fsm.CmdSetNodeCerts, fsm.CmdRotateNodeCert, fsm.CmdSetShardStats, fsm.CmdBeginStep, fsm.CmdReleaseStep} {
		if !seen[typ] {
			t.Errorf("no golden file holds a %s entry", typ)
		}
	}

	got, index := readState(t, f)
	want := readGoldenState(t)
	if index != want.Applied {
		t.Errorf("applied index %d, state.json says %d", index, want.Applied)
	}
	// Compared as JSON: state.json is indented, and so are the raw params
	// it holds, which DeepEqual would tell from the compact originals.
	if !bytes.Equal(mustJSON(t, got), mustJSON(t, want.State)) {
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

// applyGolden applies the stored bytes of files, in order at indexes 1, 2,
// ..., to a new FSM; each must be accepted, or refused with the code
// goldenRefused gives. It returns the FSM and the command types it met.
func applyGolden(t *testing.T, files []string) (*fsm.FSM, map[fsm.CommandType]bool) {
	t.Helper()
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
		switch want := goldenRefused[name]; {
		case want == "" && res.Err != nil:
			t.Fatalf("%s (%s) at index %d is rejected: %v", name, c.Type, i+1, res.Err)
		case want != "" && (res.Err == nil || res.Err.Code != want):
			t.Fatalf("%s (%s) at index %d: error %v, want %s as when it was committed", name, c.Type, i+1, res.Err, want)
		}
	}
	return f, seen
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

// writeGolden writes the entries of goldenEntries that have no file yet,
// never one that exists (it stands for an entry already in raft logs), and
// the state that applying every file leads to.
func writeGolden(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll(goldenDir, 0o755); err != nil {
		t.Fatal(err)
	}
	written := 0
	for _, e := range goldenEntries {
		path := filepath.Join(goldenDir, e.file)
		if _, err := os.Stat(path); err == nil {
			continue
		}
		data, err := fsm.Encode(e.payload)
		if err != nil {
			t.Fatalf("encode %s: %v", e.file, err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		written++
	}
	f, _ := applyGolden(t, goldenFiles(t))
	s, index := readState(t, f)
	out, err := json.MarshalIndent(goldenState{Applied: index, State: s}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(goldenDir, "state.json"), append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d new entries and state.json to %s", written, goldenDir)
}
