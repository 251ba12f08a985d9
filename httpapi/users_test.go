package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"cnm/fsm"
)

func TestUsers_CreateGetListUpdateDeleteRoundTrip(t *testing.T) {
	for _, actor := range []string{"admin", "user_manager"} {
		t.Run(actor, func(t *testing.T) {
			e := newEnv(t)

			w := e.call(actor, "POST", "/v1/users", `{"email":"alice@cnm.local","password":"pw-alice","name":"Alice","role":"db_viewer"}`)
			mustStatus(t, w, http.StatusOK)
			assertIndexHeader(t, e, w)
			var created userJSON
			decodeInto(t, w, &created)
			want := userJSON{UID: created.UID, Email: "alice@cnm.local", Name: "Alice", Role: "db_viewer"}
			if created.UID <= e.users["none"].UID || created != want {
				t.Fatalf("created %+v, want %+v with a new uid", created, want)
			}
			path := "/v1/users/" + strconv.Itoa(created.UID)

			if got := getUser(t, e, actor, path); got != want {
				t.Fatalf("GET %s = %+v, want %+v", path, got, want)
			}
			if w := e.callWith("alice@cnm.local", "pw-alice", "GET", "/v1/nodes", ""); w.Code != http.StatusOK {
				t.Fatalf("the new user cannot log in: %d %s", w.Code, w.Body)
			}
			list := listUsers(t, e, actor)
			if len(list) != len(allRoles)+1 || list[len(list)-1] != want {
				t.Fatalf("list = %+v, want every role's user then %+v", list, want)
			}
			for i := 1; i < len(list); i++ {
				if list[i-1].UID >= list[i].UID {
					t.Fatalf("list not in uid order: %+v", list)
				}
			}

			w = e.call(actor, "PUT", path, `{"email":"alice.b@cnm.local","name":"Alice B","role":"cluster_viewer"}`)
			mustStatus(t, w, http.StatusOK)
			var updated userJSON
			decodeInto(t, w, &updated)
			want = userJSON{UID: created.UID, Email: "alice.b@cnm.local", Name: "Alice B", Role: "cluster_viewer"}
			if updated != want {
				t.Fatalf("updated %+v, want %+v", updated, want)
			}
			if got := getUser(t, e, actor, path); got != want {
				t.Fatalf("GET after update = %+v, want %+v", got, want)
			}

			// Setting a user's own email again is no conflict; fields not
			// given stay as they are.
			w = e.call(actor, "PUT", path, `{"email":"alice.b@cnm.local"}`)
			mustStatus(t, w, http.StatusOK)
			decodeInto(t, w, &updated)
			if updated != want {
				t.Fatalf("update with own email = %+v, want %+v", updated, want)
			}

			w = e.call(actor, "DELETE", path, "")
			mustStatus(t, w, http.StatusOK)
			var deleted struct {
				UID int `json:"uid"`
			}
			decodeInto(t, w, &deleted)
			if deleted.UID != created.UID {
				t.Fatalf("delete answered uid %d, want %d", deleted.UID, created.UID)
			}
			assertError(t, e, e.call(actor, "GET", path, ""), http.StatusNotFound, "user_not_found")
			for _, u := range listUsers(t, e, actor) {
				if u.UID == created.UID {
					t.Fatalf("deleted user still listed: %+v", u)
				}
			}
			assertError(t, e, e.call(actor, "DELETE", path, ""), http.StatusNotFound, "user_not_found")
		})
	}
}

func TestCreateUser_NameIsOptionalAnd72BytePasswordsWork(t *testing.T) {
	e := newEnv(t)
	pw := strings.Repeat("p", 71) + "!"
	w := e.call("admin", "POST", "/v1/users", `{"email":"bob@cnm.local","password":"`+pw+`","role":"db_member"}`)
	mustStatus(t, w, http.StatusOK)
	var u userJSON
	decodeInto(t, w, &u)
	if u.Name != "" || u.Role != "db_member" || u.Email != "bob@cnm.local" {
		t.Fatalf("created %+v", u)
	}
	mustStatus(t, e.callWith("bob@cnm.local", pw, "GET", "/v1/nodes", ""), http.StatusOK)
	assertError(t, e, e.callWith("bob@cnm.local", pw[:71], "GET", "/v1/nodes", ""), http.StatusUnauthorized, "unauthorized")
}

func TestDeleteUser_EmptyBodyOrEmptyObjectIsAccepted(t *testing.T) {
	for _, body := range []string{"", "{}", " { } \n"} {
		t.Run(strconv.Quote(body), func(t *testing.T) {
			e := newEnv(t)
			mustStatus(t, e.call("admin", "DELETE", "/v1/users/{uid:db_viewer}", body), http.StatusOK)
			if e.state().UserByEmail("db_viewer@cnm.local") != nil {
				t.Fatalf("user still exists")
			}
		})
	}
}

