package clustertest_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cnm/daemon"
	"cnm/daemon/clustertest"
)

// A node removed while cut off never receives the configuration change
// that removes it, and raft will never tell it: once it can reach the
// others again, it asks the leader, learns it was removed, and says so.
func TestMembership_NodeRemovedWhileCutOffLearnsItFromTheLeader(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	victim := 3
	if leader == victim {
		victim = 2
	}
	var others []int
	for _, u := range c.UIDs() {
		if u != victim {
			others = append(others, u)
		}
	}
	c.Partition([]int{victim}, others)
	// The leader must see it down first, or the quorum pre-check refuses.
	clustertest.Eventually(t, 20*time.Second, func() error {
		var n node
		r, err := c.Do(leader, "GET", fmt.Sprintf("/v1/nodes/%d", victim), nil)
		if err != nil {
			return err
		}
		r.JSON(t, &n)
		if n.Status != "down" {
			return fmt.Errorf("node %d is %s", victim, n.Status)
		}
		return nil
	})
	c.MustDo(leader, "POST", fmt.Sprintf("/v1/nodes/%d/actions/remove", victim), nil, http.StatusOK)
	var running []int
	for _, u := range c.Running() {
		if u != victim {
			running = append(running, u)
		}
	}
	if a := waitActionOn(t, c, running, victim, "remove", 30*time.Second); a.Status != "completed" {
		t.Fatalf("remove of cut-off node %d: %s", victim, a.Status)
	}

	c.Heal()
	select {
	case <-c.Member(victim).Node.Removed():
	case <-time.After(30 * time.Second):
		t.Fatalf("node %d, removed while cut off, did not learn it within 30 s of the partition healing", victim)
	}
	r, err := c.Do(victim, "GET", "/v1/cluster", nil)
	if err != nil || r.Status != http.StatusServiceUnavailable || r.ErrorCode() != "not_a_member" {
		t.Fatalf("removed node %d answers %v %d %s, want 503 not_a_member", victim, err, r.Status, r.Body)
	}
}

// A node removed moments after it joined (again, under the same uid) may
// be gone from the configuration before it ever saw itself in it; it must
// still learn that it was removed.
func TestMembership_NodeRemovedRightAfterJoiningLearnsIt(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	victim := 3
	if leader == victim {
		victim = 2
	}
	via := 6 - leader - victim // the third node
	for round := range 2 {
		if round == 1 {
			// Back afresh, as an operator re-adding the machine would.
			c.Kill(victim)
			if err := os.RemoveAll(c.Member(victim).Cfg.DataDir); err != nil {
				t.Fatal(err)
			}
			c.StartNode(victim)
		}
		c.MustDo(via, "POST", fmt.Sprintf("/v1/nodes/%d/actions/remove", victim), nil, http.StatusOK)
		if a := waitActionOn(t, c, []int{via, leader}, victim, "remove", 30*time.Second); a.Status != "completed" {
			t.Fatalf("round %d: remove of node %d: %s", round, victim, a.Status)
		}
		select {
		case <-c.Member(victim).Node.Removed():
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: node %d did not learn within 20 s that it was removed", round, victim)
		}
	}
}

// A node restarted after its removal starts from its last snapshot and
// hears from no leader, so its state may name no one to ask: the peers it
// remembered in its data dir tell it.
func TestMembership_NodeRestartedAfterItsRemovalLeaves(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	victim := 3
	if leader == victim {
		victim = 2
	}
	via := 6 - leader - victim
	c.MustDo(via, "POST", fmt.Sprintf("/v1/nodes/%d/actions/remove", victim), nil, http.StatusOK)
	if a := waitActionOn(t, c, []int{via, leader}, victim, "remove", 30*time.Second); a.Status != "completed" {
		t.Fatalf("remove of node %d: %s", victim, a.Status)
	}
	c.Kill(victim)
	c.StartNode(victim)
	select {
	case <-c.Member(victim).Node.Removed():
	case <-time.After(20 * time.Second):
		t.Fatalf("node %d, restarted after its removal, did not learn within 20 s that it was removed", victim)
	}
}

// A node whose data dir was wiped lost the raft history it voted with: it
// must not rejoin as the same voter. Its join is refused, saying to
// remove the node first, and the cluster keeps it as it was.
func TestMembership_NodeWithAWipedDataDirIsRefusedUntilRemoved(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	victim := 3
	if leader == victim {
		victim = 2
	}
	c.Kill(victim)
	cfg := c.Member(victim).Cfg
	if err := os.RemoveAll(cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := daemon.Start(ctx, cfg)
	if err == nil {
		n.Kill()
		t.Fatalf("node %d rejoined with a wiped data dir", victim)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("remove node %d first", victim)) {
		t.Fatalf("refused rejoin says %q, want it to say to remove node %d first", err, victim)
	}
	var cl struct {
		Members []struct {
			UID      int    `json:"uid"`
			Suffrage string `json:"suffrage"`
		} `json:"members"`
	}
	c.MustDo(leader, "GET", "/v1/cluster", nil, http.StatusOK).JSON(t, &cl)
	voters := 0
	for _, s := range cl.Members {
		if s.Suffrage == "voter" {
			voters++
		}
	}
	if voters != 3 {
		t.Fatalf("after the refused rejoin the cluster has %d voters, want 3: %+v", voters, cl.Members)
	}
}

// TestJoin_ARestartBetweenTheJoinStepsFinishesTheJoin: a node stopped after
// the first step of its join (still a non-voter) finishes the join when it
// starts again, and without credentials says it cannot.
func TestJoin_ARestartBetweenTheJoinStepsFinishesTheJoin(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	target := followers(c, leader)[0]
	c.Kill(target)
	m := c.Member(target)
	marker := filepath.Join(m.Cfg.DataDir, "join-pending")
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	noCreds := m.Cfg
	noCreds.AdminUser, noCreds.AdminPassword = "", ""
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if n, err := daemon.Start(ctx, noCreds); err == nil {
		n.Kill()
		t.Fatal("a node whose join did not finish started without the credentials to finish it")
	} else if !strings.Contains(err.Error(), "did not finish") {
		t.Errorf("refusal %q does not say the join did not finish", err)
	}
	c.StartNode(target)
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("the join marker is still there after the join finished: %v", err)
	}
	clustertest.Eventually(t, 20*time.Second, func() error {
		servers, err := c.Member(leader).Node.Raft().Servers()
		if err != nil {
			return err
		}
		for _, s := range servers {
			if s.UID == target && s.Voter {
				return nil
			}
		}
		return fmt.Errorf("node %d is not a voter: %+v", target, servers)
	})
}
