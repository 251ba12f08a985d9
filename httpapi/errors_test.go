package httpapi_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"cnm/pki"
)

// basic is an Authorization header value for Basic credentials.
func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

const newUserBody = `{"email":"new@cnm.local","password":"pw-new","name":"New","role":"db_viewer"}`

// errorCase is a request that must fail with the given status and code and
// change nothing.
type errorCase struct {
	name   string
	as     string // role whose credentials are sent; "" for none
	auth   string // a raw Authorization header, sent instead of as
	ctype  string // Content-Type of the body, if any
	method string
	target string // may hold {uid:ROLE}
	body   string
	status int
	code   string
	// descHas is text the description must hold: the offending field or
	// object (SPEC §2).
	descHas string
	// viaRaft marks domain errors that only Apply can decide: the entry is
	// applied (the index moves by one) and the state stays the same. Every
	// other error must be answered before anything is proposed.
	viaRaft bool
}

func runErrorCases(t *testing.T, cases []errorCase) {
	t.Helper()
	runErrorCasesOn(t, newEnv(t), cases)
}

// runErrorCasesOn runs each case on a fork of base.
func runErrorCasesOn(t *testing.T, base *env, cases []errorCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := base.fork(t)
			before, appliedBefore := e.state(), e.applied()
			r := e.request(tc.as, tc.method, tc.target, tc.body)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			if tc.ctype != "" {
				r.Header.Set("Content-Type", tc.ctype)
			}
			w := e.serve(r)

			desc := assertError(t, e, w, tc.status, tc.code)
			if tc.descHas != "" && !strings.Contains(desc, tc.descHas) {
				t.Errorf("description %q does not name %q", desc, tc.descHas)
			}
			if tc.status == http.StatusUnauthorized {
				if got := w.Header().Get("WWW-Authenticate"); got != `Basic realm="cnm"` {
					t.Errorf("WWW-Authenticate = %q, want %q", got, `Basic realm="cnm"`)
				}
			}
			if after := e.state(); !reflect.DeepEqual(after, before) {
				t.Errorf("state changed in %v", changedParts(t, before, after))
			}
			wantApplied := appliedBefore
			if tc.viaRaft {
				wantApplied++
			}
			if got := e.applied(); got != wantApplied {
				t.Errorf("applied index = %d, want %d (viaRaft=%v)", got, wantApplied, tc.viaRaft)
			}
		})
	}
}

func TestAuthentication_MissingOrWrongCredentialsAre401WithBasicChallenge(t *testing.T) {
	runErrorCases(t, errorCases{
		{name: "missing on read", method: "GET", target: "/v1/nodes"},
		{name: "missing on write", method: "POST", target: "/v1/users", body: newUserBody},
		{name: "missing on update", method: "PUT", target: "/v1/users/{uid:none}", body: `{"name":"x"}`},
		{name: "missing on delete", method: "DELETE", target: "/v1/users/{uid:none}"},
		{name: "missing on permissions", method: "GET", target: "/v1/users/permissions"},
		{name: "missing on join", method: "POST", target: "/v1/internal/join", body: `{}`},
		{name: "garbled basic on read", auth: "Basic !!!", method: "GET", target: "/v1/nodes"},
		{name: "garbled basic on write", auth: "Basic !!!", method: "POST", target: "/v1/users", body: newUserBody},
		{name: "basic without colon", auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(adminEmail)), method: "GET", target: "/v1/cluster"},
		{name: "bearer token", auth: "Bearer x", method: "GET", target: "/v1/cluster"},
		{name: "bearer token on write", auth: "Bearer x", method: "DELETE", target: "/v1/users/{uid:none}"},
		{name: "wrong password on read", auth: basic(adminEmail, "wrong"), method: "GET", target: "/v1/nodes"},
		{name: "wrong password on write", auth: basic(adminEmail, "wrong"), method: "PUT", target: "/v1/users/{uid:none}", body: `{"role":"admin"}`},
		{name: "empty password", auth: basic(adminEmail, ""), method: "GET", target: "/v1/nodes"},
		{name: "another user's password", auth: basic(adminEmail, "pw-none"), method: "GET", target: "/v1/users"},
		{name: "unknown user on read", auth: basic("ghost@cnm.local", adminPassword), method: "GET", target: "/v1/nodes"},
		{name: "unknown user on write", auth: basic("ghost@cnm.local", adminPassword), method: "POST", target: "/v1/users", body: newUserBody},
		{name: "empty user name", auth: basic("", adminPassword), method: "GET", target: "/v1/nodes"},
	}.withStatus(http.StatusUnauthorized, "unauthorized"))
}

