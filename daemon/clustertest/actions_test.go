package clustertest_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cnm/daemon/clustertest"
)

type actionObj struct {
	Name       string  `json:"name"`
	Action     string  `json:"action"`
	NodeUID    string  `json:"node_uid"`
	TaskID     string  `json:"task_id"`
	Status     string  `json:"status"`
	Progress   float64 `json:"progress"`
	ErrorCode  string  `json:"error_code"`
	Additional struct {
		Events []struct {
			Message string `json:"message"`
		} `json:"events"`
	} `json:"additional_info"`
}

type placement map[string]string // shard uid -> "node/role"

func placementOf(t *testing.T, c *clustertest.Cluster, via int) placement {
	t.Helper()
	var ss []shard
	c.MustDo(via, "GET", "/v1/shards", nil, http.StatusOK).JSON(t, &ss)
	p := placement{}
	for _, s := range ss {
		p[s.UID] = s.NodeUID + "/" + s.Role
	}
	return p
}

// checkInvariants: every shard once, every master apart from its replica,
// every endpoint on a node hosting a master of its database.
func checkInvariants(t *testing.T, c *clustertest.Cluster, via int) {
	t.Helper()
	var ss []shard
	c.MustDo(via, "GET", "/v1/shards", nil, http.StatusOK).JSON(t, &ss)
	bySlots := map[string][]shard{}
	for _, s := range ss {
		k := strconv.Itoa(s.BDBUID) + "/" + s.Slots
		bySlots[k] = append(bySlots[k], s)
	}
	for k, pair := range bySlots {
		masters := 0
		for _, s := range pair {
			if s.Role == "master" {
				masters++
			}
		}
		if masters != 1 {
			t.Fatalf("slots %s have %d masters: %+v", k, masters, pair)
		}
		if len(pair) == 2 && pair[0].NodeUID == pair[1].NodeUID {
			t.Fatalf("master and replica of %s share node %s", k, pair[0].NodeUID)
		}
	}
	var bs []bdb
	c.MustDo(via, "GET", "/v1/bdbs", nil, http.StatusOK).JSON(t, &bs)
	for _, b := range bs {
		for _, e := range b.Endpoints {
			ok := false
			for _, s := range ss {
				ok = ok || (s.BDBUID == b.UID && s.Role == "master" && s.NodeUID == e.NodeUID)
			}
			if !ok {
				t.Fatalf("endpoint of db %d on node %s, which hosts none of its masters", b.UID, e.NodeUID)
			}
		}
	}
}

// waitAction polls the action on every running node until all agree on a
// terminal status, and returns it.
func waitAction(t *testing.T, c *clustertest.Cluster, node int, name string, timeout time.Duration) actionObj {
	t.Helper()
	return waitActionOn(t, c, c.Running(), node, name, timeout)
}

// waitActionOn is waitAction reading through the given nodes only.
func waitActionOn(t *testing.T, c *clustertest.Cluster, via []int, node int, name string, timeout time.Duration) actionObj {
	t.Helper()
	var got actionObj
	clustertest.Eventually(t, timeout, func() error {
		var first *actionObj
		for _, uid := range via {
			r, err := c.Do(uid, "GET", fmt.Sprintf("/v1/nodes/%d/actions/%s", node, name), nil)
			if err != nil {
				return err
			}
			if r.Status != http.StatusOK {
				return fmt.Errorf("node %d: %d %s", uid, r.Status, r.Body)
			}
			var a actionObj
			if err := jsonUnmarshal(r.Body, &a); err != nil {
				return err
			}
			switch a.Status {
			case "completed", "failed", "cancelled", "aborted":
			default:
				return fmt.Errorf("action is %s at %.0f%%", a.Status, a.Progress)
			}
			if first != nil && (first.Status != a.Status || first.Progress != a.Progress) {
				return fmt.Errorf("nodes disagree: %s %.1f vs %s %.1f", first.Status, first.Progress, a.Status, a.Progress)
			}
			first = &a
		}
		got = *first
		return nil
	})
	return got
}

func createDemo(t *testing.T, c *clustertest.Cluster, via int, shards int) {
	t.Helper()
	c.MustDo(via, "PUT", "/v1/cluster/policy", map[string]string{"default_shards_placement": "sparse"}, http.StatusOK)
	c.MustDo(via, "POST", "/v1/bdbs", map[string]any{"name": "demo", "memory_size": int64(shards) << 30,
		"shards_count": shards, "replication": true, "data_persistence": "snapshot"}, http.StatusOK)
	expectFiles(t, c, via, true)
}

