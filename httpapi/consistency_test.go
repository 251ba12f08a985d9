package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"cnm/pki"
)

// shortHold is how long a request waits for a leader in the no-quorum tests.
const shortHold = 200 * time.Millisecond

func TestNoQuorum_WritesAndReadsAre503WithRetryAfterAndApplyNothing(t *testing.T) {
	_, csr, err := pki.NewKeyAndCSR(2, []string{"127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	base := newEnv(t, withHold(shortHold))
	for _, tc := range []struct{ name, method, target, body string }{
		{"create user", "POST", "/v1/users", newUserBody},
		{"update user", "PUT", "/v1/users/{uid:none}", `{"name":"x"}`},
		{"delete user", "DELETE", "/v1/users/{uid:none}", ""},
		{"join", "POST", "/v1/internal/join", `{"uid":2,"api_addr":"127.0.0.2:9443","raft_addr":"127.0.0.2:9444","csr":` + jsonString(string(csr)) + `}`},
		{"join voter", "POST", "/v1/internal/join/voter", `{"uid":1}`},
		{"list nodes", "GET", "/v1/nodes", ""},
		{"get node", "GET", "/v1/nodes/1", ""},
		{"list users", "GET", "/v1/users", ""},
		{"get user", "GET", "/v1/users/{uid:none}", ""},
		{"cluster", "GET", "/v1/cluster", ""},
		{"permissions", "GET", "/v1/users/permissions", ""},
		{"explicitly not stale", "GET", "/v1/nodes?stale=false", ""},
		{"blocking read already past its index", "GET", "/v1/nodes?index=0&wait=1m", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := base.fork(t)
			e.raft.setFollower(true)
			before, applied := e.state(), e.applied()

			w := e.call("admin", tc.method, tc.target, tc.body)

			assertError(t, e, w, http.StatusServiceUnavailable, "no_quorum")
			ra, err := strconv.Atoi(w.Header().Get("Retry-After"))
			if err != nil || ra < 1 {
				t.Errorf("Retry-After = %q, want a positive number of seconds", w.Header().Get("Retry-After"))
			}
			if l := w.Header().Get("X-Cnm-Leader"); l != "" {
				t.Errorf("X-Cnm-Leader = %q while there is no leader", l)
			}
			if !reflect.DeepEqual(e.state(), before) || e.applied() != applied {
				t.Errorf("state changed without a quorum")
			}
			if applies, voters := e.raft.calls(); applies != 0 || len(voters) != 0 {
				t.Errorf("without a leader: %d Apply calls, voters added %v; want none", applies, voters)
			}
		})
	}
}

func TestNoQuorum_ModelWritesAndReadsAre503AndApplyNothing(t *testing.T) {
	base := newModelEnv(t, withHold(shortHold))
	for _, tc := range []struct{ name, method, target, body string }{
		{"create database", "POST", "/v1/bdbs", `{"name":"nq","memory_size":1048576}`},
		{"create a database that would not fit", "POST", "/v1/bdbs", `{"name":"nq","memory_size":68719476736}`},
		{"delete database", "DELETE", "/v1/bdbs/1", ""},
		{"update node", "PUT", "/v1/nodes/1", `{"max_redis_servers":5}`},
		{"update policy", "PUT", "/v1/cluster/policy", `{"default_shards_placement":"sparse"}`},
		{"delete snapshot", "DELETE", "/v1/nodes/1/snapshots/snap-1", ""},
		{"list databases", "GET", "/v1/bdbs", ""},
		{"get database", "GET", "/v1/bdbs/1", ""},
		{"list shards", "GET", "/v1/shards", ""},
		{"get shard", "GET", "/v1/shards/1", ""},
		{"nodes status", "GET", "/v1/nodes/status", ""},
		{"node status", "GET", "/v1/nodes/2/status", ""},
		{"node snapshots", "GET", "/v1/nodes/2/snapshots", ""},
		{"policy", "GET", "/v1/cluster/policy", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := base.fork(t)
			e.raft.setFollower(true)
			before, applied := e.state(), e.applied()

			w := e.call("admin", tc.method, tc.target, tc.body)

			assertError(t, e, w, http.StatusServiceUnavailable, "no_quorum")
			if ra, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || ra < 1 {
				t.Errorf("Retry-After = %q, want a positive number of seconds", w.Header().Get("Retry-After"))
			}
			if !reflect.DeepEqual(e.state(), before) || e.applied() != applied {
				t.Errorf("state changed without a quorum")
			}
			if applies, _ := e.raft.calls(); applies != 0 {
				t.Errorf("without a leader: %d Apply calls, want none", applies)
			}
		})
	}
}

