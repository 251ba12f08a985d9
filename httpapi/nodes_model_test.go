package httpapi_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"cnm/fsm"
)

func TestPutNode_InvalidBodiesAre400UnknownNodeIs404(t *testing.T) {
	runErrorCasesOn(t, newModelEnv(t), errorCases{
		{name: "empty body", target: "/v1/nodes/1", body: ``, status: 400, code: "invalid_parameter", descHas: "accept_servers"},
		{name: "empty object", target: "/v1/nodes/1", body: `{}`, status: 400, code: "invalid_parameter", descHas: "max_redis_servers"},
		{name: "only nulls", target: "/v1/nodes/1", body: `{"rack_id":null,"accept_servers":null}`, status: 400, code: "invalid_parameter", descHas: "accept_servers"},
		{name: "negative max_redis_servers", target: "/v1/nodes/1", body: `{"max_redis_servers":-1}`, status: 400, code: "invalid_parameter", descHas: "max_redis_servers"},
		{name: "negative max_redis_servers with a good field", target: "/v1/nodes/1", body: `{"rack_id":"r1","max_redis_servers":-5}`, status: 400, code: "invalid_parameter", descHas: "max_redis_servers"},
		{name: "max_redis_servers is a string", target: "/v1/nodes/1", body: `{"max_redis_servers":"10"}`, status: 400, code: "invalid_parameter", descHas: "max_redis_servers"},
		{name: "max_redis_servers is a float", target: "/v1/nodes/1", body: `{"max_redis_servers":2.5}`, status: 400, code: "invalid_parameter", descHas: "max_redis_servers"},
		{name: "accept_servers is a string", target: "/v1/nodes/1", body: `{"accept_servers":"yes"}`, status: 400, code: "invalid_parameter", descHas: "accept_servers"},
		{name: "rack_id is a number", target: "/v1/nodes/1", body: `{"rack_id":1}`, status: 400, code: "invalid_parameter", descHas: "rack_id"},
		{name: "unknown field", target: "/v1/nodes/1", body: `{"total_memory":1}`, status: 400, code: "invalid_parameter", descHas: "total_memory"},
		{name: "status is not settable", target: "/v1/nodes/1", body: `{"status":"down"}`, status: 400, code: "invalid_parameter", descHas: "status"},
		{name: "array", target: "/v1/nodes/1", body: `[]`, status: 400, code: "invalid_json"},
		{name: "non-numeric node", target: "/v1/nodes/abc", body: `{"rack_id":"r1"}`, status: 400, code: "invalid_parameter", descHas: "abc"},
		{name: "node 0", target: "/v1/nodes/0", body: `{"rack_id":"r1"}`, status: 400, code: "invalid_parameter", descHas: "uid"},
		{name: "unknown node", target: "/v1/nodes/99", body: `{"rack_id":"r1"}`, status: 404, code: "node_not_found", descHas: "99"},
	}.withAuth("admin").withMethod("PUT"))
}

func TestPutNode_ChangesTheGivenSettingsOnly(t *testing.T) {
	e := newModelEnv(t)
	var before nodeJSON
	e.getJSON("admin", "/v1/nodes/1", &before)

	w := e.call("admin", "PUT", "/v1/nodes/1", `{"max_redis_servers":7,"rack_id":"r1"}`)
	mustStatus(t, w, http.StatusOK)
	assertIndexHeader(t, e, w)
	var got nodeJSON
	decodeInto(t, w, &got)
	want := before
	want.MaxRedisServers, want.RackID = 7, "r1"
	got.Uptime, want.Uptime = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PUT answered %+v\nwant %+v", got, want)
	}

	w = e.call("admin", "PUT", "/v1/nodes/1", `{"accept_servers":false}`)
	mustStatus(t, w, http.StatusOK)
	var again nodeJSON
	e.getJSON("cluster_viewer", "/v1/nodes/1", &again)
	want.AcceptServers = false
	again.Uptime = nil
	if !reflect.DeepEqual(again, want) {
		t.Fatalf("GET after PUT = %+v\nwant %+v", again, want)
	}
	// Zero is a valid max_redis_servers: the node takes no new shards.
	mustStatus(t, e.call("admin", "PUT", "/v1/nodes/1", `{"max_redis_servers":0,"accept_servers":true}`), http.StatusOK)
	if n := e.state().Nodes[1]; n.MaxRedisServers != 0 || !n.AcceptServers || n.RackID != "r1" {
		t.Fatalf("node 1 = %+v", n)
	}
}

