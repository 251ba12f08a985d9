package httpapi_test

import (
	"net/http"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"cnm/fsm"
)

// The auth cache is observed without timing: a user's stored hash is
// replaced behind the server's back (a snapshot restore that keeps the
// user's revision), so the old password no longer matches it. A server that
// still accepts the old password did not run bcrypt: it answered from its
// cache. A server with an empty cache over the same state refuses it.

// swapHash stores, for uid, the hash of password without changing the user's
// revision.
func swapHash(t *testing.T, e *env, uid int, password string) {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	e.replaceState(func(st *fsm.State) { st.Users[uid].PasswordHash = string(hash) })
}

// freshServer is a second API over the same raft and state, with an empty
// auth cache.
func freshServer(e *env) *env {
	c := *e
	c.h = e.newServer(e.raft)
	return &c
}

func TestAuthCache_RepeatedCredentialsSkipBcrypt(t *testing.T) {
	for _, probe := range []struct{ name, method, path, body string }{
		{"linearizable read", "GET", "/v1/nodes", ""},
		{"stale read", "GET", "/v1/cluster?stale=true", ""},
		{"local read", "GET", "/metrics", ""},
	} {
		t.Run(probe.name, func(t *testing.T) {
			e := newEnv(t)
			u := e.users["db_viewer"]
			mustStatus(t, e.callWith(u.Email, u.Password, probe.method, probe.path, ""), http.StatusOK)

			swapHash(t, e, u.UID, "swapped-pw")

			assertError(t, e, freshServer(e).callWith(u.Email, u.Password, probe.method, probe.path, ""), http.StatusUnauthorized, "unauthorized")
			if w := e.callWith(u.Email, u.Password, probe.method, probe.path, ""); w.Code != http.StatusOK {
				t.Fatalf("repeated credentials were checked with bcrypt again (no cache hit): %d %s", w.Code, w.Body)
			}
			mustStatus(t, e.callWith(u.Email, "swapped-pw", probe.method, probe.path, ""), http.StatusOK)
		})
	}
}

func TestAuthCache_AnyChangeToTheUserDropsCachedCredentials(t *testing.T) {
	for _, change := range []struct{ name, body string }{
		{"name", `{"name":"renamed"}`},
		{"role", `{"role":"cluster_viewer"}`},
		{"same email", `{"email":"db_viewer@cnm.local"}`},
	} {
		t.Run(change.name, func(t *testing.T) {
			e := newEnv(t)
			u := e.users["db_viewer"]
			mustStatus(t, e.callWith(u.Email, u.Password, "GET", "/v1/nodes", ""), http.StatusOK)
			swapHash(t, e, u.UID, "swapped-pw")
			mustStatus(t, e.callWith(u.Email, u.Password, "GET", "/v1/nodes", ""), http.StatusOK) // cached

			mustStatus(t, e.call("admin", "PUT", "/v1/users/{uid:db_viewer}", change.body), http.StatusOK)

			assertError(t, e, e.callWith(u.Email, u.Password, "GET", "/v1/nodes", ""), http.StatusUnauthorized, "unauthorized")
			mustStatus(t, e.callWith(u.Email, "swapped-pw", "GET", "/v1/nodes", ""), http.StatusOK)
		})
	}
}

func TestAuthCache_OnlyTheExactCredentialsAreCached(t *testing.T) {
	e := newEnv(t)
	u := e.users["db_viewer"]
	mustStatus(t, e.callWith(u.Email, u.Password, "GET", "/v1/nodes", ""), http.StatusOK)
	for _, tc := range []struct{ name, email, password string }{
		{"other password", u.Email, u.Password + "x"},
		{"password prefix", u.Email, u.Password[:len(u.Password)-1]},
		{"same password, other user", e.users["db_member"].Email, u.Password},
		{"same password, unknown user", "ghost@cnm.local", u.Password},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertError(t, e, e.callWith(tc.email, tc.password, "GET", "/v1/nodes", ""), http.StatusUnauthorized, "unauthorized")
		})
	}
}

func TestAuthCache_FailedChecksAreNotRemembered(t *testing.T) {
	e := newEnv(t)
	u := e.users["db_viewer"]
	assertError(t, e, e.callWith(u.Email, "later-pw", "GET", "/v1/nodes", ""), http.StatusUnauthorized, "unauthorized")
	swapHash(t, e, u.UID, "later-pw")
	mustStatus(t, e.callWith(u.Email, "later-pw", "GET", "/v1/nodes", ""), http.StatusOK)
}

// BenchmarkAuthenticatedRead is a linearizable GET /v1/nodes by a user whose
// password is hashed with the default bcrypt cost. Compared with
// BenchmarkBcryptVerify it shows what the auth cache saves: a request costs
// far less than one bcrypt check.
func BenchmarkAuthenticatedRead(b *testing.B) {
	e := newEnv(b, withAdminCost(bcrypt.DefaultCost), withServerCost(bcrypt.DefaultCost), withoutRoleUsers())
	for b.Loop() {
		if w := e.call("admin", "GET", "/v1/nodes", ""); w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkBcryptVerify is one password check at the default cost.
func BenchmarkBcryptVerify(b *testing.B) {
	hash, err := bcrypt.GenerateFromPassword([]byte(adminPassword), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := bcrypt.CompareHashAndPassword(hash, []byte(adminPassword)); err != nil {
			b.Fatal(err)
		}
	}
}