func TestAuthorization_RoleWithoutPermissionIs403(t *testing.T) {
	runErrorCases(t, errorCases{
		{name: "cluster_viewer creates a user", as: "cluster_viewer", method: "POST", target: "/v1/users", body: newUserBody, descHas: "create_new_user"},
		{name: "none lists nodes", as: "none", method: "GET", target: "/v1/nodes", descHas: "view_all_nodes_info"},
		{name: "db_member deletes a user", as: "db_member", method: "DELETE", target: "/v1/users/{uid:none}", descHas: "delete_user"},
		{name: "none renames itself", as: "none", method: "PUT", target: "/v1/users/{uid:none}", body: `{"name":"me"}`, descHas: "update_user"},
		{name: "cluster_member promotes itself", as: "cluster_member", method: "PUT", target: "/v1/users/{uid:cluster_member}", body: `{"role":"admin"}`},
		{name: "user_manager joins a node", as: "user_manager", method: "POST", target: "/v1/internal/join", body: `{}`, descHas: "update_cluster"},
		{name: "cluster_member lists users", as: "cluster_member", method: "GET", target: "/v1/users", descHas: "view_all_users_info"},
		{name: "forbidden even with a bad body", as: "db_viewer", method: "POST", target: "/v1/users", body: `[]`},
	}.withStatus(http.StatusForbidden, "forbidden"))
}

func TestRouting_UnknownPathIs404AndWrongMethodIs405(t *testing.T) {
	runErrorCases(t, errorCases{
		{name: "unknown path", as: "admin", method: "GET", target: "/v1/nope", status: 404, code: "not_found", descHas: "/v1/nope"},
		{name: "unknown path without credentials", method: "GET", target: "/v1/nope", status: 404, code: "not_found"},
		{name: "below a known path", as: "admin", method: "GET", target: "/v1/nodes/1/extra", status: 404, code: "not_found"},
		{name: "trailing slash", as: "admin", method: "GET", target: "/v1/users/", status: 404, code: "not_found"},
		{name: "other api version", as: "admin", method: "DELETE", target: "/v2/users/1", status: 404, code: "not_found"},
		{name: "root", as: "admin", method: "GET", target: "/", status: 404, code: "not_found"},
		{name: "delete the node list", as: "admin", method: "DELETE", target: "/v1/nodes", status: 405, code: "method_not_allowed"},
		{name: "post to a node", as: "admin", method: "POST", target: "/v1/nodes/1", body: `{}`, status: 405, code: "method_not_allowed"},
		{name: "put the cluster", as: "admin", method: "PUT", target: "/v1/cluster", body: `{}`, status: 405, code: "method_not_allowed"},
		{name: "get join", as: "admin", method: "GET", target: "/v1/internal/join", status: 405, code: "method_not_allowed"},
		{name: "post ping", method: "POST", target: "/v1/ping", status: 405, code: "method_not_allowed"},
		{name: "post permissions", as: "admin", method: "POST", target: "/v1/users/permissions", body: `{}`, status: 405, code: "method_not_allowed"},
		{name: "patch a user", as: "admin", method: "PATCH", target: "/v1/users/{uid:none}", body: `{"name":"x"}`, status: 405, code: "method_not_allowed"},
		// Literal paths under a {uid} route are not uids.
		{name: "put the nodes' status", as: "admin", method: "PUT", target: "/v1/nodes/status", body: `{"rack_id":"r"}`, status: 405, code: "method_not_allowed"},
		{name: "put the action list", as: "admin", method: "PUT", target: "/v1/nodes/actions", body: `{"rack_id":"r"}`, status: 405, code: "method_not_allowed"},
		{name: "put permissions", as: "admin", method: "PUT", target: "/v1/users/permissions", body: `{"name":"x"}`, status: 405, code: "method_not_allowed"},
		{name: "delete permissions", as: "admin", method: "DELETE", target: "/v1/users/permissions", status: 405, code: "method_not_allowed"},
		{name: "delete the user list without credentials", method: "DELETE", target: "/v1/users", status: 405, code: "method_not_allowed"},
	})
}

