package clustertest_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"cnm/daemon/clustertest"
)

type bootstrapStatus struct {
	Status struct {
		State        string `json:"state"`
		ErrorCode    string `json:"error_code"`
		ErrorMessage string `json:"error_message"`
	} `json:"bootstrap_status"`
	Local struct {
		UID int `json:"uid"`
	} `json:"local_node_info"`
}

func setupState(t *testing.T, c *clustertest.Cluster, uid int) (bootstrapStatus, error) {
	t.Helper()
	var st bootstrapStatus
	// Credentials are ignored before setup and needed after it.
	r, err := c.Do(uid, "GET", "/v1/bootstrap", nil)
	if err != nil {
		return st, err
	}
	if r.Status != http.StatusOK {
		return st, fmt.Errorf("GET /v1/bootstrap on node %d: %d %s", uid, r.Status, r.Body)
	}
	r.JSON(t, &st)
	return st, nil
}

func credentials(password string) map[string]any {
	return map[string]any{"username": clustertest.AdminUser, "password": password}
}

// A node started with neither --bootstrap nor --join is set up entirely
// over REST: bad requests change nothing, a failed join is reported and
// can be retried, and the result is an ordinary cluster.
func TestSetupOverREST_CreatesAndJoinsACluster(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{Idle: true})
	for _, uid := range c.UIDs() {
		clustertest.Eventually(t, 10*time.Second, func() error {
			st, err := setupState(t, c, uid)
			if err == nil && (st.Status.State != "idle" || st.Local.UID != uid) {
				err = fmt.Errorf("node %d before setup: %+v", uid, st)
			}
			return err
		})
	}

	// Before setup: the rest of the API says so, with the same error shape.
	r, err := c.DoAs(1, "", "", "GET", "/v1/nodes", nil)
	if err != nil || r.Status != http.StatusServiceUnavailable || r.ErrorCode() != "not_bootstrapped" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("GET /v1/nodes before setup: %v %d %s", err, r.Status, r.Body)
	}
	bad := []struct {
		path string
		body any
		code string
		want int
	}{
		{"/v1/bootstrap/create_cluster", map[string]any{}, "invalid_parameter", 400},
		{"/v1/bootstrap/create_cluster", map[string]any{"credentials": map[string]any{"username": "not-an-email", "password": "pw"}}, "invalid_parameter", 400},
		{"/v1/bootstrap/create_cluster", map[string]any{"action": "join_cluster", "credentials": credentials("pw")}, "invalid_parameter", 400},
		{"/v1/bootstrap/create_cluster", map[string]any{"credentials": credentials("pw"), "license": "x"}, "invalid_parameter", 400},
		{"/v1/bootstrap/join_cluster", map[string]any{"credentials": credentials("pw")}, "invalid_parameter", 400},
		{"/v1/bootstrap/join_cluster", map[string]any{"cluster": map[string]any{"nodes": []string{"ftp://x"}}, "credentials": credentials("pw")}, "invalid_parameter", 400},
		{"/v1/bootstrap/recover_cluster", map[string]any{}, "unsupported_action", 404},
	}
	for _, b := range bad {
		r, err := c.DoAs(1, "", "", "POST", b.path, b.body)
		if err != nil || r.Status != b.want || r.ErrorCode() != b.code {
			t.Errorf("POST %s %v: %v %d %s, want %d %s", b.path, b.body, err, r.Status, r.Body, b.want, b.code)
		}
	}
	if st, err := setupState(t, c, 1); err != nil || st.Status.State != "idle" {
		t.Fatalf("after refused setup requests node 1 is %+v (%v), want idle", st, err)
	}

	// Node 1 creates the cluster; the full API then answers on the same port.
	c1 := "https://" + c.Member(1).Cfg.APIAddr
	r, err = c.DoAs(1, "", "", "POST", "/v1/bootstrap/create_cluster",
		map[string]any{"action": "create_cluster", "cluster": map[string]any{"name": "rest-made"}, "credentials": credentials(clustertest.AdminPassword)})
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("create_cluster: %v %d %s", err, r.Status, r.Body)
	}
	c.AwaitSetup(1, 30*time.Second)
	clustertest.Eventually(t, 10*time.Second, func() error {
		st, err := setupState(t, c, 1)
		if err == nil && st.Status.State != "completed" {
			err = fmt.Errorf("node 1 after create_cluster: %+v", st)
		}
		return err
	})

	// Node 2 joins with a wrong password: reported, and node 2 stays idle
	// and can be asked again.
	r, err = c.DoAs(2, "", "", "POST", "/v1/bootstrap/join_cluster",
		map[string]any{"cluster": map[string]any{"nodes": []string{c1}}, "credentials": credentials("wrong-password")})
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("join_cluster: %v %d %s", err, r.Status, r.Body)
	}
	clustertest.Eventually(t, 30*time.Second, func() error {
		st, err := setupState(t, c, 2)
		if err == nil && (st.Status.State != "error" || st.Status.ErrorMessage == "") {
			err = fmt.Errorf("node 2 after a join with a wrong password: %+v", st)
		}
		return err
	})
	for _, uid := range []int{2, 3} {
		// Node 3 names node 1 by host:port only.
		addr := c1
		if uid == 3 {
			addr = c.Member(1).Cfg.APIAddr
		}
		r, err = c.DoAs(uid, "", "", "POST", "/v1/bootstrap/join_cluster",
			map[string]any{"cluster": map[string]any{"nodes": []string{addr}}, "credentials": credentials(clustertest.AdminPassword)})
		if err != nil || r.Status != http.StatusOK {
			t.Fatalf("join_cluster on node %d: %v %d %s", uid, err, r.Status, r.Body)
		}
		c.AwaitSetup(uid, 60*time.Second)
	}

	// An ordinary cluster: every node lists all three, under the REST-given
	// name, and a restarted node resumes from its data dir.
	for _, uid := range c.UIDs() {
		var nodes []node
		c.MustDo(uid, "GET", "/v1/nodes", nil, http.StatusOK).JSON(t, &nodes)
		if len(nodes) != 3 {
			t.Fatalf("node %d lists %d nodes, want 3", uid, len(nodes))
		}
		var cl struct {
			Name string `json:"name"`
		}
		c.MustDo(uid, "GET", "/v1/cluster", nil, http.StatusOK).JSON(t, &cl)
		if cl.Name != "rest-made" {
			t.Fatalf("node %d names the cluster %q", uid, cl.Name)
		}
	}
	c.Close(2)
	c.StartNode(2)
	c.MustDo(2, "POST", "/v1/users", map[string]any{"email": "after@cnm.local", "password": "pw-after", "role": "db_viewer"}, http.StatusOK)
}
