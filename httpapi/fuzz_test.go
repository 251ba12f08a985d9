package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzRouter: arbitrary methods, paths, headers and bodies through the
// whole API never panic, never answer 500, and every error is JSON.
func FuzzRouter(f *testing.F) {
	for _, s := range []struct{ method, path, auth, body string }{
		{"GET", "/v1/nodes", "admin", ""},
		{"POST", "/v1/nodes/1/actions/remove", "admin", "{}"},
		{"DELETE", "/v1/nodes/1/actions/maintenance_on", "admin", ""},
		{"PUT", "/v1/users/1", "user_manager", `{"role":"admin"}`},
		{"GET", "/v1/nodes/%2e%2e/actions", "none", ""},
		{"POST", "/v1/bdbs?dry_run=maybe", "admin", `{"name":"x","memory_size":1}`},
		{"GET", "/v1/users?index=18446744073709551615&wait=1ms", "admin", ""},
		{"PATCH", "/", "", "x"},
	} {
		f.Add(s.method, s.path, s.auth, s.body)
	}
	e := newModelEnv(f)
	f.Fuzz(func(t *testing.T, method, path, as, body string) {
		if !validMethod(method) {
			return
		}
		r, err := http.NewRequest(method, "http://node", strings.NewReader(body))
		if err != nil {
			return
		}
		u, err := url.Parse(path)
		if err != nil || !strings.HasPrefix(u.Path, "/") {
			return
		}
		if u.Query().Has("wait") || u.Query().Has("index") {
			return // blocking reads would only slow the fuzzer down
		}
		r.URL.Path, r.URL.RawPath, r.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
		if usr, ok := e.users[as]; ok {
			r.SetBasicAuth(usr.Email, usr.Password)
		} else if as != "" {
			r.Header.Set("Authorization", as)
		}
		w := e.serve(r)
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s as %q: %d %s", method, path, as, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var eb struct {
				Code string `json:"error_code"`
				Desc string `json:"description"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || eb.Code == "" || eb.Desc == "" {
				t.Fatalf("%s %s: error body %q", method, path, w.Body)
			}
		}
	})
}

func validMethod(m string) bool {
	switch m {
	case "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS":
		return true
	}
	return false
}