func TestUsers_PasswordHashNeverAppearsInAnyResponse(t *testing.T) {
	e := newEnv(t)
	var bodies []string
	record := func(w *httptest.ResponseRecorder) {
		bodies = append(bodies, w.Body.String())
		for k, vs := range w.Header() {
			bodies = append(bodies, k+": "+strings.Join(vs, ","))
		}
	}
	record(e.call("admin", "POST", "/v1/users", `{"email":"carol@cnm.local","password":"pw-carol","name":"Carol","role":"none"}`))
	record(e.call("admin", "GET", "/v1/users", ""))
	record(e.call("admin", "GET", "/v1/users?stale=true", ""))
	for _, role := range allRoles {
		record(e.call("admin", "GET", "/v1/users/{uid:"+role+"}", ""))
	}
	record(e.call("admin", "PUT", "/v1/users/{uid:none}", `{"password":"pw-none-2"}`))
	record(e.call("admin", "PUT", "/v1/users/{uid:db_viewer}", `{"name":"renamed","role":"db_member"}`))
	record(e.call("admin", "POST", "/v1/users", `{"email":"carol@cnm.local","password":"pw","role":"none"}`)) // 409
	record(e.call("user_manager", "GET", "/v1/users/permissions", ""))
	record(e.call("admin", "GET", "/v1/cluster", ""))
	record(e.call("admin", "GET", "/v1/bootstrap", ""))
	record(e.call("admin", "DELETE", "/v1/users/{uid:cluster_member}", ""))

	var hashes []string
	e.fsm.Read(func(st *fsm.State, _ uint64) {
		for _, u := range st.Users {
			hashes = append(hashes, u.PasswordHash)
		}
	})
	if len(hashes) != len(allRoles) {
		t.Fatalf("%d users in the state", len(hashes))
	}
	for _, b := range bodies {
		for _, h := range hashes {
			if strings.Contains(b, h) {
				t.Fatalf("a response holds a password hash: %s", b)
			}
		}
		for _, leak := range []string{"$2a$", "$2b$", "$2y$", "password", "pw-"} {
			if strings.Contains(b, leak) {
				t.Fatalf("a response holds %q: %s", leak, b)
			}
		}
	}
}

func TestUpdateUser_PasswordChangeRejectsOldPasswordAtOnce(t *testing.T) {
	for _, tc := range []struct{ name, actor, target string }{
		{"admin changes another user's password", "admin", "db_viewer"},
		{"user manager changes its own password", "user_manager", "user_manager"},
		{"admin changes its own password", "admin", "admin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			u := e.users[tc.target]
			// Authenticate twice so the old password is cached.
			for range 2 {
				mustStatus(t, e.callWith(u.Email, u.Password, "GET", "/v1/users/permissions", ""), http.StatusOK)
			}
			w := e.call(tc.actor, "PUT", "/v1/users/{uid:"+tc.target+"}", `{"password":"brand-new-pw"}`)
			mustStatus(t, w, http.StatusOK)

			for _, probe := range []struct{ method, path, body string }{
				{"GET", "/v1/users/permissions", ""},
				{"GET", "/v1/nodes?stale=true", ""},
				{"PUT", "/v1/users/{uid:" + tc.target + "}", `{"name":"x"}`},
			} {
				w := e.callWith(u.Email, u.Password, probe.method, probe.path, probe.body)
				assertError(t, e, w, http.StatusUnauthorized, "unauthorized")
			}
			mustStatus(t, e.callWith(u.Email, "brand-new-pw", "GET", "/v1/users/permissions", ""), http.StatusOK)
			if got := e.state().Users[u.UID].Name; got == "x" {
				t.Fatalf("a write with the old password was applied")
			}
		})
	}
}

func TestUpdateUser_RoleChangeAppliesAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name          string
		user, newRole string
		method, path  string
		body          string
		before, after int
	}{
		{"viewer made user manager may list users", "db_viewer", "user_manager", "GET", "/v1/users", "", 403, 200},
		{"user manager made none may not list users", "user_manager", "none", "GET", "/v1/users", "", 200, 403},
		{"user manager made none may not see nodes", "user_manager", "none", "GET", "/v1/nodes", "", 200, 403},
		{"user manager made viewer may not update users", "user_manager", "cluster_viewer", "PUT", "/v1/users/{uid:none}", `{"name":"x"}`, 200, 403},
		{"cluster viewer made admin may add voters", "cluster_viewer", "admin", "POST", "/v1/internal/join/voter", `{"uid":1}`, 403, 200},
		{"none made cluster viewer may read the cluster", "none", "cluster_viewer", "GET", "/v1/cluster", "", 403, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			// A harmless authenticated request first, so the credentials are cached.
			mustStatus(t, e.call(tc.user, "GET", "/v1/users/permissions", ""), http.StatusOK)
			if w := e.call(tc.user, tc.method, tc.path, tc.body); w.Code != tc.before {
				t.Fatalf("before: status = %d, want %d; %s", w.Code, tc.before, w.Body)
			}
			w := e.call("admin", "PUT", "/v1/users/{uid:"+tc.user+"}", `{"role":"`+tc.newRole+`"}`)
			mustStatus(t, w, http.StatusOK)
			if w := e.call(tc.user, tc.method, tc.path, tc.body); w.Code != tc.after {
				t.Fatalf("after becoming %s: status = %d, want %d; %s", tc.newRole, w.Code, tc.after, w.Body)
			}
			var perms struct {
				Role        string              `json:"role"`
				Permissions []string            `json:"permissions"`
				Roles       map[string][]string `json:"roles"`
			}
			decodeInto(t, e.call(tc.user, "GET", "/v1/users/permissions", ""), &perms)
			if perms.Role != tc.newRole {
				t.Fatalf("permissions name role %q, want %q", perms.Role, tc.newRole)
			}
		})
	}
}