// nodesStatus returns GET /v1/nodes/status, raw per node and decoded.
func nodesStatus(t *testing.T, e *env) (map[string]map[string]any, map[string]nodeStatusJSON) {
	t.Helper()
	w := e.call("db_viewer", "GET", "/v1/nodes/status", "")
	mustStatus(t, w, http.StatusOK)
	var raw map[string]map[string]any
	if err := jsonUnmarshal(w, &raw); err != nil {
		t.Fatalf("GET /v1/nodes/status = %s: want an object of node objects: %v", w.Body, err)
	}
	var typed map[string]nodeStatusJSON
	if err := jsonUnmarshal(w, &typed); err != nil {
		t.Fatal(err)
	}
	return raw, typed
}

func nodeStatus(t *testing.T, e *env, uid int) (map[string]any, nodeStatusJSON) {
	t.Helper()
	w := e.call("db_viewer", "GET", "/v1/nodes/"+strconv.Itoa(uid)+"/status", "")
	mustStatus(t, w, http.StatusOK)
	var raw map[string]any
	var typed nodeStatusJSON
	if err := jsonUnmarshal(w, &raw); err != nil {
		t.Fatal(err)
	}
	if err := jsonUnmarshal(w, &typed); err != nil {
		t.Fatal(err)
	}
	return raw, typed
}

func TestNodesStatus_IsAnObjectKeyedByNodeUID(t *testing.T) {
	e := newEnv(t)
	e.addNodes(nodeSpec{UID: 2, MaxShards: 10, Memory: 4 * gib}, nodeSpec{UID: 5, MaxShards: 10, Memory: 4 * gib})
	e.setPolicy(`{"default_shards_placement":"sparse"}`)
	e.createDB(`{"name":"d","memory_size":3145728,"shards_count":3}`)
	e.applyCmd(&fsm.SetNodeStatus{UID: 5, Status: fsm.NodeDown})

	raw, typed := nodesStatus(t, e)
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"1", "2", "5"}) {
		t.Fatalf("keys = %q, want the node uids 1, 2, 5", keys)
	}
	wantStatus := map[string]string{"1": "active", "2": "active", "5": "down"}
	for k, v := range typed {
		if strconv.Itoa(v.UID) != k || v.Status != wantStatus[k] || v.ShardCount != 1 {
			t.Errorf("status of %s = %+v: want uid %s, status %s, shard_count 1", k, v, k, wantStatus[k])
		}
		if _, ok := raw[k]["maintenance_snapshot"]; ok {
			t.Errorf("node %s is not in maintenance but shows maintenance_snapshot: %v", k, raw[k])
		}
	}
	for uid := range wantStatus {
		n, _ := strconv.Atoi(uid)
		_, one := nodeStatus(t, e, n)
		if !reflect.DeepEqual(one, typed[uid]) {
			t.Errorf("GET /v1/nodes/%s/status = %+v, /v1/nodes/status shows %+v", uid, one, typed[uid])
		}
	}
}

func TestNodeStatus_ShowsMaintenanceSnapshotOnlyInMaintenanceWithASnapshot(t *testing.T) {
	e := newEnv(t)
	e.addNodes(nodeSpec{UID: 2, MaxShards: 10, Memory: 4 * gib}, nodeSpec{UID: 3, MaxShards: 10, Memory: 4 * gib})
	e.setSnapshots(1, "old-1")                                  // not in maintenance, has a snapshot
	e.changeNode(2, func(n *fsm.Node) { n.Maintenance = true }) // in maintenance, no snapshot
	e.setSnapshots(3, "first", "second")                        // in maintenance, two snapshots
	e.changeNode(3, func(n *fsm.Node) { n.Maintenance = true })

	raw, typed := nodesStatus(t, e)
	for _, uid := range []int{1, 2, 3} {
		one, _ := nodeStatus(t, e, uid)
		got, inList := one["maintenance_snapshot"], raw[strconv.Itoa(uid)]["maintenance_snapshot"]
		if uid == 3 {
			if snapshotName(got) != "second" || snapshotName(inList) != "second" {
				t.Errorf("node 3 in maintenance: maintenance_snapshot = %v (list: %v), want its latest, \"second\"", got, inList)
			}
			continue
		}
		if got != nil || inList != nil {
			t.Errorf("node %d: maintenance_snapshot = %v (list: %v), want none", uid, got, inList)
		}
	}
	if s := typed["3"].MaintenanceSnapshot; s == nil || s.Name != "second" || s.NodeUID != "3" {
		t.Errorf("node 3 status %+v", typed["3"])
	}

	// Out of maintenance, the snapshots stay but none is the maintenance one.
	e.changeNode(3, func(n *fsm.Node) { n.Maintenance = false })
	if one, _ := nodeStatus(t, e, 3); one["maintenance_snapshot"] != nil {
		t.Errorf("node 3 out of maintenance still shows maintenance_snapshot %v", one["maintenance_snapshot"])
	}
}