func TestNoQuorum_StaleModelReadsAnswerFromLocalState(t *testing.T) {
	e := newModelEnv(t, withHold(shortHold))
	e.raft.setFollower(true)
	for _, target := range []string{"/v1/bdbs", "/v1/bdbs/1", "/v1/shards", "/v1/shards/1", "/v1/nodes/status",
		"/v1/nodes/2/status", "/v1/nodes/2/snapshots", "/v1/cluster/policy"} {
		t.Run(target, func(t *testing.T) {
			w := e.call("db_viewer", "GET", target+"?stale=true", "")
			mustStatus(t, w, http.StatusOK)
			assertIndexHeader(t, e, w)
		})
	}
}

func TestNoQuorum_StaleReadsAnswerFromLocalState(t *testing.T) {
	e := newEnv(t, withHold(shortHold))
	e.raft.setFollower(true)
	for _, tc := range []struct {
		name, as, target string
		status           int
	}{
		{"nodes", "cluster_viewer", "/v1/nodes?stale=true", 200},
		{"node", "db_viewer", "/v1/nodes/1?stale=true", 200},
		{"users", "admin", "/v1/users?stale=1", 200},
		{"user", "user_manager", "/v1/users/{uid:none}?stale=true", 200},
		{"cluster", "admin", "/v1/cluster?stale=true", 200},
		{"permissions", "none", "/v1/users/permissions?stale=true", 200},
		{"bootstrap status needs no leader", "none", "/v1/bootstrap", 200},
		{"still forbidden", "none", "/v1/nodes?stale=true", 403},
		{"still authenticated", "", "/v1/users?stale=true", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := e.call(tc.as, "GET", tc.target, "")
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d; %s", w.Code, tc.status, w.Body)
			}
			assertIndexHeader(t, e, w)
			if l := w.Header().Get("X-Cnm-Leader"); l != "" {
				t.Errorf("X-Cnm-Leader = %q while there is no leader", l)
			}
		})
	}
	var cluster struct {
		Leader   int    `json:"leader"`
		NodeRole string `json:"node_role"`
	}
	w := e.call("admin", "GET", "/v1/cluster?stale=true", "")
	if err := jsonUnmarshal(w, &cluster); err != nil {
		t.Fatal(err)
	}
	if cluster.Leader != 0 || cluster.NodeRole != "follower" {
		t.Fatalf("cluster without a leader = %+v", cluster)
	}
}

