package clustertest_test

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cnm/daemon/clustertest"
)

type user struct {
	UID   int    `json:"uid"`
	Email string `json:"email"`
	Role  string `json:"role"`
}

type node struct {
	UID    int    `json:"uid"`
	Status string `json:"status"`
}

func newUser(i int) map[string]string {
	return map[string]string{"email": fmt.Sprintf("user%d@cnm.local", i), "password": "pw-" + strconv.Itoa(i), "role": "db_viewer"}
}

func followers(c *clustertest.Cluster, leader int) []int {
	var out []int
	for _, uid := range c.Running() {
		if uid != leader {
			out = append(out, uid)
		}
	}
	return out
}

func TestCluster_ThreeNodesJoinAsActiveVoters(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	c.Leader(10 * time.Second)
	for _, uid := range c.UIDs() {
		var nodes []node
		c.MustDo(uid, "GET", "/v1/nodes", nil, http.StatusOK).JSON(t, &nodes)
		if len(nodes) != 3 {
			t.Fatalf("node %d lists %d nodes, want 3: %+v", uid, len(nodes), nodes)
		}
		for i, n := range nodes {
			if n.UID != i+1 || n.Status != "active" {
				t.Errorf("node %d lists %+v at position %d, want uid %d active", uid, n, i, i+1)
			}
		}
		var cl struct {
			Leader  int `json:"leader"`
			Members []struct {
				UID      int    `json:"uid"`
				Suffrage string `json:"suffrage"`
				APIAddr  string `json:"api_addr"`
			} `json:"members"`
		}
		c.MustDo(uid, "GET", "/v1/cluster", nil, http.StatusOK).JSON(t, &cl)
		if len(cl.Members) != 3 {
			t.Fatalf("node %d: raft configuration has %d members, want 3", uid, len(cl.Members))
		}
		for _, m := range cl.Members {
			if m.Suffrage != "voter" || m.APIAddr != c.Member(m.UID).Cfg.APIAddr {
				t.Errorf("node %d: member %+v, want a voter at %s", uid, m, c.Member(m.UID).Cfg.APIAddr)
			}
		}
	}
}

// A write acknowledged by any node is seen by a default read on every node
// issued right after the acknowledgement.
func TestCluster_AcknowledgedWriteIsVisibleEverywhereAtOnce(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	fs := followers(c, leader)
	for i := range 120 {
		via := fs[i%len(fs)]
		if i%4 == 3 {
			via = leader
		}
		var u user
		c.MustDo(via, "POST", "/v1/users", newUser(i), http.StatusOK).JSON(t, &u)
		for _, uid := range c.UIDs() {
			r := c.MustDo(uid, "GET", "/v1/users/"+strconv.Itoa(u.UID), nil, http.StatusOK)
			var got user
			r.JSON(t, &got)
			if got.Email != u.Email {
				t.Fatalf("write %d via node %d: node %d reads %+v, want %+v", i, via, uid, got, u)
			}
			if r.Header.Get("X-Cnm-Index") == "" || r.Header.Get("X-Cnm-Leader") != strconv.Itoa(leader) {
				t.Fatalf("node %d: headers X-Cnm-Index %q X-Cnm-Leader %q", uid, r.Header.Get("X-Cnm-Index"), r.Header.Get("X-Cnm-Leader"))
			}
		}
	}
}

func TestCluster_LeaderKilled_NewLeaderTakesWritesThroughEverySurvivor(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	old := c.Leader(10 * time.Second)
	c.MustDo(old, "POST", "/v1/users", newUser(0), http.StatusOK)
	c.Kill(old)
	survivors := c.Running()
	leader := c.Leader(10*time.Second, survivors...)
	if leader == old {
		t.Fatalf("killed leader %d still leads", old)
	}
	for i, uid := range survivors {
		c.MustDo(uid, "POST", "/v1/users", newUser(i+1), http.StatusOK)
	}
	for _, uid := range survivors {
		var us []user
		c.MustDo(uid, "GET", "/v1/users", nil, http.StatusOK).JSON(t, &us)
		if len(us) != 1+1+len(survivors) {
			t.Fatalf("node %d lists %d users, want %d", uid, len(us), 2+len(survivors))
		}
	}
}

func TestCluster_RestartedNodeCatchesUpFromItsDataDir(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	victim := followers(c, leader)[0]
	c.Kill(victim)
	for i := range 20 {
		c.MustDo(leader, "POST", "/v1/users", newUser(i), http.StatusOK)
	}
	c.StartNode(victim)
	var us []user
	c.MustDo(victim, "GET", "/v1/users", nil, http.StatusOK).JSON(t, &us)
	if len(us) != 21 {
		t.Fatalf("restarted node %d lists %d users after a default read, want 21", victim, len(us))
	}
	clustertest.Eventually(t, 10*time.Second, func() error {
		return stateOf(c, victim, 21)
	})
}

// stateOf checks node uid's local (stale) view holds want users.
func stateOf(c *clustertest.Cluster, uid, want int) error {
	r, err := c.Do(uid, "GET", "/v1/users?stale=true", nil)
	if err != nil {
		return err
	}
	if r.Status != http.StatusOK {
		return fmt.Errorf("node %d: status %d", uid, r.Status)
	}
	var us []user
	if err := jsonUnmarshal(r.Body, &us); err != nil {
		return err
	}
	if len(us) != want {
		return fmt.Errorf("node %d has %d users, want %d", uid, len(us), want)
	}
	return nil
}