func TestBody_BadJSONIs400AndChangesNothing(t *testing.T) {
	twoObjects := newUserBody + newUserBody
	runErrorCases(t, errorCases{
		{name: "form data instead of JSON", method: "POST", target: "/v1/users", body: "email=new@cnm.local&role=admin", code: "invalid_json"},
		{name: "truncated object", method: "POST", target: "/v1/users", body: `{"email":`, code: "invalid_json"},
		{name: "syntax error", method: "POST", target: "/v1/users", body: `{"email" "new@cnm.local"}`, code: "invalid_json"},
		{name: "array", method: "POST", target: "/v1/users", body: `[]`, code: "invalid_json"},
		{name: "string", method: "POST", target: "/v1/users", body: `"x"`, code: "invalid_json"},
		{name: "number", method: "POST", target: "/v1/users", body: `1`, code: "invalid_json"},
		{name: "null", method: "POST", target: "/v1/users", body: `null`, code: "invalid_json"},
		{name: "array on update", method: "PUT", target: "/v1/users/{uid:none}", body: `[{"name":"x"}]`, code: "invalid_json"},
		{name: "string on delete", method: "DELETE", target: "/v1/users/{uid:none}", body: `"x"`, code: "invalid_json"},
		{name: "array on join", method: "POST", target: "/v1/internal/join", body: `[]`, code: "invalid_json"},
		{name: "number on join voter", method: "POST", target: "/v1/internal/join/voter", body: `2`, code: "invalid_json"},
		{name: "two objects", method: "POST", target: "/v1/users", body: twoObjects, code: "invalid_json"},
		{name: "two objects on update", method: "PUT", target: "/v1/users/{uid:none}", body: `{"name":"a"} {"name":"b"}`, code: "invalid_json"},
		{name: "trailing garbage", method: "PUT", target: "/v1/users/{uid:none}", body: `{"name":"a"} x`, code: "invalid_json"},
		{name: "trailing bracket", method: "PUT", target: "/v1/users/{uid:none}", body: `{"name":"a"}]`, code: "invalid_json"},
		{name: "unknown field", method: "POST", target: "/v1/users", body: `{"email":"new@cnm.local","password":"pw","role":"none","color":"red"}`, code: "invalid_parameter", descHas: "color"},
		{name: "unknown field on update", method: "PUT", target: "/v1/users/{uid:none}", body: `{"password_hash":"$2a$04$x"}`, code: "invalid_parameter", descHas: "password_hash"},
		{name: "unknown field on delete", method: "DELETE", target: "/v1/users/{uid:none}", body: `{"force":true}`, code: "invalid_parameter", descHas: "force"},
		{name: "unknown field on join voter", method: "POST", target: "/v1/internal/join/voter", body: `{"uid":1,"voter":true}`, code: "invalid_parameter", descHas: "voter"},
		{name: "role is a number", method: "POST", target: "/v1/users", body: `{"email":"new@cnm.local","password":"pw","role":5}`, code: "invalid_parameter", descHas: "role"},
		{name: "email is a bool", method: "PUT", target: "/v1/users/{uid:none}", body: `{"email":true}`, code: "invalid_parameter", descHas: "email"},
		{name: "name is a list", method: "POST", target: "/v1/users", body: `{"email":"new@cnm.local","password":"pw","role":"none","name":["a"]}`, code: "invalid_parameter", descHas: "name"},
		{name: "password is an object", method: "PUT", target: "/v1/users/{uid:none}", body: `{"password":{}}`, code: "invalid_parameter", descHas: "password"},
		{name: "join uid is a string", method: "POST", target: "/v1/internal/join", body: `{"uid":"2"}`, code: "invalid_parameter", descHas: "uid"},
		{name: "join voter uid is a float", method: "POST", target: "/v1/internal/join/voter", body: `{"uid":1.5}`, code: "invalid_parameter", descHas: "uid"},
	}.withAuth("admin").withStatus(http.StatusBadRequest, ""))
}

