package httpapi_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"cnm/pki"
)

// specPermissions is the table of SPEC §8, copied from the contract: which
// roles hold each permission.
var specPermissions = func() map[string][]string {
	allButNone := []string{"admin", "cluster_member", "cluster_viewer", "db_member", "db_viewer", "user_manager"}
	adminOnly := []string{"admin"}
	dbWriters := []string{"admin", "cluster_member", "db_member"}
	userManagers := []string{"admin", "user_manager"}
	return map[string][]string{
		"view_status_of_all_node_actions": allButNone,
		"view_status_of_node_action":      allButNone,
		"view_all_nodes_info":             allButNone,
		"view_node_info":                  allButNone,
		"view_cluster_info":               allButNone,
		"view_all_bdbs_info":              allButNone,
		"view_bdb_info":                   allButNone,
		"view_all_shard_stats":            allButNone,
		"start_node_action":               adminOnly,
		"cancel_node_action":              adminOnly,
		"update_node":                     adminOnly,
		"update_cluster":                  adminOnly,
		"create_bdb":                      dbWriters,
		"update_bdb":                      dbWriters,
		"delete_bdb":                      dbWriters,
		"view_all_users_info":             userManagers,
		"create_new_user":                 userManagers,
		"update_user":                     userManagers,
		"delete_user":                     userManagers,
	}
}()

// anyUser marks a route open to every authenticated user, whatever the role.
const anyUser = "(any authenticated user)"

func specAllows(role, perm string) bool {
	if perm == anyUser {
		return true
	}
	roles, ok := specPermissions[perm]
	if !ok {
		panic("permission " + perm + " is not in SPEC §8")
	}
	return slices.Contains(roles, role)
}