func TestDeleteUser_DeletedUserGets401(t *testing.T) {
	for _, probe := range []struct{ name, method, path, body string }{
		{"read", "GET", "/v1/nodes", ""},
		{"stale read", "GET", "/v1/users?stale=true", ""},
		{"permissions", "GET", "/v1/users/permissions", ""},
		{"write", "POST", "/v1/users", newUserBody},
	} {
		t.Run(probe.name, func(t *testing.T) {
			e := newEnv(t)
			u := e.users["user_manager"]
			mustStatus(t, e.call("user_manager", "GET", "/v1/users/permissions", ""), http.StatusOK)
			mustStatus(t, e.call("admin", "DELETE", "/v1/users/{uid:user_manager}", ""), http.StatusOK)

			before, applied := e.state(), e.applied()
			w := e.callWith(u.Email, u.Password, probe.method, probe.path, probe.body)
			assertError(t, e, w, http.StatusUnauthorized, "unauthorized")
			if w.Header().Get("WWW-Authenticate") != `Basic realm="cnm"` {
				t.Fatalf("no Basic challenge")
			}
			if e.applied() != applied || e.state().UserByEmail("new@cnm.local") != nil || len(e.state().Users) != len(before.Users) {
				t.Fatalf("a deleted user's request changed the state")
			}
		})
	}
}

func TestDeleteUser_RecreatedEmailDoesNotAcceptTheOldPassword(t *testing.T) {
	e := newEnv(t)
	old := e.users["db_member"]
	mustStatus(t, e.call("db_member", "GET", "/v1/nodes", ""), http.StatusOK)
	mustStatus(t, e.call("admin", "DELETE", "/v1/users/{uid:db_member}", ""), http.StatusOK)
	mustStatus(t, e.call("admin", "POST", "/v1/users", `{"email":"db_member@cnm.local","password":"other-pw","role":"admin"}`), http.StatusOK)

	assertError(t, e, e.callWith(old.Email, old.Password, "GET", "/v1/nodes", ""), http.StatusUnauthorized, "unauthorized")
	mustStatus(t, e.callWith(old.Email, "other-pw", "GET", "/v1/users", ""), http.StatusOK)
}

func TestUpdateUser_EmailChangeMovesTheLogin(t *testing.T) {
	e := newEnv(t)
	u := e.users["cluster_viewer"]
	mustStatus(t, e.call("cluster_viewer", "GET", "/v1/nodes", ""), http.StatusOK)
	mustStatus(t, e.call("admin", "PUT", "/v1/users/{uid:cluster_viewer}", `{"email":"viewer@example.com"}`), http.StatusOK)

	assertError(t, e, e.callWith(u.Email, u.Password, "GET", "/v1/nodes", ""), http.StatusUnauthorized, "unauthorized")
	mustStatus(t, e.callWith("viewer@example.com", u.Password, "GET", "/v1/nodes", ""), http.StatusOK)
	// The old email is free again.
	mustStatus(t, e.call("admin", "POST", "/v1/users", `{"email":"`+u.Email+`","password":"pw","role":"none"}`), http.StatusOK)
}

func TestDeleteUser_AnotherAdminMayBeDeletedOrDemoted(t *testing.T) {
	e := newEnv(t)
	mustStatus(t, e.call("admin", "PUT", "/v1/users/{uid:cluster_member}", `{"role":"admin"}`), http.StatusOK)
	// Two admins: the first may now be demoted, and then the second is the last.
	mustStatus(t, e.call("admin", "PUT", "/v1/users/1", `{"role":"user_manager"}`), http.StatusOK)
	assertError(t, e, e.call("cluster_member", "DELETE", "/v1/users/{uid:cluster_member}", ""), http.StatusConflict, "last_admin")
	mustStatus(t, e.call("cluster_member", "DELETE", "/v1/users/1", ""), http.StatusOK)
}

func getUser(t *testing.T, e *env, as, path string) userJSON {
	t.Helper()
	w := e.call(as, "GET", path, "")
	mustStatus(t, w, http.StatusOK)
	var u userJSON
	decodeInto(t, w, &u)
	return u
}

func listUsers(t *testing.T, e *env, as string) []userJSON {
	t.Helper()
	w := e.call(as, "GET", "/v1/users", "")
	mustStatus(t, w, http.StatusOK)
	var us []userJSON
	decodeInto(t, w, &us)
	return us
}