func TestUserBody_InvalidValuesAre400AndChangeNothing(t *testing.T) {
	runErrorCases(t, errorCases{
		{name: "empty body on create", method: "POST", target: "/v1/users", body: ``},
		{name: "empty object on create", method: "POST", target: "/v1/users", body: `{}`},
		{name: "missing email", method: "POST", target: "/v1/users", body: `{"password":"pw","role":"none"}`, descHas: "email"},
		{name: "missing password", method: "POST", target: "/v1/users", body: `{"email":"new@cnm.local","role":"none"}`, descHas: "password"},
		{name: "missing role", method: "POST", target: "/v1/users", body: `{"email":"new@cnm.local","password":"pw"}`, descHas: "role"},
		{name: "null role", method: "POST", target: "/v1/users", body: `{"email":"new@cnm.local","password":"pw","role":null}`, descHas: "role"},
		{name: "email without at", method: "POST", target: "/v1/users", body: `{"email":"not-an-email","password":"pw","role":"none"}`, descHas: "email"},
		{name: "email with display name", method: "POST", target: "/v1/users", body: `{"email":"New <new@cnm.local>","password":"pw","role":"none"}`, descHas: "email"},
		{name: "empty email", method: "POST", target: "/v1/users", body: `{"email":"","password":"pw","role":"none"}`, descHas: "email"},
		{name: "email with trailing space", method: "POST", target: "/v1/users", body: `{"email":"new@cnm.local ","password":"pw","role":"none"}`, descHas: "email"},
		{name: "bad role", method: "POST", target: "/v1/users", body: `{"email":"new@cnm.local","password":"pw","role":"superuser"}`, descHas: "role"},
		{name: "empty role", method: "POST", target: "/v1/users", body: `{"email":"new@cnm.local","password":"pw","role":""}`, descHas: "role"},
		{name: "role in upper case", method: "POST", target: "/v1/users", body: `{"email":"new@cnm.local","password":"pw","role":"ADMIN"}`, descHas: "role"},
		{name: "password over 72 bytes", method: "POST", target: "/v1/users", body: `{"email":"new@cnm.local","password":"` + strings.Repeat("p", 73) + `","role":"none"}`, descHas: "password"},
		{name: "password over 72 bytes in multibyte runes", method: "POST", target: "/v1/users", body: `{"email":"new@cnm.local","password":"` + strings.Repeat("é", 37) + `","role":"none"}`, descHas: "password"},
		{name: "empty password", method: "POST", target: "/v1/users", body: `{"email":"new@cnm.local","password":"","role":"none"}`, descHas: "password"},
		{name: "name over 256 bytes", method: "POST", target: "/v1/users", body: `{"email":"new@cnm.local","password":"pw","role":"none","name":"` + strings.Repeat("n", 257) + `"}`, descHas: "name"},
		{name: "empty body on update", method: "PUT", target: "/v1/users/{uid:none}", body: ``, descHas: "nothing to update"},
		{name: "empty object on update", method: "PUT", target: "/v1/users/{uid:none}", body: `{}`, descHas: "nothing to update"},
		{name: "blank body on update", method: "PUT", target: "/v1/users/{uid:none}", body: " \n\t", descHas: "nothing to update"},
		{name: "invalid email on update", method: "PUT", target: "/v1/users/{uid:none}", body: `{"email":"nobody"}`, descHas: "email"},
		{name: "bad role on update", method: "PUT", target: "/v1/users/{uid:none}", body: `{"role":"root"}`, descHas: "role"},
		{name: "long password on update", method: "PUT", target: "/v1/users/{uid:none}", body: `{"password":"` + strings.Repeat("p", 73) + `"}`, descHas: "password"},
		{name: "empty password on update", method: "PUT", target: "/v1/users/{uid:none}", body: `{"password":""}`, descHas: "password"},
		{name: "one bad field among good ones", method: "PUT", target: "/v1/users/{uid:none}", body: `{"name":"ok","role":"nobody"}`, descHas: "role"},
	}.withAuth("admin").withStatus(http.StatusBadRequest, "invalid_parameter"))
}

