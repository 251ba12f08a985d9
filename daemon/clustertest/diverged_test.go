package clustertest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"cnm/daemon"
	"cnm/daemon/clustertest"
	"cnm/fsm"
)

// TestConsistency_ANodeWhoseStateDivergedStopsServing: a follower's state
// is changed behind raft's back (as a flipped bit in its snapshot would).
// At the next checkpoint the others' hashes outvote it: it answers 503
// state_diverged, the others keep serving, and it refuses to start on its
// data dir again.
func TestConsistency_ANodeWhoseStateDivergedStopsServing(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{CheckpointInterval: 200 * time.Millisecond, ConsistencyInterval: 200 * time.Millisecond})
	leader := c.Leader(10 * time.Second)
	c.MustDo(leader, "POST", "/v1/users", newUser(1), http.StatusOK)
	victim := followers(c, leader)[0]
	f := c.Member(victim).Node.Raft().FSM()
	clustertest.Eventually(t, 10*time.Second, func() error {
		if _, ok := f.LatestCheckpoint(); !ok {
			return fmt.Errorf("node %d has applied no checkpoint yet", victim)
		}
		has := false
		f.Read(func(st *fsm.State, _ uint64) { has = st.UserByEmail("user1@cnm.local") != nil })
		if !has {
			return fmt.Errorf("node %d has not applied the user yet", victim)
		}
		return nil
	})
	var doc bytes.Buffer
	f.Read(func(st *fsm.State, index uint64) {
		cp := st.Clone()
		for _, u := range cp.Users {
			if u.Email == "user1@cnm.local" {
				u.Email = "c" + u.Email[1:]
			}
		}
		if err := json.NewEncoder(&doc).Encode(map[string]any{"version": 1, "applied": index, "state": cp}); err != nil {
			t.Error(err)
		}
	})
	if err := f.Restore(io.NopCloser(&doc)); err != nil {
		t.Fatal(err)
	}
	c.MustDo(leader, "POST", "/v1/users", newUser(2), http.StatusOK)

	clustertest.Eventually(t, 20*time.Second, func() error {
		r, err := c.Do(victim, "GET", "/v1/users", nil)
		if err != nil {
			return err
		}
		if r.Status != http.StatusServiceUnavailable || r.ErrorCode() != "state_diverged" {
			return fmt.Errorf("node %d answers %d %s", victim, r.Status, r.Body)
		}
		return nil
	})
	for _, uid := range followers(c, victim) {
		c.MustDo(uid, "GET", "/v1/users", nil, http.StatusOK)
	}
	c.MustDo(followers(c, victim)[0], "POST", "/v1/users", newUser(3), http.StatusOK)

	c.Kill(victim)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := daemon.Start(ctx, c.Member(victim).Cfg)
	if err == nil {
		n.Kill()
		t.Fatal("the node started again on a data dir whose state diverged")
	}
	if !strings.Contains(err.Error(), "differed from the other nodes'") {
		t.Errorf("refusal %q does not say why", err)
	}
}