func TestCluster_FullRestartKeepsEveryAcknowledgedUser(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	c.Leader(10 * time.Second)
	var created []string
	for i := range 15 {
		via := c.UIDs()[i%3]
		var u user
		c.MustDo(via, "POST", "/v1/users", newUser(i), http.StatusOK).JSON(t, &u)
		created = append(created, u.Email)
	}
	for _, uid := range c.UIDs() {
		c.Kill(uid)
	}
	for _, uid := range c.UIDs() {
		c.StartNode(uid)
	}
	c.Leader(10 * time.Second)
	for _, uid := range c.UIDs() {
		var us []user
		c.MustDo(uid, "GET", "/v1/users", nil, http.StatusOK).JSON(t, &us)
		var emails []string
		for _, u := range us {
			emails = append(emails, u.Email)
		}
		for _, e := range created {
			if !slices.Contains(emails, e) {
				t.Fatalf("node %d lost acknowledged user %s after a full restart: %v", uid, e, emails)
			}
		}
	}
}

func TestCluster_MinorityGetsNoQuorumWhileMajorityWorks(t *testing.T) {
	for _, isolateLeader := range []bool{true, false} {
		t.Run(fmt.Sprintf("isolate_leader=%v", isolateLeader), func(t *testing.T) {
			c := clustertest.Start(t, 3, clustertest.Options{})
			leader := c.Leader(10 * time.Second)
			minority := followers(c, leader)[0]
			if isolateLeader {
				minority = leader
			}
			var majority []int
			for _, uid := range c.UIDs() {
				if uid != minority {
					majority = append(majority, uid)
				}
			}
			c.Partition([]int{minority}, majority)
			newLeader := c.Leader(10*time.Second, majority...)

			for _, uid := range majority {
				c.MustDo(uid, "POST", "/v1/users", newUser(uid), http.StatusOK)
			}
			for _, req := range []struct{ method, path string }{{"POST", "/v1/users"}, {"GET", "/v1/users"}} {
				var body any
				if req.method == "POST" {
					body = newUser(100)
				}
				r, err := c.Do(minority, req.method, req.path, body)
				if err != nil {
					t.Fatal(err)
				}
				if r.Status != http.StatusServiceUnavailable || r.ErrorCode() != "no_quorum" || r.Header.Get("Retry-After") == "" {
					t.Fatalf("%s %s on minority node %d: %d %s (Retry-After %q), want 503 no_quorum",
						req.method, req.path, minority, r.Status, r.Body, r.Header.Get("Retry-After"))
				}
			}
			// Stale reads still answer from the minority's own state.
			c.MustDo(minority, "GET", "/v1/users?stale=true", nil, http.StatusOK)

			c.Heal()
			c.Leader(10*time.Second, c.UIDs()...)
			var us []user
			c.MustDo(minority, "GET", "/v1/users", nil, http.StatusOK).JSON(t, &us)
			if len(us) != 1+len(majority) {
				t.Fatalf("healed node %d lists %d users, want %d (leader was %d, then %d)", minority, len(us), 1+len(majority), leader, newLeader)
			}
			for _, u := range us {
				if u.Email == newUser(100)["email"] {
					t.Fatalf("a write refused with 503 on the minority was applied: %+v", u)
				}
			}
		})
	}
}

func TestCluster_GracefulLeaderShutdownHandsOverLeadership(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	old := c.Leader(10 * time.Second)
	// A client watching with a long blocking read must not hold the
	// shutdown up: it gets its answer, and Close (15 s) reports no error.
	var index struct {
		Applied uint64 `json:"applied_index"`
	}
	c.MustDo(old, "GET", "/v1/cluster", nil, http.StatusOK).JSON(t, &index)
	watch := make(chan error, 1)
	go func() {
		r, err := c.Do(old, "GET", fmt.Sprintf("/v1/nodes?index=%d&wait=60s", index.Applied+1000), nil)
		if err == nil && r.Status != http.StatusOK {
			err = fmt.Errorf("blocking read during shutdown: %d %s", r.Status, r.Body)
		}
		watch <- err
	}()
	clustertest.Eventually(t, 10*time.Second, func() error {
		r, err := c.Do(old, "GET", "/metrics", nil)
		if err != nil {
			return err
		}
		if !strings.Contains(string(r.Body), "\ncnm_http_blocking_reads 1\n") {
			return errors.New("the blocking read is not waiting yet")
		}
		return nil
	})
	c.Close(old) // reports an error (failing the test) if the read held it up
	select {
	case err := <-watch:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking read got no answer when its node shut down")
	}
	leader := c.Leader(5*time.Second, c.Running()...)
	c.MustDo(leader, "POST", "/v1/users", newUser(1), http.StatusOK)
	c.StartNode(old)
	clustertest.Eventually(t, 10*time.Second, func() error { return stateOf(c, old, 2) })
	if l := c.Leader(5 * time.Second); l == 0 {
		t.Fatal("no leader after the node came back")
	}
}

// A follower that missed more entries than the leader keeps in its log
// catches up from a snapshot, and the log really is truncated.
func TestCluster_SnapshotTruncatesLogAndCatchesUpLaggingNode(t *testing.T) {
	opts := clustertest.Options{}
	opts.Raft.TrailingLogs = 5
	c := clustertest.Start(t, 3, opts)
	leader := c.Leader(10 * time.Second)
	victim := followers(c, leader)[0]
	c.Kill(victim)
	for i := range 40 {
		c.MustDo(leader, "POST", "/v1/users", newUser(i), http.StatusOK)
	}
	r := c.Member(leader).Node.Raft()
	if err := r.Snapshot(); err != nil {
		t.Fatal(err)
	}
	_, last := r.Indexes()
	first, err := r.FirstLogIndex()
	if err != nil {
		t.Fatal(err)
	}
	if first <= last-10 {
		t.Fatalf("after a snapshot the log still starts at %d of %d (trailing logs 5)", first, last)
	}
	c.StartNode(victim)
	clustertest.Eventually(t, 15*time.Second, func() error { return stateOf(c, victim, 41) })
}