// SPEC §2: missing or wrong credentials are 401 and a role without the
// permission is 403, on every endpoint. The answer must not depend on
// whether a leader can be reached: a node without quorum must not tell an
// unauthenticated client to retry later (and must not spend a read-index
// round trip, or a blocking wait of up to 10 minutes, on it).
func TestNoQuorum_CredentialsAreCheckedBeforeWaitingForALeader(t *testing.T) {
	base := newEnv(t, withHold(shortHold))
	for _, tc := range []struct {
		name, auth, method, target, body string
		status                           int
		code                             string
	}{
		{"read without credentials", "", "GET", "/v1/nodes", "", 401, "unauthorized"},
		{"read with a wrong password", basic(adminEmail, "wrong"), "GET", "/v1/users", "", 401, "unauthorized"},
		{"read by an unknown user", basic("ghost@cnm.local", "pw"), "GET", "/v1/cluster", "", 401, "unauthorized"},
		{"read by a role without permission", basic("none@cnm.local", "pw-none"), "GET", "/v1/nodes", "", 403, "forbidden"},
		{"write without credentials", "", "POST", "/v1/users", newUserBody, 401, "unauthorized"},
		{"write with a wrong password", basic(adminEmail, "wrong"), "DELETE", "/v1/users/{uid:none}", "", 401, "unauthorized"},
		{"write by a role without permission", basic("none@cnm.local", "pw-none"), "POST", "/v1/users", newUserBody, 403, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := base.fork(t)
			e.raft.setFollower(true)
			r := e.request("", tc.method, tc.target, tc.body)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			assertError(t, e, e.serve(r), tc.status, tc.code)
		})
	}
}

func TestBlockingRead_ReturnsOnceTheIndexPassesN(t *testing.T) {
	e := newEnv(t)
	n := e.applied()
	done := make(chan *httptest.ResponseRecorder, 1)
	r := e.request("admin", "GET", "/v1/users?index="+strconv.FormatUint(n, 10)+"&wait=30s", "")
	go func() { done <- e.serve(r) }()

	mustStatus(t, e.call("admin", "POST", "/v1/users", newUserBody), http.StatusOK)

	w := <-done
	mustStatus(t, w, http.StatusOK)
	idx, err := strconv.ParseUint(w.Header().Get("X-Cnm-Index"), 10, 64)
	if err != nil || idx <= n {
		t.Fatalf("X-Cnm-Index = %q, want more than %d", w.Header().Get("X-Cnm-Index"), n)
	}
	var users []userJSON
	decodeInto(t, w, &users)
	if users[len(users)-1].Email != "new@cnm.local" {
		t.Fatalf("the blocking read answered before the write it waited for: %+v", users)
	}
}

func TestBlockingRead_AnswersAtOnceWhenPastTheIndexOrTheWaitIsOver(t *testing.T) {
	e := newEnv(t)
	n := e.applied()
	for _, target := range []string{
		"/v1/nodes?index=0",
		"/v1/nodes?index=" + strconv.FormatUint(n-1, 10) + "&wait=10m",
		"/v1/nodes?index=" + strconv.FormatUint(n, 10) + "&wait=0s",
		"/v1/nodes?index=" + strconv.FormatUint(n+100, 10) + "&wait=0",
		"/v1/nodes?index=" + strconv.FormatUint(n, 10) + "&wait=0&stale=true",
	} {
		t.Run(target, func(t *testing.T) {
			w := e.call("admin", "GET", target, "")
			mustStatus(t, w, http.StatusOK)
			assertIndexHeader(t, e, w)
		})
	}
}

func TestGetBootstrap_AnswersWithoutCredentialsBeforeAClusterExists(t *testing.T) {
	e := newEnv(t, withoutCluster())
	w := e.call("", "GET", "/v1/bootstrap", "")
	mustStatus(t, w, http.StatusOK)
	var got struct {
		Status struct {
			State string `json:"state"`
		} `json:"bootstrap_status"`
		Local struct {
			UID      int    `json:"uid"`
			APIAddr  string `json:"api_addr"`
			RaftAddr string `json:"raft_addr"`
		} `json:"local_node_info"`
	}
	if err := jsonUnmarshal(w, &got); err != nil {
		t.Fatal(err)
	}
	if got.Status.State != "initiated" || got.Local.UID != testNodeUID || got.Local.APIAddr != testNodeAPI || got.Local.RaftAddr != testNodeRaft {
		t.Fatalf("bootstrap before a cluster = %+v", got)
	}
}