func TestAction_MaintenanceOnThenOffRestoresEveryShardAndRole(t *testing.T) {
	for _, n := range []int{3, 4} {
		t.Run(fmt.Sprintf("%d_nodes", n), func(t *testing.T) {
			c := clustertest.Start(t, n, clustertest.Options{})
			leader := c.Leader(10 * time.Second)
			createDemo(t, c, leader, 4)
			before := placementOf(t, c, leader)
			var bsBefore []bdb
			c.MustDo(leader, "GET", "/v1/bdbs", nil, http.StatusOK).JSON(t, &bsBefore)
			target := followers(c, leader)[0]
			via := followers(c, leader)[len(followers(c, leader))-1]

			c.MustDo(via, "POST", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_on", target), nil, http.StatusOK)
			if a := waitAction(t, c, target, "maintenance_on", 30*time.Second); a.Status != "completed" || a.Progress != 100 {
				t.Fatalf("maintenance_on ended %+v", a)
			}
			during := placementOf(t, c, leader)
			for id, where := range during {
				if where[:len(strconv.Itoa(target))+1] == strconv.Itoa(target)+"/" {
					t.Fatalf("shard %s still on node %d in maintenance", id, target)
				}
			}
			checkInvariants(t, c, leader)
			expectFiles(t, c, leader, false)
			var st struct {
				Maintenance bool `json:"maintenance"`
				Snapshot    *struct {
					Name    string `json:"name"`
					NodeUID string `json:"node_uid"`
					Created string `json:"created_time"`
				} `json:"maintenance_snapshot"`
			}
			c.MustDo(target, "GET", fmt.Sprintf("/v1/nodes/%d/status", target), nil, http.StatusOK).JSON(t, &st)
			if !st.Maintenance || st.Snapshot == nil || st.Snapshot.NodeUID != strconv.Itoa(target) || !strings.HasPrefix(st.Snapshot.Name, "maintenance_mode_") {
				t.Fatalf("node status during maintenance: %+v", st)
			}

			c.MustDo(leader, "POST", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_off", target), map[string]any{}, http.StatusOK)
			if a := waitAction(t, c, target, "maintenance_off", 30*time.Second); a.Status != "completed" {
				t.Fatalf("maintenance_off ended %+v", a)
			}
			after := placementOf(t, c, leader)
			for id, where := range before {
				if after[id] != where {
					t.Errorf("shard %s was %s before maintenance, %s after", id, where, after[id])
				}
			}
			var bsAfter []bdb
			c.MustDo(leader, "GET", "/v1/bdbs", nil, http.StatusOK).JSON(t, &bsAfter)
			if bsBefore[0].Endpoints[0].NodeUID != bsAfter[0].Endpoints[0].NodeUID {
				t.Errorf("endpoint on node %s before, %s after", bsBefore[0].Endpoints[0].NodeUID, bsAfter[0].Endpoints[0].NodeUID)
			}
			var snaps []any
			c.MustDo(leader, "GET", fmt.Sprintf("/v1/nodes/%d/snapshots", target), nil, http.StatusOK).JSON(t, &snaps)
			if len(snaps) != 0 {
				t.Errorf("snapshot left after maintenance_off: %v", snaps)
			}
			expectFiles(t, c, leader, true)
		})
	}
}

func TestAction_RemoveFollowerThenLeader(t *testing.T) {
	c := clustertest.Start(t, 4, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	createDemo(t, c, leader, 4)
	for round, pick := range []string{"follower", "leader"} {
		leader = c.Leader(10 * time.Second)
		target := followers(c, leader)[0]
		if pick == "leader" {
			target = leader
		}
		via := followers(c, target)[0]
		r := c.MustDo(via, "POST", fmt.Sprintf("/v1/nodes/%d/actions/remove", target), map[string]bool{"wait_for_persistence": true}, http.StatusOK)
		var a actionObj
		r.JSON(t, &a)
		if a.Name != "remove_node" || a.Action != "remove" || a.Status != "queued" || a.TaskID == "" || a.NodeUID != strconv.Itoa(target) {
			t.Fatalf("POST answered %s", r.Body)
		}
		var survivors []int
		for _, u := range c.Running() {
			if u != target {
				survivors = append(survivors, u)
			}
		}
		clustertest.Eventually(t, 30*time.Second, func() error {
			rr, err := c.Do(survivors[0], "GET", fmt.Sprintf("/v1/nodes/%d/actions/remove", target), nil)
			if err != nil {
				return err
			}
			var got actionObj
			if err := jsonUnmarshal(rr.Body, &got); err != nil {
				return err
			}
			if got.Status != "completed" {
				return fmt.Errorf("remove is %s (%s)", got.Status, rr.Body)
			}
			return nil
		})
		var nodes []node
		c.MustDo(survivors[0], "GET", "/v1/nodes", nil, http.StatusOK).JSON(t, &nodes)
		if len(nodes) != 3-round {
			t.Fatalf("after removing node %d, /v1/nodes lists %v", target, nodes)
		}
		for _, n := range nodes {
			if n.UID == target {
				t.Fatalf("removed node %d still listed", target)
			}
		}
		c.MustDo(survivors[0], "GET", fmt.Sprintf("/v1/nodes/%d", target), nil, http.StatusNotFound)
		var cl struct {
			Members []struct {
				UID int `json:"uid"`
			} `json:"members"`
		}
		c.MustDo(survivors[0], "GET", "/v1/cluster", nil, http.StatusOK).JSON(t, &cl)
		if len(cl.Members) != len(survivors) {
			t.Fatalf("raft members after removing node %d: %+v", target, cl.Members)
		}
		for _, m := range cl.Members {
			if m.UID == target {
				t.Fatalf("removed node %d is still a raft member", target)
			}
		}
		c.MustDo(survivors[0], "POST", fmt.Sprintf("/v1/nodes/%d/actions/remove", target), nil, http.StatusNotFound)
		for id, where := range placementOf(t, c, survivors[0]) {
			if where[:len(strconv.Itoa(target))+1] == strconv.Itoa(target)+"/" {
				t.Fatalf("shard %s still on removed node %d", id, target)
			}
		}
		checkInvariants(t, c, survivors[0])
		clustertest.Eventually(t, 10*time.Second, func() error {
			rr, err := c.Do(target, "GET", "/v1/nodes", nil)
			if err != nil {
				return nil // the node may be gone altogether
			}
			if rr.Status != http.StatusServiceUnavailable || rr.ErrorCode() != "not_a_member" {
				return fmt.Errorf("removed node answers %d %s", rr.Status, rr.Body)
			}
			return nil
		})
		c.Kill(target)
		if got, _ := filesOn(c, target); len(got) != 0 {
			t.Fatalf("removed node %d keeps shard files %v", target, got)
		}
		expectFiles(t, c, survivors[0], true)
	}
}

func TestAction_EnslaveNodeDemotesMastersAndMovesEndpoints(t *testing.T) {
	for _, n := range []int{3, 4} {
		t.Run(fmt.Sprintf("%d_nodes", n), func(t *testing.T) { testEnslave(t, n) })
	}
}

func testEnslave(t *testing.T, n int) {
	c := clustertest.Start(t, n, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	createDemo(t, c, leader, 6)
	c.MustDo(leader, "POST", fmt.Sprintf("/v1/nodes/%d/actions/enslave_node", leader), nil, http.StatusOK)
	a := waitAction(t, c, leader, "enslave_node", 30*time.Second)
	if a.Status != "completed" {
		t.Fatalf("enslave_node ended %+v", a)
	}
	for id, where := range placementOf(t, c, c.Running()[0]) {
		if where == strconv.Itoa(leader)+"/master" {
			t.Fatalf("shard %s is still a master on node %d", id, leader)
		}
	}
	var bs []bdb
	c.MustDo(c.Running()[0], "GET", "/v1/bdbs", nil, http.StatusOK).JSON(t, &bs)
	if bs[0].Endpoints[0].NodeUID == strconv.Itoa(leader) {
		t.Fatal("endpoint still on the enslaved node")
	}
	if now := c.Leader(10 * time.Second); now == leader {
		t.Fatalf("node %d still leads after enslave_node", leader)
	}
	checkInvariants(t, c, c.Running()[0])
	expectFiles(t, c, c.Running()[0], true)
}

// slow returns options under which every shard copy takes about a second.
func slow() clustertest.Options {
	return clustertest.Options{ShardFileScale: 1.0 / 4096, MigrationRate: 256 << 10}
}

func TestAction_ConcurrentPostsThroughEveryNodeGetExactlyOne200(t *testing.T) {
	c := clustertest.Start(t, 3, slow())
	leader := c.Leader(10 * time.Second)
	createDemo(t, c, leader, 4)
	target := followers(c, leader)[0]
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			via := c.UIDs()[i%3]
			r, err := c.Do(via, "POST", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_on", target), nil)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				codes[-1]++
				return
			}
			codes[r.Status]++
			if r.Status != http.StatusOK && r.Status != http.StatusConflict {
				t.Logf("via node %d: %d %s", via, r.Status, r.Body)
			}
			if r.Status == http.StatusConflict && r.ErrorCode() != "action_in_progress" {
				t.Errorf("409 with %s", r.Body)
			}
		}()
	}
	wg.Wait()
	if codes[http.StatusOK] != 1 || codes[http.StatusConflict] != 19 {
		t.Fatalf("answers by status: %v, want one 200 and nineteen 409", codes)
	}
	waitAction(t, c, target, "maintenance_on", 60*time.Second)
}

func TestAction_CancelWhileRunningLeavesAConsistentState(t *testing.T) {
	c := clustertest.Start(t, 3, slow())
	leader := c.Leader(10 * time.Second)
	createDemo(t, c, leader, 6)
	target := followers(c, leader)[0]
	c.MustDo(leader, "POST", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_on", target), nil, http.StatusOK)
	clustertest.Eventually(t, 20*time.Second, func() error {
		var a actionObj
		r, err := c.Do(leader, "GET", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_on", target), nil)
		if err != nil {
			return err
		}
		_ = jsonUnmarshal(r.Body, &a)
		if a.Status != "running" || a.Progress == 0 {
			return fmt.Errorf("action is %s at %.0f%%", a.Status, a.Progress)
		}
		return nil
	})
	r := c.MustDo(followers(c, leader)[1], "DELETE", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_on", target), nil, http.StatusOK)
	var mid actionObj
	r.JSON(t, &mid)
	if mid.Status != "cancelling" && mid.Status != "cancelled" {
		t.Fatalf("DELETE answered %s", r.Body)
	}
	a := waitAction(t, c, target, "maintenance_on", 30*time.Second)
	if a.Status != "cancelled" || a.Progress >= 100 {
		t.Fatalf("cancelled action ended %+v", a)
	}
	checkInvariants(t, c, leader)
	expectFiles(t, c, leader, false)
	// A terminal record is forgotten by DELETE, then 404.
	c.MustDo(leader, "DELETE", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_on", target), nil, http.StatusOK)
	c.MustDo(leader, "GET", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_on", target), nil, http.StatusNotFound)
	c.MustDo(leader, "DELETE", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_on", target), nil, http.StatusNotFound)
}

func TestAction_LeaderKilledMidAction_NewLeaderCompletesIt(t *testing.T) {
	for _, onLeader := range []bool{false, true} {
		t.Run(fmt.Sprintf("target_is_leader=%v", onLeader), func(t *testing.T) {
			// Four nodes, so that a move planned to the killed leader finds
			// another home.
			c := clustertest.Start(t, 4, slow())
			leader := c.Leader(10 * time.Second)
			createDemo(t, c, leader, 6)
			target := followers(c, leader)[0]
			if onLeader {
				target = leader
			}
			c.MustDo(followers(c, leader)[1], "POST", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_on", target), nil, http.StatusOK)
			clustertest.Eventually(t, 20*time.Second, func() error {
				var a actionObj
				r, err := c.Do(leader, "GET", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_on", target), nil)
				if err != nil {
					return err
				}
				_ = jsonUnmarshal(r.Body, &a)
				if a.Status != "running" || a.Progress < 30 {
					return fmt.Errorf("action is %s at %.0f%%", a.Status, a.Progress)
				}
				return nil
			})
			c.Kill(leader)
			newLeader := c.Leader(10*time.Second, c.Running()...)
			if onLeader {
				// The target's shards live on the killed node: bring it back.
				c.StartNode(leader)
			}
			a := waitAction(t, c, target, "maintenance_on", 60*time.Second)
			if a.Status != "completed" {
				t.Fatalf("action ended %+v", a)
			}
			resumed, steps := false, map[string]int{}
			for _, e := range a.Additional.Events {
				if len(e.Message) > 7 && e.Message[:7] == "resumed" {
					resumed = true
				}
				if len(e.Message) > 5 && e.Message[:5] == "step " {
					steps[e.Message]++
				}
			}
			if !resumed {
				t.Fatalf("no resume event after the leader died (new leader %d): %+v", newLeader, a.Additional.Events)
			}
			for m, n := range steps {
				if n > 1 {
					t.Fatalf("step committed %d times: %s", n, m)
				}
			}
			checkInvariants(t, c, newLeader)
			expectFiles(t, c, newLeader, false)
			// No step was carried out by two leaders, and no shard was
			// copied twice (agents log every copy with task, step, term).
			terms := map[string]map[uint64]bool{}
			copies := map[string]int{}
			for _, uid := range c.Running() {
				for _, op := range c.Member(uid).Node.Agent().Ops() {
					k := fmt.Sprintf("%s/%d", op.TaskID, op.Step)
					if terms[k] == nil {
						terms[k] = map[uint64]bool{}
					}
					terms[k][op.Term] = true
					copies[op.Shard]++
				}
			}
			for k, ts := range terms {
				if len(ts) > 1 {
					t.Fatalf("step %s was carried out under terms %v", k, ts)
				}
			}
			for sh, n := range copies {
				if n > 1 {
					t.Fatalf("shard %s was copied %d times", sh, n)
				}
			}
			if len(copies) == 0 {
				t.Fatal("the agents logged no copy; the check proves nothing")
			}
		})
	}
}