func TestNodeStatusAndSnapshots_UnknownNodeIs404NonNumericIs400(t *testing.T) {
	runErrorCasesOn(t, newModelEnv(t), errorCases{
		{name: "status of unknown node", target: "/v1/nodes/99/status", status: 404, code: "node_not_found", descHas: "99"},
		{name: "status of node abc", target: "/v1/nodes/abc/status", status: 400, code: "invalid_parameter", descHas: "abc"},
		{name: "snapshots of unknown node", target: "/v1/nodes/99/snapshots", status: 404, code: "node_not_found", descHas: "99"},
		{name: "snapshots of node abc", target: "/v1/nodes/abc/snapshots", status: 400, code: "invalid_parameter", descHas: "abc"},
		{name: "snapshots of node 0", target: "/v1/nodes/0/snapshots", status: 400, code: "invalid_parameter", descHas: "uid"},
	}.withAuth("admin").withMethod("GET"))
}

func TestListSnapshots_OldestFirstAndEmptyListWithoutAny(t *testing.T) {
	e := newModelEnv(t)
	var list []snapshotListJSON
	e.getJSON("cluster_viewer", "/v1/nodes/2/snapshots", &list)
	if len(list) != 2 || list[0].Name != "maint-old" || list[1].Name != "maint-latest" || list[0].CreatedTime >= list[1].CreatedTime ||
		list[0].NodeUID != "2" || list[1].NodeUID != "2" {
		t.Fatalf("snapshots of node 2 = %+v", list)
	}
	if len(list[0].Shards) != 1 || list[0].Shards[0].BDBUID != 1 || len(list[0].Endpoints) != 1 {
		t.Fatalf("snapshot %+v lost its shards or endpoints", list[0])
	}
	e.setSnapshots(1)
	w := e.call("cluster_viewer", "GET", "/v1/nodes/1/snapshots", "")
	mustStatus(t, w, http.StatusOK)
	if got := w.Body.String(); got != "[]\n" {
		t.Fatalf("snapshots of a node without any = %q, want []", got)
	}
}

func TestDeleteSnapshot_UnknownIs404AndTheMaintenanceSnapshotIs403(t *testing.T) {
	runErrorCasesOn(t, newModelEnv(t), errorCases{
		{name: "unknown snapshot", target: "/v1/nodes/1/snapshots/nope", status: 404, code: "snapshot_not_found", descHas: "nope", viaRaft: true},
		{name: "another node's snapshot", target: "/v1/nodes/1/snapshots/maint-old", status: 404, code: "snapshot_not_found", descHas: "maint-old", viaRaft: true},
		{name: "name differs in case", target: "/v1/nodes/1/snapshots/SNAP-1", status: 404, code: "snapshot_not_found", descHas: "SNAP-1", viaRaft: true},
		{name: "unknown node", target: "/v1/nodes/99/snapshots/snap-1", status: 404, code: "node_not_found", descHas: "99", viaRaft: true},
		{name: "node abc", target: "/v1/nodes/abc/snapshots/snap-1", status: 400, code: "invalid_parameter", descHas: "abc"},
		{name: "latest snapshot of a node in maintenance", target: "/v1/nodes/2/snapshots/maint-latest", status: 403, code: "snapshot_in_use", descHas: "maint-latest", viaRaft: true},
	}.withAuth("admin").withMethod("DELETE"))
}

