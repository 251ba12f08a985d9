package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"cnm/httpapi"
)

// nonCanonicalPaths are paths a client may send that name a known endpoint
// only after cleaning (SPEC §9): each must be refused as it is.
var nonCanonicalPaths = []struct{ name, path string }{
	{"double slash inside", "/v1/nodes//1/actions/remove"},
	{"double slash in front", "//v1/nodes/1/actions/remove"},
	{"double slash at the end", "/v1/nodes/1/actions/remove//"},
	{"dot segment", "/v1/nodes/./1/actions/remove"},
	{"dot segment at the end", "/v1/nodes/1/actions/remove/."},
	{"dot-dot segment", "/v1/nodes/2/../1/actions/remove"},
	{"dot-dot at the end", "/v1/nodes/1/actions/remove/x/.."},
	{"encoded dot-dot", "/v1/nodes/2/%2e%2e/1/actions/remove"},
	{"encoded dot-dot in upper case", "/v1/nodes/2/%2E%2E/1/actions/remove"},
	{"half-encoded dot-dot", "/v1/nodes/2/.%2e/1/actions/remove"},
	{"encoded dot", "/v1/nodes/%2e/1/actions/remove"},
	{"encoded slash", "/v1/nodes%2f1/actions/remove"},
	{"encoded slash in upper case", "/v1/nodes/1%2Factions%2Fremove"},
	{"encoded double slash", "/v1/nodes/%2f%2f1/actions/remove"},
}

// TestPaths_NotCanonicalAre400JSONNeverARedirect: a redirect would be
// followed by clients as a GET and reported as success of a POST that
// never ran, and it was answered before authentication.
func TestPaths_NotCanonicalAre400JSONNeverARedirect(t *testing.T) {
	base := newEnv(t, withoutRoleUsers())
	for _, p := range nonCanonicalPaths {
		for _, method := range []string{"GET", "POST", "DELETE"} {
			for _, as := range []string{"admin", ""} {
				t.Run(p.name+"/"+method+"/"+map[string]string{"admin": "admin", "": "anonymous"}[as], func(t *testing.T) {
					e := base.fork(t)
					before, applied := e.state(), e.applied()
					w := e.call(as, method, p.path, `{}`)
					if loc := w.Header().Get("Location"); loc != "" {
						t.Errorf("Location = %q: the path was redirected", loc)
					}
					assertError(t, e, w, http.StatusBadRequest, "invalid_path")
					if after := e.state(); !reflect.DeepEqual(after, before) || e.applied() != applied {
						t.Errorf("state changed in %v", changedParts(t, before, after))
					}
				})
			}
		}
	}
}

// TestPaths_SetupAPIRefusesNonCanonicalPaths: the API of a node without a
// cluster has the same router, and the same redirect to avoid.
func TestPaths_SetupAPIRefusesNonCanonicalPaths(t *testing.T) {
	submitted := 0
	h := httpapi.NewSetupHandler(httpapi.SetupConfig{UID: 1, APIAddr: testNodeAPI, RaftAddr: testNodeRaft, Version: "test",
		Status: func() httpapi.SetupStatus { return httpapi.SetupStatus{State: httpapi.SetupIdle} },
		Submit: func(httpapi.SetupRequest) bool { submitted++; return true }})
	for _, path := range []string{"/v1//bootstrap", "/v1/./bootstrap", "/v1/x/../bootstrap/create_cluster", "/v1/%2e%2e/v1/bootstrap", "/v1%2fbootstrap"} {
		for _, method := range []string{"GET", "POST"} {
			t.Run(method+" "+path, func(t *testing.T) {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(`{}`)))
				if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" || !strings.Contains(w.Body.String(), `"invalid_path"`) {
					t.Errorf("%s %s = %d (Location %q) %s; want 400 invalid_path", method, path, w.Code, w.Header().Get("Location"), w.Body)
				}
			})
		}
	}
	if submitted != 0 {
		t.Errorf("%d setup requests were submitted", submitted)
	}
}