func TestGetBootstrap_ReportsACompletedClusterToAnyUser(t *testing.T) {
	e := newEnv(t)
	for _, role := range allRoles {
		t.Run(role, func(t *testing.T) {
			w := e.call(role, "GET", "/v1/bootstrap", "")
			mustStatus(t, w, http.StatusOK)
			var got struct {
				Status struct {
					State string `json:"state"`
				} `json:"bootstrap_status"`
				Local struct {
					UID             int    `json:"uid"`
					APIAddr         string `json:"api_addr"`
					RaftAddr        string `json:"raft_addr"`
					SoftwareVersion string `json:"software_version"`
					Uptime          int64  `json:"uptime"`
				} `json:"local_node_info"`
			}
			decodeInto(t, w, &got)
			if got.Status.State != "completed" || got.Local.UID != testNodeUID || got.Local.APIAddr != testNodeAPI ||
				got.Local.RaftAddr != testNodeRaft || got.Local.SoftwareVersion != "test" || got.Local.Uptime < 0 {
				t.Fatalf("bootstrap = %+v", got)
			}
		})
	}
}

// TestGetBootstrap_AnswersWithoutCredentialsOnceCompleted: clients poll the
// setup without credentials and must see it complete rather than a 401;
// the answer holds nothing secret.
func TestGetBootstrap_AnswersWithoutCredentialsOnceCompleted(t *testing.T) {
	e := newEnv(t, withoutRoleUsers())
	for _, tc := range []struct{ name, auth string }{
		{"no credentials", ""},
		{"wrong password", basic(adminEmail, "wrong")},
		{"unknown user", basic("nobody@cnm.local", "x")},
		{"garbled", "Basic !!!"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.request("", "GET", "/v1/bootstrap", "")
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := e.serve(r)
			mustStatus(t, w, http.StatusOK)
			var got struct {
				Status struct {
					State string `json:"state"`
				} `json:"bootstrap_status"`
				Local struct {
					UID             int    `json:"uid"`
					APIAddr         string `json:"api_addr"`
					RaftAddr        string `json:"raft_addr"`
					SoftwareVersion string `json:"software_version"`
					Uptime          int64  `json:"uptime"`
				} `json:"local_node_info"`
			}
			decodeInto(t, w, &got)
			if got.Status.State != "completed" || got.Local.UID != testNodeUID {
				t.Fatalf("bootstrap = %+v, want completed on node %d", got, testNodeUID)
			}
			for _, secret := range []string{adminPassword, adminEmail, "PRIVATE KEY", "$2a$"} {
				if strings.Contains(w.Body.String(), secret) {
					t.Errorf("GET /v1/bootstrap shows %q: %s", secret, w.Body)
				}
			}
		})
	}
}