// SPEC §2: a body with unknown fields, or that is not a JSON object, is 400,
// on every write.
func TestDeleteSnapshot_BadBodyIs400AndDeletesNothing(t *testing.T) {
	runErrorCasesOn(t, newModelEnv(t), errorCases{
		{name: "unknown field", body: `{"force":true}`, code: "invalid_parameter", descHas: "force"},
		{name: "array", body: `[]`, code: "invalid_json"},
		{name: "not JSON", body: `name=snap-1`, code: "invalid_json"},
	}.withAuth("admin").withMethod("DELETE").withTarget("/v1/nodes/1/snapshots/snap-1").withStatus(http.StatusBadRequest, ""))
}

func TestDeleteSnapshot_RemovesOnlyThatSnapshot(t *testing.T) {
	e := newModelEnv(t)
	for _, tc := range []struct {
		target string
		node   int
		left   []string
	}{
		// An older snapshot of a node in maintenance may go.
		{"/v1/nodes/2/snapshots/maint-old", 2, []string{"maint-latest"}},
		// The only, latest snapshot of a node out of maintenance may go.
		{"/v1/nodes/1/snapshots/snap-1", 1, nil},
	} {
		w := e.call("admin", "DELETE", tc.target, "")
		mustStatus(t, w, http.StatusOK)
		var got []snapshotListJSON
		e.getJSON("admin", "/v1/nodes/"+strconv.Itoa(tc.node)+"/snapshots", &got)
		var names []string
		for _, s := range got {
			names = append(names, s.Name)
		}
		if !slices.Equal(names, tc.left) {
			t.Fatalf("after DELETE %s: snapshots %q, want %q", tc.target, names, tc.left)
		}
	}
	assertError(t, e, e.call("admin", "DELETE", "/v1/nodes/1/snapshots/snap-1", ""), http.StatusNotFound, "snapshot_not_found")
	// Once maintenance is over, the last snapshot may go too.
	e.changeNode(2, func(n *fsm.Node) { n.Maintenance = false })
	mustStatus(t, e.call("admin", "DELETE", "/v1/nodes/2/snapshots/maint-latest", "{}"), http.StatusOK)
	if n := len(e.state().Snapshots); n != 0 {
		t.Fatalf("%d nodes still hold snapshots", n)
	}
}

func TestPutNode_ANodeBeingRemovedNeverAcceptsServersAgain(t *testing.T) {
	base := newModelEnv(t)
	base.changeNode(2, func(n *fsm.Node) { n.Maintenance, n.Removing, n.AcceptServers = false, true, false })
	runErrorCasesOn(t, base, errorCases{
		{name: "accept servers", body: `{"accept_servers":true}`, descHas: "node 2"},
		{name: "accept servers along with other settings", body: `{"accept_servers":true,"rack_id":"r9","max_redis_servers":3}`, descHas: "node 2"},
	}.withAuth("admin").withMethod("PUT").withTarget("/v1/nodes/2").viaRaft().withStatus(http.StatusBadRequest, "invalid_parameter"))
	// Other settings of such a node may still change.
	e := base.fork(t)
	mustStatus(t, e.call("admin", "PUT", "/v1/nodes/2", `{"rack_id":"r9"}`), http.StatusOK)
	if n := e.state().Nodes[2]; n.RackID != "r9" || n.AcceptServers {
		t.Fatalf("node 2 = %+v", n)
	}
}

// A node a remove action is taking out shows as decommissioning while it
// is up, and as down when it is down.
func TestNodes_RemovingNodeShowsDecommissioning(t *testing.T) {
	e := newModelEnv(t)
	e.changeNode(2, func(n *fsm.Node) { n.Removing = true })
	for _, target := range []string{"/v1/nodes/2", "/v1/nodes/2/status"} {
		var got struct {
			Status string `json:"status"`
		}
		w := e.call("cluster_viewer", "GET", target, "")
		mustStatus(t, w, http.StatusOK)
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if got.Status != "decommissioning" {
			t.Fatalf("GET %s: status %q, want decommissioning", target, got.Status)
		}
	}
	e.changeNode(2, func(n *fsm.Node) { n.Status = fsm.NodeDown })
	var got struct {
		Status string `json:"status"`
	}
	w := e.call("cluster_viewer", "GET", "/v1/nodes/2", "")
	mustStatus(t, w, http.StatusOK)
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got.Status != "down" {
		t.Fatalf("a removing node that is down shows %q (%v), want down", got.Status, err)
	}
}
