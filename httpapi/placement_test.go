package httpapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"cnm/fsm"
)

func TestPolicy_PutChangesOnlyTheGivenFields(t *testing.T) {
	e := newEnv(t)
	var initial policyJSON
	e.getJSON("cluster_viewer", "/v1/cluster/policy", &initial)
	if initial.DefaultShardsPlacement != "dense" && initial.DefaultShardsPlacement != "sparse" {
		t.Fatalf("initial policy %+v", initial)
	}

	got := e.setPolicy(`{"default_shards_placement":"sparse","rack_aware":true}`)
	want := initial
	want.DefaultShardsPlacement, want.RackAware = "sparse", true
	if got != want {
		t.Fatalf("PUT answered %+v, want %+v", got, want)
	}
	got = e.setPolicy(`{"persistent_node_removal":true,"shards_overbooking":true}`)
	want.PersistentNodeRemoval, want.ShardsOverbooking = true, true
	if got != want {
		t.Fatalf("PUT answered %+v, want %+v", got, want)
	}
	got = e.setPolicy(`{"default_shards_placement":"dense","rack_aware":false,"persistent_node_removal":false,"shards_overbooking":false}`)
	want = policyJSON{DefaultShardsPlacement: "dense"}
	if got != want {
		t.Fatalf("PUT answered %+v, want %+v", got, want)
	}
	var read policyJSON
	e.getJSON("db_viewer", "/v1/cluster/policy", &read)
	if read != want {
		t.Fatalf("GET = %+v, want %+v", read, want)
	}
}

func TestPolicy_InvalidBodiesAre400AndChangeNothing(t *testing.T) {
	runErrorCasesOn(t, newModelEnv(t), errorCases{
		{name: "unknown placement", body: `{"default_shards_placement":"random"}`, descHas: "default_shards_placement"},
		{name: "rack_aware is not a placement", body: `{"default_shards_placement":"rack_aware"}`, descHas: "default_shards_placement"},
		{name: "empty placement", body: `{"default_shards_placement":""}`, descHas: "default_shards_placement"},
		{name: "placement in upper case", body: `{"default_shards_placement":"DENSE"}`, descHas: "default_shards_placement"},
		{name: "bad placement along with a good field", body: `{"rack_aware":true,"default_shards_placement":"sparsest"}`, descHas: "default_shards_placement"},
		{name: "placement is a number", body: `{"default_shards_placement":1}`, descHas: "default_shards_placement"},
		{name: "rack_aware is a string", body: `{"rack_aware":"yes"}`, descHas: "rack_aware"},
		{name: "persistent_node_removal is a number", body: `{"persistent_node_removal":1}`, descHas: "persistent_node_removal"},
		{name: "shards_overbooking is a list", body: `{"shards_overbooking":[true]}`, descHas: "shards_overbooking"},
		{name: "unknown field", body: `{"placement":"dense"}`, descHas: "placement"},
		{name: "unknown field among good ones", body: `{"rack_aware":true,"max_shards":3}`, descHas: "max_shards"},
		{name: "array", body: `[]`, code: "invalid_json"},
		{name: "string", body: `"dense"`, code: "invalid_json"},
	}.withAuth("admin").withMethod("PUT").withTarget("/v1/cluster/policy").withStatus(http.StatusBadRequest, "invalid_parameter"))
}

// threeEmptyNodes is a cluster of nodes 1, 2 and 3, alike and empty.
func threeEmptyNodes(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	e.addNodes(nodeSpec{UID: 2, MaxShards: 100, Memory: 16 * gib}, nodeSpec{UID: 3, MaxShards: 100, Memory: 16 * gib})
	return e
}

func TestPlacement_SparsePutsOneShardPerEmptyNode(t *testing.T) {
	e := threeEmptyNodes(t)
	e.setPolicy(`{"default_shards_placement":"sparse"}`)
	b := e.createDB(`{"name":"spread","memory_size":3221225472,"shards_count":3}`)
	shards := e.shardsOf(b.UID)
	if got := nodesOf(shards); len(shards) != 3 || !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("sparse placed %+v on nodes %q, want one shard on each of 1, 2, 3", shards, got)
	}
}

func TestPlacement_DensePutsEveryShardOnOneNodeWhenItFits(t *testing.T) {
	e := threeEmptyNodes(t)
	e.setPolicy(`{"default_shards_placement":"dense"}`)
	b := e.createDB(`{"name":"packed","memory_size":3221225472,"shards_count":3}`)
	shards := e.shardsOf(b.UID)
	if got := nodesOf(shards); len(shards) != 3 || len(got) != 1 {
		t.Fatalf("dense placed %+v on nodes %q, want all on one node", shards, got)
	}
	// The next database fills the same node first.
	c := e.createDB(`{"name":"packed-too","memory_size":2147483648,"shards_count":2}`)
	if got := nodesOf(e.shardsOf(c.UID)); !slices.Equal(got, nodesOf(shards)) {
		t.Fatalf("dense placed the second database on %q, want the node of the first, %q", got, nodesOf(shards))
	}
}