func TestPathUID_NonNumericOrNotPositiveIs400(t *testing.T) {
	runErrorCases(t, errorCases{
		{name: "get user abc", method: "GET", target: "/v1/users/abc", descHas: "abc"},
		{name: "update user abc", method: "PUT", target: "/v1/users/abc", body: `{"name":"x"}`, descHas: "abc"},
		{name: "delete user abc", method: "DELETE", target: "/v1/users/abc", descHas: "abc"},
		{name: "get node abc", method: "GET", target: "/v1/nodes/abc", descHas: "abc"},
		{name: "get user 0", method: "GET", target: "/v1/users/0", descHas: "uid"},
		{name: "update user 0", method: "PUT", target: "/v1/users/0", body: `{"name":"x"}`, descHas: "uid"},
		{name: "delete user 0", method: "DELETE", target: "/v1/users/0", descHas: "uid"},
		{name: "get node 0", method: "GET", target: "/v1/nodes/0", descHas: "uid"},
		{name: "negative user", method: "GET", target: "/v1/users/-1", descHas: "uid"},
		{name: "negative node", method: "GET", target: "/v1/nodes/-3", descHas: "uid"},
		{name: "node uid overflows", method: "GET", target: "/v1/nodes/99999999999999999999999", descHas: "uid"},
		{name: "user uid is a float", method: "DELETE", target: "/v1/users/1.0", descHas: "uid"},
	}.withAuth("admin").withStatus(http.StatusBadRequest, "invalid_parameter"))
}

func TestReadQuery_BadConsistencyParametersAre400(t *testing.T) {
	runErrorCases(t, errorCases{
		{name: "stale maybe", target: "/v1/nodes?stale=maybe", descHas: "stale"},
		{name: "stale maybe on a user", target: "/v1/users/{uid:none}?stale=maybe", descHas: "stale"},
		{name: "index not a number", target: "/v1/nodes?index=x", descHas: "index"},
		{name: "negative index", target: "/v1/cluster?index=-1", descHas: "index"},
		{name: "wait forever", target: "/v1/nodes?index=1&wait=forever", descHas: "wait"},
		{name: "negative wait", target: "/v1/nodes?index=1&wait=-1s", descHas: "wait"},
		{name: "wait without index", target: "/v1/nodes?wait=30s", descHas: "index"},
		{name: "wait without index on permissions", target: "/v1/users/permissions?wait=1s", descHas: "index"},
	}.withAuth("admin").withMethod("GET").withStatus(http.StatusBadRequest, "invalid_parameter"))
}

