package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"cnm/fsm"
)

const (
	mib = int64(1) << 20
	gib = int64(1) << 30
)

// bdbJSON is the database object of SPEC §5, exactly.
type bdbJSON struct {
	UID             int            `json:"uid"`
	Name            string         `json:"name"`
	MemorySize      int64          `json:"memory_size"`
	ShardsCount     int            `json:"shards_count"`
	Replication     bool           `json:"replication"`
	CRDT            bool           `json:"crdt"`
	DataPersistence string         `json:"data_persistence"`
	ShardList       []int          `json:"shard_list"`
	Endpoints       []endpointJSON `json:"endpoints"`
	Status          string         `json:"status"`
}

// endpointJSON is one endpoint of a database; its node uid is a string.
type endpointJSON struct {
	UID     string   `json:"uid"`
	NodeUID string   `json:"node_uid"`
	Addr    []string `json:"addr"`
	Port    int      `json:"port"`
}

// shardJSON is the shard object of SPEC §5, exactly: uids of the shard and
// of its node are strings.
type shardJSON struct {
	UID           string `json:"uid"`
	BDBUID        int    `json:"bdb_uid"`
	NodeUID       string `json:"node_uid"`
	Role          string `json:"role"`
	Status        string `json:"status"`
	Memory        int64  `json:"memory"`
	AssignedSlots string `json:"assigned_slots"`
	UsedMemory    int64  `json:"used_memory"`
	Keys          int64  `json:"keys"`
}

// policyJSON is the cluster policy of SPEC §5.1, exactly.
type policyJSON struct {
	PersistentNodeRemoval  bool   `json:"persistent_node_removal"`
	DefaultShardsPlacement string `json:"default_shards_placement"`
	RackAware              bool   `json:"rack_aware"`
	ShardsOverbooking      bool   `json:"shards_overbooking"`
}

// nodeStatusJSON is a node status as Redis Enterprise shapes it (SPEC
// §5.1), with cnm's own fields, exactly.
type nodeStatusJSON struct {
	Role                string        `json:"role"`
	NodeStatus          string        `json:"node_status"`
	MasterShards        []int         `json:"master_shards"`
	SlaveShards         []int         `json:"slave_shards"`
	Hostname            string        `json:"hostname"`
	SoftwareVersion     string        `json:"software_version"`
	TotalMemory         int64         `json:"total_memory"`
	Cores               int           `json:"cores"`
	MaintenanceSnapshot *snapshotJSON `json:"maintenance_snapshot"`
	UID                 int           `json:"uid"`
	Status              string        `json:"status"`
	AcceptServers       bool          `json:"accept_servers"`
	Maintenance         bool          `json:"maintenance"`
	Removing            bool          `json:"removing"`
	ShardCount          int           `json:"shard_count"`
}

// snapshotJSON is a node snapshot as Redis Enterprise shows it, exactly.
type snapshotJSON struct {
	CreatedTime string `json:"created_time"`
	Name        string `json:"name"`
	NodeUID     string `json:"node_uid"`
}

// snapshotListJSON is an entry of GET /v1/nodes/{uid}/snapshots: the
// snapshot object and what it holds.
type snapshotListJSON struct {
	snapshotJSON
	Shards    []fsm.SnapshotShard `json:"shards"`
	Endpoints []string            `json:"endpoints"`
}

// snapshotName is the name of a maintenance_snapshot decoded loosely, or
// "" when v is not a snapshot object.
func snapshotName(v any) string {
	m, _ := v.(map[string]any)
	name, _ := m["name"].(string)
	return name
}

// nodeSpec is a node added to a test cluster, at address 10.0.0.UID.
type nodeSpec struct {
	UID       int
	MaxShards int
	Memory    int64
	Rack      string
}

func nodeHost(uid int) string {
	if uid == testNodeUID {
		return "127.0.0.1"
	}
	return "10.0.0." + strconv.Itoa(uid)
}

// applyCmd applies a command of the cluster itself (no user) through the
// fake raft.
func (e *env) applyCmd(payload any) {
	e.t.Helper()
	cmd, err := fsm.Encode(payload)
	if err != nil {
		e.t.Fatalf("encode %T: %v", payload, err)
	}
	if _, err := e.raft.Apply(context.Background(), cmd); err != nil {
		e.t.Fatalf("apply %T: %v", payload, err)
	}
}

// addNodes records active nodes as a join does: AddNode (provisioning),
// then SetNodeStatus active.
func (e *env) addNodes(specs ...nodeSpec) {
	e.t.Helper()
	for _, s := range specs {
		host := nodeHost(s.UID)
		e.applyCmd(&fsm.AddNode{Node: fsm.Node{UID: s.UID, Addr: host, APIAddr: host + ":9443", RaftAddr: host + ":9444",
			Status: fsm.NodeProvisioning, AcceptServers: true, MaxRedisServers: s.MaxShards, TotalMemory: s.Memory,
			RackID: s.Rack, SoftwareVersion: "test", JoinedAt: time.Now().Unix()}})
		e.applyCmd(&fsm.SetNodeStatus{UID: s.UID, Status: fsm.NodeActive, StartTime: time.Now().Unix()})
	}
}

// changeNode changes node uid in place, through a snapshot restore (for
// what no command sets yet: maintenance, removal, capacity).
func (e *env) changeNode(uid int, change func(n *fsm.Node)) {
	e.t.Helper()
	e.replaceState(func(st *fsm.State) {
		n, ok := st.Nodes[uid]
		if !ok {
			e.t.Fatalf("no node %d", uid)
		}
		change(n)
	})
}