// specPermissionsOf lists the permissions SPEC §8 gives role, sorted.
func specPermissionsOf(role string) []string {
	out := []string{}
	for p, roles := range specPermissions {
		if slices.Contains(roles, role) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

func TestRBAC_EveryRouteTimesEveryRoleFollowsSpec(t *testing.T) {
	_, csr, err := pki.NewKeyAndCSR(9, []string{"127.0.0.9"})
	if err != nil {
		t.Fatal(err)
	}
	joinBody := `{"uid":9,"api_addr":"127.0.0.9:9443","raft_addr":"127.0.0.9:9444","csr":` + jsonString(string(csr)) + `}`
	routes := []struct {
		method, target, body string
		perm                 string // the permission SPEC §8 requires
		okStatus             int    // the answer when permitted
	}{
		{"GET", "/v1/cluster", "", "view_cluster_info", 200},
		// Metrics describe the cluster as a whole.
		{"GET", "/metrics", "", "view_cluster_info", 200},
		{"GET", "/v1/nodes", "", "view_all_nodes_info", 200},
		{"GET", "/v1/nodes/1", "", "view_node_info", 200},
		{"GET", "/v1/users", "", "view_all_users_info", 200},
		// §8 has no per-user view permission; one user is part of all users' info.
		{"GET", "/v1/users/{uid:none}", "", "view_all_users_info", 200},
		{"POST", "/v1/users", newUserBody, "create_new_user", 200},
		{"PUT", "/v1/users/{uid:none}", `{"name":"renamed"}`, "update_user", 200},
		{"DELETE", "/v1/users/{uid:none}", "", "delete_user", 200},
		{"GET", "/v1/users/permissions", "", anyUser, 200},
		{"GET", "/v1/bootstrap", "", anyUser, 200},
		// Joining changes the cluster's membership.
		{"POST", "/v1/internal/join", joinBody, "update_cluster", 200},
		{"POST", "/v1/internal/join/voter", `{"uid":1}`, "update_cluster", 200},

		// The cluster model (SPEC §5.1) on newModelEnv: database 1 with
		// shards 1 to 4, node 1's snapshot snap-1.
		{"GET", "/v1/nodes/status", "", "view_all_nodes_info", 200},
		{"PUT", "/v1/nodes/1", `{"rack_id":"r1"}`, "update_node", 200},
		{"GET", "/v1/nodes/1/status", "", "view_node_info", 200},
		{"GET", "/v1/nodes/1/snapshots", "", "view_node_info", 200},
		// Deleting a node's snapshot changes that node's recovery data.
		{"DELETE", "/v1/nodes/1/snapshots/snap-1", "", "update_node", 200},
		{"GET", "/v1/bdbs", "", "view_all_bdbs_info", 200},
		{"POST", "/v1/bdbs", `{"name":"rbac-db","memory_size":1048576}`, "create_bdb", 200},
		{"GET", "/v1/bdbs/1", "", "view_bdb_info", 200},
		{"DELETE", "/v1/bdbs/1", "", "delete_bdb", 200},
		{"GET", "/v1/shards", "", "view_all_shard_stats", 200},
		{"GET", "/v1/shards/1", "", "view_all_shard_stats", 200},
		{"GET", "/v1/cluster/policy", "", "view_cluster_info", 200},
		{"PUT", "/v1/cluster/policy", `{"default_shards_placement":"sparse"}`, "update_cluster", 200},
	}
	// Permitted writes of the model that must change the state.
	applies := map[string]bool{
		"PUT /v1/nodes/1": true, "DELETE /v1/nodes/1/snapshots/snap-1": true, "POST /v1/bdbs": true,
		"DELETE /v1/bdbs/1": true, "PUT /v1/cluster/policy": true,
	}
	base := newModelEnv(t)
	for _, rt := range routes {
		for _, role := range allRoles {
			allowed := specAllows(role, rt.perm)
			t.Run(rt.method+" "+rt.target+" as "+role, func(t *testing.T) {
				e := base.fork(t)
				before, appliedBefore := e.state(), e.applied()
				w := e.call(role, rt.method, rt.target, rt.body)
				if allowed {
					if w.Code != rt.okStatus {
						t.Fatalf("%s holds %s: status = %d, want %d; body %s", role, rt.perm, w.Code, rt.okStatus, w.Body)
					}
					if applies[rt.method+" "+rt.target] && (reflect.DeepEqual(e.state(), before) || e.applied() == appliedBefore) {
						t.Fatalf("%s %s by %s answered %d but changed nothing", rt.method, rt.target, role, w.Code)
					}
					return
				}
				assertError(t, e, w, http.StatusForbidden, "forbidden")
				if !reflect.DeepEqual(e.state(), before) || e.applied() != appliedBefore {
					t.Fatalf("a forbidden %s %s changed the state", rt.method, rt.target)
				}
				if _, voters := e.raft.calls(); len(voters) != 0 {
					t.Fatalf("a forbidden request added voters %v", voters)
				}
			})
		}
	}
}

func TestPermissions_ListEachRolesPermissionsAsInSpec(t *testing.T) {
	e := newEnv(t)
	wantRoles := map[string][]string{}
	for _, role := range allRoles {
		wantRoles[role] = specPermissionsOf(role)
	}
	for _, role := range allRoles {
		t.Run(role, func(t *testing.T) {
			w := e.call(role, "GET", "/v1/users/permissions", "")
			mustStatus(t, w, http.StatusOK)
			var got struct {
				Role        string              `json:"role"`
				Permissions []string            `json:"permissions"`
				Roles       map[string][]string `json:"roles"`
			}
			decodeInto(t, w, &got)
			if got.Role != role {
				t.Errorf("role = %q, want %q", got.Role, role)
			}
			if want := specPermissionsOf(role); !slices.Equal(got.Permissions, want) {
				t.Errorf("permissions of %s = %v\nwant %v", role, got.Permissions, want)
			}
			if !reflect.DeepEqual(got.Roles, wantRoles) {
				t.Errorf("roles = %v\nwant %v", got.Roles, wantRoles)
			}
		})
	}
}

func TestPing_NeedsNoCredentials(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ name, auth string }{
		{"no credentials", ""},
		{"garbled credentials", "Basic !!!"},
		{"wrong password", basic(adminEmail, "wrong")},
		{"admin", basic(adminEmail, adminPassword)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.request("", "GET", "/v1/ping", "")
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := e.serve(r)
			mustStatus(t, w, http.StatusOK)
			var got struct {
				Status  string `json:"status"`
				NodeUID int    `json:"node_uid"`
				Leader  int    `json:"leader"`
				Uptime  int64  `json:"uptime"`
			}
			decodeInto(t, w, &got)
			if got.Status != "ok" || got.NodeUID != testNodeUID || got.Leader != testNodeUID {
				t.Fatalf("ping = %+v", got)
			}
			assertIndexHeader(t, e, w)
		})
	}
}

func TestReadIndex_RefusesCallersWithoutNodeCertificate(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name string
		as   string
		tls  *tls.ConnectionState
	}{
		{name: "no credentials"},
		{name: "TLS without a client certificate", tls: &tls.ConnectionState{}},
		{name: "admin password over TLS without a client certificate", as: "admin", tls: &tls.ConnectionState{}},
	}
	for _, role := range allRoles {
		cases = append(cases, struct {
			name string
			as   string
			tls  *tls.ConnectionState
		}{name: role + " password", as: role})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.request(tc.as, "GET", "/v1/internal/read-index", "")
			r.TLS = tc.tls
			w := e.serve(r)
			assertError(t, e, w, http.StatusForbidden, "forbidden")
		})
	}
}

func TestReadIndex_AnswersPeersWithTheLeadersIndex(t *testing.T) {
	e := newEnv(t)
	r := e.request("", "GET", "/v1/internal/read-index", "")
	r.TLS = &tls.ConnectionState{HandshakeComplete: true,
		VerifiedChains: [][]*x509.Certificate{{&x509.Certificate{}}}}
	w := e.serve(r)
	mustStatus(t, w, http.StatusOK)
	var got struct {
		Index uint64 `json:"index"`
	}
	decodeInto(t, w, &got)
	if got.Index != e.applied() || got.Index == 0 {
		t.Fatalf("index = %d, want applied index %d", got.Index, e.applied())
	}
	if h := w.Header().Get("X-Cnm-Index"); h != strconv.FormatUint(e.applied(), 10) {
		t.Fatalf("X-Cnm-Index = %q", h)
	}
}
