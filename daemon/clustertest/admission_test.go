package clustertest_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"cnm/daemon/clustertest"
)

// inMaintenance lists the nodes that /v1/nodes/status shows in maintenance.
func inMaintenance(t *testing.T, c *clustertest.Cluster, via int) []string {
	t.Helper()
	var st map[string]struct {
		Maintenance bool `json:"maintenance"`
	}
	c.MustDo(via, "GET", "/v1/nodes/status", nil, http.StatusOK).JSON(t, &st)
	var out []string
	for uid, n := range st {
		if n.Maintenance {
			out = append(out, uid)
		}
	}
	return out
}

// Of concurrent maintenance_on for two different nodes of a 3-node cluster,
// sent through every node, exactly one is admitted: the other would leave 1
// of 3 voters (SPEC §3.2). Two nodes are never in maintenance at once.
func TestAdmission_ConcurrentMaintenanceOnTwoNodesAdmitsExactlyOne(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	createDemo(t, c, leader, 2)
	targets := followers(c, leader)
	const rounds, perNode = 20, 5
	for round := range rounds {
		var mu sync.Mutex
		codes := map[int]int{}
		admitted := map[int]int{}
		var wg sync.WaitGroup
		for i := range 2 * perNode {
			wg.Add(1)
			go func() {
				defer wg.Done()
				node, via := targets[i%2], c.UIDs()[i%3]
				r, err := c.Do(via, "POST", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_on", node), nil)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Errorf("round %d via node %d: %v", round, via, err)
					return
				}
				codes[r.Status]++
				switch {
				case r.Status == http.StatusOK:
					admitted[node]++
				case r.Status == http.StatusConflict && r.ErrorCode() == "action_in_progress":
				case r.Status == http.StatusNotAcceptable && r.ErrorCode() == "quorum_loss":
				default:
					t.Errorf("round %d, node %d via node %d: %d %s", round, node, via, r.Status, r.Body)
				}
			}()
		}
		wg.Wait()
		if codes[http.StatusOK] != 1 {
			t.Fatalf("round %d: answers by status %v, want exactly one 200", round, codes)
		}
		var node int
		for n := range admitted {
			node = n
		}
		a := waitAction(t, c, node, "maintenance_on", 60*time.Second)
		if a.Status != "completed" {
			t.Fatalf("round %d: maintenance_on of node %d ended %s (%s)", round, node, a.Status, a.ErrorCode)
		}
		if m := inMaintenance(t, c, c.UIDs()[round%3]); len(m) != 1 {
			t.Fatalf("round %d: nodes in maintenance %v, want only node %d", round, m, node)
		}
		c.MustDo(c.UIDs()[round%3], "POST", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_off", node), nil, http.StatusOK)
		if a := waitAction(t, c, node, "maintenance_off", 60*time.Second); a.Status != "completed" {
			t.Fatalf("round %d: maintenance_off of node %d ended %s (%s)", round, node, a.Status, a.ErrorCode)
		}
	}
	checkInvariants(t, c, leader)
}

// Sequential submissions are admitted against each other as well.
func TestAdmission_SecondMaintenanceOnAfterTheFirstIsQuorumLoss(t *testing.T) {
	c := clustertest.Start(t, 3, slow())
	leader := c.Leader(10 * time.Second)
	createDemo(t, c, leader, 4)
	f := followers(c, leader)
	c.MustDo(f[0], "POST", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_on", f[0]), nil, http.StatusOK)
	r := c.MustDo(f[1], "POST", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_on", f[1]), nil, http.StatusNotAcceptable)
	if r.ErrorCode() != "quorum_loss" {
		t.Fatalf("second maintenance_on: %s", r.Body)
	}
	a := waitAction(t, c, f[0], "maintenance_on", 60*time.Second)
	if a.Status != "completed" {
		t.Fatalf("first maintenance_on ended %s (%s)", a.Status, a.ErrorCode)
	}
	// The event names the node the client sent the request to.
	want := fmt.Sprintf("through node %d", f[0])
	if len(a.Additional.Events) == 0 || !strings.Contains(a.Additional.Events[0].Message, want) {
		t.Errorf("first event %+v, want it to say %q", a.Additional.Events, want)
	}
}

type nodeUptime struct {
	UID    int    `json:"uid"`
	Status string `json:"status"`
	Uptime *int64 `json:"uptime"`
}

func uptimeOf(c *clustertest.Cluster, via, uid int) (nodeUptime, error) {
	var n nodeUptime
	r, err := c.Do(via, "GET", fmt.Sprintf("/v1/nodes/%d", uid), nil)
	if err != nil {
		return n, err
	}
	if r.Status != http.StatusOK {
		return n, fmt.Errorf("GET /v1/nodes/%d: %d %s", uid, r.Status, r.Body)
	}
	return n, jsonUnmarshal(r.Body, &n)
}

// uptime counts from when a node's cnmd started (SPEC §5): it is absent
// while the node is down and starts again from zero when it restarts.
func TestNodes_UptimeIsSinceTheNodesCnmdStarted(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	target := followers(c, leader)[0]
	var before int64
	clustertest.Eventually(t, 30*time.Second, func() error {
		n, err := uptimeOf(c, leader, target)
		if err != nil {
			return err
		}
		if n.Uptime == nil || *n.Uptime < 8 {
			return fmt.Errorf("node %d uptime %v, waiting for 8 s", target, n.Uptime)
		}
		before = *n.Uptime
		return nil
	})
	c.Kill(target)
	clustertest.Eventually(t, 30*time.Second, func() error {
		n, err := uptimeOf(c, leader, target)
		if err != nil {
			return err
		}
		if n.Status != "down" || n.Uptime != nil {
			return fmt.Errorf("killed node %d: status %s, uptime %v; want down and no uptime", target, n.Status, n.Uptime)
		}
		return nil
	})
	c.StartNode(target)
	clustertest.Eventually(t, 30*time.Second, func() error {
		n, err := uptimeOf(c, leader, target)
		if err != nil {
			return err
		}
		if n.Status != "active" || n.Uptime == nil || *n.Uptime >= before {
			return fmt.Errorf("restarted node %d: status %s, uptime %v; want active and under %d s", target, n.Status, n.Uptime, before)
		}
		return nil
	})
}

// Every node reads every node's cores the same: recorded when it joined.
func TestNodesStatus_CoresAreTheSameFromEveryNode(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	c.Leader(10 * time.Second)
	var first map[string]struct {
		Cores int `json:"cores"`
	}
	for _, via := range c.UIDs() {
		var st map[string]struct {
			Cores int `json:"cores"`
		}
		c.MustDo(via, "GET", "/v1/nodes/status", nil, http.StatusOK).JSON(t, &st)
		for uid, n := range st {
			if n.Cores <= 0 {
				t.Errorf("via node %d: node %s has %d cores", via, uid, n.Cores)
			}
			if first != nil && first[uid].Cores != n.Cores {
				t.Errorf("node %s: %d cores via node %d, %d via node 1", uid, n.Cores, via, first[uid].Cores)
			}
		}
		if first == nil {
			first = st
		}
	}
}