func TestResponses_CarryIndexLeaderAndJSONContentType(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ as, method, target, body string }{
		{"", "GET", "/v1/ping", ""},
		{"admin", "GET", "/v1/bootstrap", ""},
		{"admin", "GET", "/v1/cluster", ""},
		{"admin", "GET", "/v1/nodes", ""},
		{"admin", "GET", "/v1/nodes/1?stale=true", ""},
		{"admin", "GET", "/v1/users", ""},
		{"admin", "GET", "/v1/users/{uid:none}", ""},
		{"none", "GET", "/v1/users/permissions", ""},
		{"admin", "POST", "/v1/users", newUserBody},
		{"admin", "PUT", "/v1/users/{uid:none}", `{"name":"n"}`},
		{"admin", "DELETE", "/v1/users/{uid:none}", ""},
		{"admin", "POST", "/v1/internal/join/voter", `{"uid":1}`},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			w := e.call(tc.as, tc.method, tc.target, tc.body)
			mustStatus(t, w, http.StatusOK)
			assertIndexHeader(t, e, w)
			if l := w.Header().Get("X-Cnm-Leader"); l != strconv.Itoa(testNodeUID) {
				t.Errorf("X-Cnm-Leader = %q, want %d", l, testNodeUID)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

func TestGetCluster_ShowsLeaderMembersAndIndexes(t *testing.T) {
	e := newEnv(t)
	w := e.call("cluster_viewer", "GET", "/v1/cluster", "")
	mustStatus(t, w, http.StatusOK)
	type member struct {
		UID      int    `json:"uid"`
		APIAddr  string `json:"api_addr"`
		RaftAddr string `json:"raft_addr"`
		Role     string `json:"role"`
		Suffrage string `json:"suffrage"`
	}
	var got struct {
		Name         string   `json:"name"`
		CreatedAt    int64    `json:"created_at"`
		Leader       int      `json:"leader"`
		NodeUID      int      `json:"node_uid"`
		NodeRole     string   `json:"node_role"`
		Term         uint64   `json:"term"`
		AppliedIndex uint64   `json:"applied_index"`
		CommitIndex  uint64   `json:"commit_index"`
		LastIndex    uint64   `json:"last_index"`
		Members      []member `json:"members"`
	}
	decodeInto(t, w, &got)
	a := e.applied()
	if got.Name != testClusterName || got.CreatedAt == 0 || got.Leader != testNodeUID || got.NodeUID != testNodeUID ||
		got.NodeRole != "leader" || got.Term != 1 || got.AppliedIndex != a || got.CommitIndex != a || got.LastIndex != a {
		t.Fatalf("cluster = %+v (applied %d)", got, a)
	}
	want := []member{{UID: testNodeUID, APIAddr: testNodeAPI, RaftAddr: testNodeRaft, Role: "leader", Suffrage: "voter"}}
	if !reflect.DeepEqual(got.Members, want) {
		t.Fatalf("members = %+v, want %+v", got.Members, want)
	}
}

// nodeJSON is the node object of SPEC §5 as the API shows it.
type nodeJSON struct {
	UID             int    `json:"uid"`
	Addr            string `json:"addr"`
	APIAddr         string `json:"api_addr"`
	RaftAddr        string `json:"raft_addr"`
	Status          string `json:"status"`
	AcceptServers   bool   `json:"accept_servers"`
	MaxRedisServers int    `json:"max_redis_servers"`
	TotalMemory     int64  `json:"total_memory"`
	ShardCount      int    `json:"shard_count"`
	ShardList       []int  `json:"shard_list"`
	RackID          string `json:"rack_id"`
	SoftwareVersion string `json:"software_version"`
	Uptime          *int64 `json:"uptime"`
}

func TestGetNodes_ShowTheNodeObject(t *testing.T) {
	e := newEnv(t)
	want := nodeJSON{UID: 1, Addr: "127.0.0.1", APIAddr: testNodeAPI, RaftAddr: testNodeRaft, Status: "active",
		AcceptServers: true, MaxRedisServers: 100, TotalMemory: 16 << 30, ShardList: []int{}, SoftwareVersion: "test"}

	w := e.call("db_viewer", "GET", "/v1/nodes/1", "")
	mustStatus(t, w, http.StatusOK)
	var one nodeJSON
	decodeInto(t, w, &one)
	if one.Uptime == nil || *one.Uptime < 0 {
		t.Fatalf("uptime of an active node = %v, want a count of seconds", one.Uptime)
	}
	one.Uptime = nil
	if !reflect.DeepEqual(one, want) {
		t.Fatalf("node = %+v\nwant %+v", one, want)
	}

	w = e.call("db_viewer", "GET", "/v1/nodes", "")
	mustStatus(t, w, http.StatusOK)
	var list []nodeJSON
	decodeInto(t, w, &list)
	if len(list) != 1 {
		t.Fatalf("nodes = %+v", list)
	}
	if list[0].Uptime == nil {
		t.Fatalf("listed active node has no uptime")
	}
	list[0].Uptime = nil
	if !reflect.DeepEqual(list[0], want) {
		t.Fatalf("listed node = %+v\nwant %+v", list[0], want)
	}
}

// jsonUnmarshal decodes the parts of a response body that v names.
func jsonUnmarshal(w *httptest.ResponseRecorder, v any) error {
	return json.Unmarshal(w.Body.Bytes(), v)
}