func TestPlacement_DenseSpillsOverOnlyWhenTheNodeIsFull(t *testing.T) {
	e := threeEmptyNodes(t)
	e.setPolicy(`{"default_shards_placement":"dense"}`)
	for _, uid := range []string{"1", "2", "3"} {
		mustStatus(t, e.call("admin", "PUT", "/v1/nodes/"+uid, `{"max_redis_servers":2}`), http.StatusOK)
	}
	b := e.createDB(`{"name":"spill","memory_size":3145728,"shards_count":3}`)
	count := map[string]int{}
	for _, sh := range e.shardsOf(b.UID) {
		count[sh.NodeUID]++
	}
	if len(count) != 2 {
		t.Fatalf("dense with 2 shards per node placed %v, want 2 nodes used", count)
	}
	for n, c := range count {
		if c > 2 {
			t.Fatalf("node %s holds %d shards, over its max_redis_servers of 2", n, c)
		}
	}
}

func TestPlacement_RackAwareKeepsEveryReplicaOffItsMastersRack(t *testing.T) {
	for _, placement := range []string{"dense", "sparse"} {
		t.Run(placement, func(t *testing.T) {
			e := newEnv(t)
			e.addNodes(nodeSpec{UID: 2, MaxShards: 100, Memory: 16 * gib, Rack: "rack-a"},
				nodeSpec{UID: 3, MaxShards: 100, Memory: 16 * gib, Rack: "rack-b"},
				nodeSpec{UID: 4, MaxShards: 100, Memory: 16 * gib, Rack: "rack-b"})
			mustStatus(t, e.call("admin", "PUT", "/v1/nodes/1", `{"rack_id":"rack-a"}`), http.StatusOK)
			e.setPolicy(`{"rack_aware":true,"default_shards_placement":"` + placement + `"}`)

			b := e.createDB(`{"name":"racked","memory_size":4294967296,"shards_count":4,"replication":true}`)
			racks := e.racks()
			ps := pairs(t, e.shardsOf(b.UID), true)
			if len(ps) != 4 {
				t.Fatalf("%d master/replica pairs, want 4", len(ps))
			}
			for slots, p := range ps {
				m, r := p[0], p[1]
				if racks[m.NodeUID] == "" || racks[m.NodeUID] == racks[r.NodeUID] {
					t.Errorf("slots %s: master %s on node %s (rack %q), replica %s on node %s (rack %q)",
						slots, m.UID, m.NodeUID, racks[m.NodeUID], r.UID, r.NodeUID, racks[r.NodeUID])
				}
			}
		})
	}
}

func TestPlacement_RackAwareWithOneRackIs406(t *testing.T) {
	e := newEnv(t)
	e.addNodes(nodeSpec{UID: 2, MaxShards: 100, Memory: 16 * gib, Rack: "rack-a"})
	mustStatus(t, e.call("admin", "PUT", "/v1/nodes/1", `{"rack_id":"rack-a"}`), http.StatusOK)
	e.setPolicy(`{"rack_aware":true}`)
	before, applied := e.state(), e.applied()

	w := e.call("admin", "POST", "/v1/bdbs", `{"name":"one-rack","memory_size":1048576,"replication":true}`)
	desc := assertError(t, e, w, http.StatusNotAcceptable, "insufficient_resources")
	if !strings.Contains(desc, "rack") {
		t.Errorf("description %q does not say the rack is missing", desc)
	}
	if e.applied() != applied || len(e.state().BDBs) != len(before.BDBs) {
		t.Fatalf("a refused database changed the state")
	}
	// Without rack awareness the same database fits.
	e.setPolicy(`{"rack_aware":false}`)
	e.createDB(`{"name":"one-rack","memory_size":1048576,"replication":true}`)
}

func TestPlacement_ShardsGoOnlyToNodesThatTakeThem(t *testing.T) {
	e := newEnv(t)
	for uid := 2; uid <= 6; uid++ {
		e.addNodes(nodeSpec{UID: uid, MaxShards: 100, Memory: 16 * gib})
	}
	mustStatus(t, e.call("admin", "PUT", "/v1/nodes/2", `{"accept_servers":false}`), http.StatusOK)
	e.applyCmd(&fsm.SetNodeStatus{UID: 3, Status: fsm.NodeDown})
	e.changeNode(4, func(n *fsm.Node) { n.Maintenance = true })
	e.changeNode(5, func(n *fsm.Node) { n.Removing = true })
	mustStatus(t, e.call("admin", "PUT", "/v1/nodes/6", `{"max_redis_servers":1}`), http.StatusOK)
	e.setPolicy(`{"default_shards_placement":"sparse"}`)

	b := e.createDB(`{"name":"picky","memory_size":5242880,"shards_count":5}`)
	count := map[string]int{}
	for _, sh := range e.shardsOf(b.UID) {
		count[sh.NodeUID]++
	}
	if len(count) != 2 || count["1"] != 4 || count["6"] != 1 {
		t.Fatalf("shards per node %v: want 4 on node 1 and 1 on node 6 (the only one with room left), none on nodes that refuse servers, are down, in maintenance or being removed", count)
	}
	// No node takes more now: node 1 is the only one with room.
	mustStatus(t, e.call("admin", "PUT", "/v1/nodes/1", `{"max_redis_servers":4}`), http.StatusOK)
	desc := assertError(t, e, e.call("admin", "POST", "/v1/bdbs", `{"name":"no-room","memory_size":1048576}`),
		http.StatusNotAcceptable, "insufficient_resources")
	if !strings.Contains(desc, "max_redis_servers") {
		t.Errorf("description %q does not name max_redis_servers", desc)
	}
}