func TestJoinBody_InvalidValuesAre400(t *testing.T) {
	_, csr, err := pki.NewKeyAndCSR(2, []string{"127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	join := func(fields string) string {
		return `{"uid":2,"api_addr":"127.0.0.2:9443","raft_addr":"127.0.0.2:9444","csr":` + jsonString(string(csr)) + fields + `}`
	}
	runErrorCases(t, errorCases{
		{name: "empty body", body: ``, descHas: "uid"},
		{name: "uid 0", body: `{"uid":0,"api_addr":"127.0.0.2:9443","raft_addr":"127.0.0.2:9444"}`, descHas: "uid"},
		{name: "negative uid", body: `{"uid":-2,"api_addr":"127.0.0.2:9443","raft_addr":"127.0.0.2:9444"}`, descHas: "uid"},
		{name: "api_addr without port", body: `{"uid":2,"api_addr":"127.0.0.2","raft_addr":"127.0.0.2:9444"}`, descHas: "api_addr"},
		{name: "raft_addr port 0", body: `{"uid":2,"api_addr":"127.0.0.2:9443","raft_addr":"127.0.0.2:0"}`, descHas: "raft_addr"},
		{name: "negative memory", body: join(`,"total_memory":-1`), descHas: "capacity"},
		{name: "negative max shards", body: join(`,"max_redis_servers":-1`), descHas: "capacity"},
		{name: "csr is garbage", body: `{"uid":2,"api_addr":"127.0.0.2:9443","raft_addr":"127.0.0.2:9444","csr":"garbage"}`, descHas: "csr"},
		{name: "csr missing", body: `{"uid":2,"api_addr":"127.0.0.2:9443","raft_addr":"127.0.0.2:9444"}`, descHas: "csr"},
	}.withAuth("admin").withMethod("POST").withTarget("/v1/internal/join").withStatus(http.StatusBadRequest, "invalid_parameter"))
}

func TestBody_Over1MiBIs413AndChangesNothing(t *testing.T) {
	huge := `{"name":"` + strings.Repeat("x", 1<<20) + `"}`
	runErrorCases(t, errorCases{
		{name: "create", method: "POST", target: "/v1/users"},
		{name: "update", method: "PUT", target: "/v1/users/{uid:none}"},
		{name: "delete", method: "DELETE", target: "/v1/users/{uid:none}"},
		{name: "join", method: "POST", target: "/v1/internal/join"},
		{name: "one byte over", method: "PUT", target: "/v1/users/{uid:none}", body: padJSON(`{"name":"x"}`, 1<<20+1)},
	}.withAuth("admin").withBody(huge).withStatus(http.StatusRequestEntityTooLarge, "request_too_large"))
}

func TestUnknownObject_Is404WithItsOwnCode(t *testing.T) {
	runErrorCases(t, errorCases{
		{name: "get node", method: "GET", target: "/v1/nodes/99", status: 404, code: "node_not_found", descHas: "99"},
		{name: "get user", method: "GET", target: "/v1/users/99", status: 404, code: "user_not_found", descHas: "99"},
		{name: "update user", method: "PUT", target: "/v1/users/99", body: `{"name":"x"}`, status: 404, code: "user_not_found", descHas: "99", viaRaft: true},
		{name: "delete user", method: "DELETE", target: "/v1/users/99", status: 404, code: "user_not_found", descHas: "99", viaRaft: true},
		{name: "make an unknown node a voter", method: "POST", target: "/v1/internal/join/voter", body: `{"uid":99}`, status: 404, code: "node_not_found", descHas: "99"},
	}.withAuth("admin"))
}

func TestConflicts_Are409AndChangeNothing(t *testing.T) {
	_, csr, err := pki.NewKeyAndCSR(2, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	runErrorCases(t, errorCases{
		{name: "create with a taken email", as: "admin", method: "POST", target: "/v1/users",
			body:   `{"email":"cluster_viewer@cnm.local","password":"pw","role":"none"}`,
			status: 409, code: "user_exists", descHas: "cluster_viewer@cnm.local", viaRaft: true},
		{name: "create with the admin's email", as: "user_manager", method: "POST", target: "/v1/users",
			body:   `{"email":"admin@cnm.local","password":"pw","role":"db_viewer"}`,
			status: 409, code: "user_exists", descHas: "admin@cnm.local", viaRaft: true},
		{name: "update to a taken email", as: "admin", method: "PUT", target: "/v1/users/{uid:none}",
			body:   `{"email":"admin@cnm.local"}`,
			status: 409, code: "user_exists", descHas: "admin@cnm.local", viaRaft: true},
		{name: "update to a taken email along with other fields", as: "user_manager", method: "PUT", target: "/v1/users/{uid:db_viewer}",
			body:   `{"email":"db_member@cnm.local","name":"changed","role":"cluster_viewer"}`,
			status: 409, code: "user_exists", descHas: "db_member@cnm.local", viaRaft: true},
		{name: "delete the only admin", as: "admin", method: "DELETE", target: "/v1/users/1",
			status: 409, code: "last_admin", descHas: "last admin", viaRaft: true},
		{name: "user manager deletes an admin", as: "user_manager", method: "DELETE", target: "/v1/users/1",
			status: 403, code: "forbidden", descHas: "only an admin", viaRaft: true},
		{name: "demote the only admin", as: "admin", method: "PUT", target: "/v1/users/1",
			body:   `{"role":"none"}`,
			status: 409, code: "last_admin", descHas: "last admin", viaRaft: true},
		{name: "user manager demotes an admin", as: "user_manager", method: "PUT", target: "/v1/users/1",
			body:   `{"role":"user_manager","name":"demoted"}`,
			status: 403, code: "forbidden", descHas: "only an admin", viaRaft: true},
		{name: "user manager creates an admin", as: "user_manager", method: "POST", target: "/v1/users",
			body:   `{"email":"new-admin@cnm.local","password":"pw","role":"admin"}`,
			status: 403, code: "forbidden", descHas: "admin role", viaRaft: true},
		{name: "user manager promotes itself", as: "user_manager", method: "PUT", target: "/v1/users/{uid:user_manager}",
			body:   `{"role":"admin"}`,
			status: 403, code: "forbidden", descHas: "admin role", viaRaft: true},
		{name: "join with a member's addresses", as: "admin", method: "POST", target: "/v1/internal/join",
			body:   `{"uid":2,"api_addr":"` + testNodeAPI + `","raft_addr":"` + testNodeRaft + `","csr":` + jsonString(string(csr)) + `}`,
			status: 409, code: "node_exists", viaRaft: true},
	})
}

func TestWriteBody_AnyContentTypeIsAccepted(t *testing.T) {
	for _, ctype := range []string{
		"application/x-www-form-urlencoded", // curl -d '{...}'
		"text/plain",
		"application/json",
		"application/json; charset=utf-8",
		"multipart/form-data; boundary=x",
		"",
	} {
		t.Run(ctype, func(t *testing.T) {
			e := newEnv(t)
			r := e.request("admin", "POST", "/v1/users", newUserBody)
			if ctype != "" {
				r.Header.Set("Content-Type", ctype)
			}
			w := e.serve(r)
			mustStatus(t, w, http.StatusOK)
			if e.state().UserByEmail("new@cnm.local") == nil {
				t.Fatalf("user not created")
			}
		})
	}
}

func TestWriteBody_OfExactly1MiBIsAccepted(t *testing.T) {
	e := newEnv(t)
	w := e.call("admin", "PUT", "/v1/users/{uid:none}", padJSON(`{"name":"padded"}`, 1<<20))
	mustStatus(t, w, http.StatusOK)
	if got := e.state().Users[e.users["none"].UID].Name; got != "padded" {
		t.Fatalf("name = %q, want padded", got)
	}
}

func TestInternalError_Is500WithoutDetails(t *testing.T) {
	e := newEnv(t)
	e.raft.mu.Lock()
	e.raft.serversErr = errSecret
	e.raft.mu.Unlock()
	w := e.call("admin", "GET", "/v1/cluster", "")
	desc := assertError(t, e, w, http.StatusInternalServerError, "internal_error")
	if strings.Contains(w.Body.String(), "s3cr3t") {
		t.Fatalf("error body leaks the cause: %s (description %q)", w.Body, desc)
	}
}

var errSecret = errors.New("raft config at /var/lib/cnm/s3cr3t: corrupt")

// padJSON pads a JSON object with trailing spaces to exactly n bytes.
func padJSON(obj string, n int) string {
	return obj + strings.Repeat(" ", n-len(obj))
}

// jsonString is s as a JSON string literal.
func jsonString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

type errorCases []errorCase

func (cs errorCases) withStatus(status int, code string) []errorCase {
	for i := range cs {
		cs[i].status = status
		if cs[i].code == "" {
			cs[i].code = code
		}
	}
	return cs
}

func (cs errorCases) withAuth(role string) errorCases {
	for i := range cs {
		if cs[i].as == "" && cs[i].auth == "" {
			cs[i].as = role
		}
	}
	return cs
}

func (cs errorCases) withMethod(m string) errorCases {
	for i := range cs {
		cs[i].method = m
	}
	return cs
}

func (cs errorCases) withTarget(p string) errorCases {
	for i := range cs {
		cs[i].target = p
	}
	return cs
}

func (cs errorCases) withBody(b string) errorCases {
	for i := range cs {
		if cs[i].body == "" {
			cs[i].body = b
		}
	}
	return cs
}

// changedParts names the top-level parts of the state that differ, with
// both versions.
func changedParts(t testing.TB, before, after any) []string {
	t.Helper()
	var b, a map[string]json.RawMessage
	if err := json.Unmarshal(mustMarshal(t, before), &b); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mustMarshal(t, after), &a); err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range a {
		if string(a[k]) != string(b[k]) {
			out = append(out, k+": "+string(b[k])+" -> "+string(a[k]))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k+": removed")
		}
	}
	return out
}

// viaRaft marks every case as decided by Apply.
func (cs errorCases) viaRaft() errorCases {
	for i := range cs {
		cs[i].viaRaft = true
	}
	return cs
}