// setSnapshots gives node uid snapshots with the given names, oldest first,
// through a snapshot restore: no command creates them yet.
func (e *env) setSnapshots(uid int, names ...string) {
	e.t.Helper()
	e.replaceState(func(st *fsm.State) {
		var list []*fsm.NodeSnapshot
		for i, name := range names {
			list = append(list, &fsm.NodeSnapshot{Name: name, Time: int64(1_700_000_000 + i),
				Shards: []fsm.SnapshotShard{{UID: strconv.Itoa(100 + i), BDBUID: 1, Role: fsm.RoleMaster}}, Endpoints: []string{"1:1"}})
		}
		if len(list) == 0 {
			delete(st.Snapshots, uid)
			return
		}
		st.Snapshots[uid] = list
	})
}

// createDB creates a database as admin and returns the answer.
func (e *env) createDB(body string) bdbJSON {
	e.t.Helper()
	w := e.call("admin", "POST", "/v1/bdbs", body)
	if w.Code != http.StatusOK {
		e.t.Fatalf("create database %s: %d %s", body, w.Code, w.Body)
	}
	var b bdbJSON
	decodeInto(e.t, w, &b)
	return b
}

// setPolicy changes the cluster policy as admin.
func (e *env) setPolicy(body string) policyJSON {
	e.t.Helper()
	w := e.call("admin", "PUT", "/v1/cluster/policy", body)
	if w.Code != http.StatusOK {
		e.t.Fatalf("put policy %s: %d %s", body, w.Code, w.Body)
	}
	var p policyJSON
	decodeInto(e.t, w, &p)
	return p
}

// getJSON GETs target as role and decodes the answer strictly into v.
func (e *env) getJSON(as, target string, v any) {
	e.t.Helper()
	w := e.call(as, "GET", target, "")
	if w.Code != http.StatusOK {
		e.t.Fatalf("GET %s as %s: %d %s", target, as, w.Code, w.Body)
	}
	decodeInto(e.t, w, v)
}

func (e *env) listShards() []shardJSON {
	e.t.Helper()
	var out []shardJSON
	e.getJSON("admin", "/v1/shards", &out)
	return out
}

func (e *env) listNodes() []nodeJSON {
	e.t.Helper()
	var out []nodeJSON
	e.getJSON("admin", "/v1/nodes", &out)
	return out
}

// shardsOf returns the shards of database uid, as GET /v1/shards lists them.
func (e *env) shardsOf(uid int) []shardJSON {
	e.t.Helper()
	var out []shardJSON
	for _, sh := range e.listShards() {
		if sh.BDBUID == uid {
			out = append(out, sh)
		}
	}
	return out
}

// racks maps node uid strings to their rack, as GET /v1/nodes shows them.
func (e *env) racks() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, n := range e.listNodes() {
		out[strconv.Itoa(n.UID)] = n.RackID
	}
	return out
}

// pairs groups a database's shards by assigned_slots and checks that each
// group is one master and, with replication, one replica.
func pairs(t testing.TB, shards []shardJSON, replicated bool) map[string][2]shardJSON {
	t.Helper()
	out := map[string][2]shardJSON{}
	groups := map[string][]shardJSON{}
	for _, sh := range shards {
		groups[sh.AssignedSlots] = append(groups[sh.AssignedSlots], sh)
	}
	for slots, g := range groups {
		var p [2]shardJSON
		var masters, slaves int
		for _, sh := range g {
			switch sh.Role {
			case "master":
				masters++
				p[0] = sh
			case "slave":
				slaves++
				p[1] = sh
			default:
				t.Fatalf("shard %s has role %q", sh.UID, sh.Role)
			}
		}
		wantSlaves := 0
		if replicated {
			wantSlaves = 1
		}
		if masters != 1 || slaves != wantSlaves {
			t.Fatalf("slots %s are held by %d masters and %d replicas, want 1 and %d: %+v", slots, masters, slaves, wantSlaves, g)
		}
		out[slots] = p
	}
	return out
}

// nodesOf returns the distinct node uids hosting shards, sorted.
func nodesOf(shards []shardJSON) []string {
	var out []string
	for _, sh := range shards {
		if !slices.Contains(out, sh.NodeUID) {
			out = append(out, sh.NodeUID)
		}
	}
	slices.Sort(out)
	return out
}

// rawFields decodes a JSON object's top level.
func rawFields(t testing.TB, b []byte) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s is not a JSON object: %v", b, err)
	}
	return m
}

// newModelEnv is a cluster for the database, shard, snapshot and policy
// routes:
//   - node 1 (100 shards, 16 GiB) and node 2 (10 shards, 4 GiB), both
//     active;
//   - database 1 "db1", 2 GiB in 2 replicated shards (shards 1 to 4);
//   - node 1 holds snapshot "snap-1";
//   - node 2 is in maintenance with snapshots "maint-old" and
//     "maint-latest" (its maintenance snapshot).
func newModelEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	e := newEnv(t, opts...)
	e.addNodes(nodeSpec{UID: 2, MaxShards: 10, Memory: 4 * gib})
	if b := e.createDB(`{"name":"db1","memory_size":2147483648,"shards_count":2,"replication":true}`); b.UID != 1 {
		t.Fatalf("first database has uid %d, want 1", b.UID)
	}
	e.setSnapshots(1, "snap-1")
	e.setSnapshots(2, "maint-old", "maint-latest")
	e.changeNode(2, func(n *fsm.Node) { n.Maintenance = true })
	return e
}
