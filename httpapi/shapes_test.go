package httpapi_test

import (
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"cnm/fsm"
)

// TestNodeStatus_HasTheRedisEnterpriseShape: clients written for Redis
// Enterprise read role, node_status, the shard lists as ints and the
// maintenance snapshot as an object (SPEC §5.1).
func TestNodeStatus_HasTheRedisEnterpriseShape(t *testing.T) {
	e := newEnv(t)
	e.addNodes(nodeSpec{UID: 2, MaxShards: 10, Memory: 4 * gib}, nodeSpec{UID: 3, MaxShards: 10, Memory: 4 * gib})
	e.createDB(`{"name":"d","memory_size":3145728,"shards_count":3,"replication":true}`)
	e.setSnapshots(3, "maintenance_mode_old", "maintenance_mode_latest")
	e.changeNode(3, func(n *fsm.Node) { n.Maintenance = true })

	masters, slaves := map[int][]int{}, map[int][]int{}
	for _, sh := range e.listShards() {
		n, uid := mustInt(t, sh.NodeUID), mustInt(t, sh.UID)
		if sh.Role == "master" {
			masters[n] = append(masters[n], uid)
		} else {
			slaves[n] = append(slaves[n], uid)
		}
	}
	raw, all := nodesStatus(t, e)
	created := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`)
	for _, uid := range []int{1, 2, 3} {
		key := strconv.Itoa(uid)
		_, one := nodeStatus(t, e, uid)
		for _, f := range []string{"role", "node_status", "master_shards", "slave_shards", "hostname", "software_version", "total_memory", "cores"} {
			if _, ok := raw[key][f]; !ok {
				t.Errorf("node %d status has no %q: %v", uid, f, raw[key])
			}
		}
		wantRole := "slave"
		if uid == testNodeUID { // the fake raft's leader
			wantRole = "master"
		}
		if one.Role != wantRole || one.NodeStatus != "active" || one.Hostname != nodeHost(uid) || one.SoftwareVersion != "test" || one.TotalMemory <= 0 {
			t.Errorf("node %d status = %+v: want role %s, node_status active, hostname %s", uid, one, wantRole, nodeHost(uid))
		}
		if uid == testNodeUID && one.Cores <= 0 {
			t.Errorf("the answering node shows %d cores", one.Cores)
		}
		if !slices.Equal(one.MasterShards, orEmpty(masters[uid])) || !slices.Equal(one.SlaveShards, orEmpty(slaves[uid])) {
			t.Errorf("node %d: master_shards %v slave_shards %v; it hosts masters %v, replicas %v", uid, one.MasterShards, one.SlaveShards, masters[uid], slaves[uid])
		}
		snap := one.MaintenanceSnapshot
		switch {
		case uid != 3 && snap != nil:
			t.Errorf("node %d is not in maintenance but shows %+v", uid, snap)
		case uid == 3 && (snap == nil || snap.Name != "maintenance_mode_latest" || snap.NodeUID != "3" || !created.MatchString(snap.CreatedTime)):
			t.Errorf("node 3 in maintenance: maintenance_snapshot = %+v", snap)
		}
		if one.MaintenanceSnapshot != nil {
			if all[key].MaintenanceSnapshot == nil || *all[key].MaintenanceSnapshot != *one.MaintenanceSnapshot {
				t.Errorf("/v1/nodes/status shows node %d's snapshot as %+v", uid, all[key].MaintenanceSnapshot)
			}
		}
	}

	var snaps []snapshotListJSON
	e.getJSON("db_viewer", "/v1/nodes/3/snapshots", &snaps)
	want := time.Unix(1_700_000_001, 0).UTC().Format("2006-01-02 15:04:05")
	if len(snaps) != 2 || snaps[1].snapshotJSON != (snapshotJSON{CreatedTime: want, Name: "maintenance_mode_latest", NodeUID: "3"}) {
		t.Errorf("snapshots of node 3 = %+v", snaps)
	}
}

func orEmpty(s []int) []int {
	if s == nil {
		return []int{}
	}
	return s
}

// TestNodes_MaintenanceHidesAcceptServersAndDownHidesUptime: a node in
// maintenance takes no shards, and a node that is down has no uptime to
// show (SPEC §5).
func TestNodes_MaintenanceHidesAcceptServersAndDownHidesUptime(t *testing.T) {
	e := newEnv(t)
	e.addNodes(nodeSpec{UID: 2, MaxShards: 10, Memory: 4 * gib}, nodeSpec{UID: 3, MaxShards: 10, Memory: 4 * gib},
		nodeSpec{UID: 4, MaxShards: 10, Memory: 4 * gib})
	// Node 2 joined an hour ago, but its cnmd started just now: uptime
	// counts from the start.
	e.changeNode(2, func(n *fsm.Node) { n.Maintenance, n.JoinedAt = true, n.JoinedAt-3600 })
	e.applyCmd(&fsm.SetNodeStatus{UID: 3, Status: fsm.NodeDown})
	// Node 4's start has not been heard by the leader yet: no uptime.
	e.changeNode(4, func(n *fsm.Node) { n.StartTime = 0 })

	w := e.call("admin", "GET", "/v1/nodes", "")
	mustStatus(t, w, http.StatusOK)
	var list []map[string]any
	decodeInto(t, w, &list)
	for _, n := range list {
		uid := int(n["uid"].(float64))
		_, hasUptime := n["uptime"]
		if uptime, ok := n["uptime"].(float64); ok && uptime > 60 {
			t.Errorf("node %d: uptime %v s, but its cnmd started just now", uid, uptime)
		}
		if want := uid != 2; n["accept_servers"] != want {
			t.Errorf("node %d: accept_servers = %v, want %v", uid, n["accept_servers"], want)
		}
		if want := uid != 3 && uid != 4; hasUptime != want {
			t.Errorf("node %d (%v): uptime shown = %v, want %v", uid, n["status"], hasUptime, want)
		}
		var one map[string]any
		e.getJSON("admin", "/v1/nodes/"+strconv.Itoa(uid), &one)
		if _, ok := one["uptime"]; ok != hasUptime || one["accept_servers"] != n["accept_servers"] {
			t.Errorf("GET /v1/nodes/%d = %v, the list shows %v", uid, one, n)
		}
	}
}
