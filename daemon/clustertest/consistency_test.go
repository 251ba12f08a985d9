package clustertest_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"cnm/daemon/clustertest"
)

func indexOf(t *testing.T, r clustertest.Response) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(r.Header.Get("X-Cnm-Index"), 10, 64)
	if err != nil {
		t.Fatalf("X-Cnm-Index %q: %v", r.Header.Get("X-Cnm-Index"), err)
	}
	return n
}

func TestCluster_BlockingReadOnFollowerWakesOnWriteElsewhere(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	f := followers(c, leader)
	watcher, writer := f[0], f[1]

	idx := indexOf(t, c.MustDo(watcher, "GET", "/v1/users", nil, http.StatusOK))
	type result struct {
		r   clustertest.Response
		err error
	}
	got := make(chan result, 1)
	go func() {
		r, err := c.Do(watcher, "GET", "/v1/users?index="+strconv.FormatUint(idx, 10)+"&wait=30s", nil)
		got <- result{r, err}
	}()
	var u user
	c.MustDo(writer, "POST", "/v1/users", newUser(1), http.StatusOK).JSON(t, &u)

	var res result
	select {
	case res = <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("blocking read did not return after a write")
	}
	if res.err != nil || res.r.Status != http.StatusOK {
		t.Fatalf("blocking read: %v %d %s", res.err, res.r.Status, res.r.Body)
	}
	// The cluster's own entries (checkpoints, liveness) advance the index
	// too, and end a blocking read as any write does; so the watcher goes
	// on from each answer's index, as a client watching for a change does,
	// until the write shows. Every answer must come past the index asked.
	deadline := time.Now().Add(20 * time.Second)
	for at := idx; ; {
		after := indexOf(t, res.r)
		if after <= at {
			t.Fatalf("blocking read answered at index %d, not past %d", after, at)
		}
		var us []user
		res.r.JSON(t, &us)
		found := false
		for _, x := range us {
			found = found || x.Email == u.Email
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("blocking reads up to index %d returned %v, never the write %s", after, us, u.Email)
		}
		at = after
		r, err := c.Do(watcher, "GET", "/v1/users?index="+strconv.FormatUint(at, 10)+"&wait=30s", nil)
		if err != nil || r.Status != http.StatusOK {
			t.Fatalf("blocking read: %v %d %s", err, r.Status, r.Body)
		}
		res.r = r
	}

	// With nothing to wait for, the wait ends and the current state is served.
	cur := indexOf(t, c.MustDo(watcher, "GET", "/v1/users", nil, http.StatusOK))
	r := c.MustDo(watcher, "GET", "/v1/users?index="+strconv.FormatUint(cur+1000, 10)+"&wait=100ms", nil, http.StatusOK)
	if indexOf(t, r) < cur {
		t.Fatalf("expired blocking read answered at index %d, before %d", indexOf(t, r), cur)
	}
}

// A follower authenticates from its own state, which may lag; the write is
// still refused when the leader knows the credentials changed.
func TestCluster_WriteWithRevokedCredentialsIsRefusedEvenViaLaggingFollower(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	via := followers(c, leader)[0]
	mgr := map[string]string{"email": "mgr@cnm.local", "password": "old-password", "role": "user_manager"}
	var m user
	c.MustDo(leader, "POST", "/v1/users", mgr, http.StatusOK).JSON(t, &m)
	// Warm the follower's auth cache with the old password.
	r, err := c.DoAs(via, mgr["email"], "old-password", "GET", "/v1/users", nil)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("manager read: %v %d", err, r.Status)
	}
	c.MustDo(leader, "PUT", "/v1/users/"+strconv.Itoa(m.UID), map[string]string{"password": "new-password"}, http.StatusOK)

	r, err = c.DoAs(via, mgr["email"], "old-password", "POST", "/v1/users", newUser(7))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("write with a revoked password via follower %d: %d %s, want 401", via, r.Status, r.Body)
	}
	var us []user
	c.MustDo(leader, "GET", "/v1/users", nil, http.StatusOK).JSON(t, &us)
	for _, x := range us {
		if x.Email == newUser(7)["email"] {
			t.Fatal("a write with revoked credentials was applied")
		}
	}
	r, err = c.DoAs(via, mgr["email"], "new-password", "POST", "/v1/users", newUser(8))
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("write with the new password: %v %d %s", err, r.Status, r.Body)
	}
}

// Forwarded answers are the leader's: status, body and error shape.
func TestCluster_FollowerReturnsLeadersAnswerUnchanged(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	via := followers(c, leader)[0]
	c.MustDo(via, "POST", "/v1/users", newUser(1), http.StatusOK)
	r := c.MustDo(via, "POST", "/v1/users", newUser(1), http.StatusConflict)
	if r.ErrorCode() != "user_exists" || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("duplicate via follower: %s %q", r.Body, r.Header.Get("Content-Type"))
	}
	if r.Header.Get("X-Cnm-Leader") != strconv.Itoa(leader) {
		t.Fatalf("X-Cnm-Leader %q, want %d", r.Header.Get("X-Cnm-Leader"), leader)
	}
	c.MustDo(via, "DELETE", "/v1/users/999", nil, http.StatusNotFound)
}
