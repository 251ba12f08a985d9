package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The web view's files are served to anyone, with a policy that runs
// only its own script; its requests that fail to sign in get no Basic
// challenge (a browser would prompt), other clients do.
func TestUI_ServesTheViewAndNoChallengeToItsScript(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, method, path string
		header             map[string]string
		status             int
		contains           string
		challenge          bool
	}{
		{name: "the page", method: "GET", path: "/ui/", status: 200, contains: `<form id="signin">`},
		{name: "its script", method: "GET", path: "/ui/app.js", status: 200, contains: "loadPermissions"},
		{name: "its style", method: "GET", path: "/ui/style.css", status: 200, contains: ".node"},
		{name: "/ui goes to /ui/", method: "GET", path: "/ui", status: http.StatusMovedPermanently},
		{name: "no writes", method: "POST", path: "/ui/", status: http.StatusMethodNotAllowed},
		{name: "a wrong password from a client", method: "GET", path: "/v1/users/permissions",
			header: map[string]string{"Authorization": "Basic eDp5"}, status: 401, challenge: true},
		{name: "a wrong password from the view", method: "GET", path: "/v1/users/permissions",
			header: map[string]string{"Authorization": "Basic eDp5", "X-Requested-With": "XMLHttpRequest"}, status: 401, contains: `"unauthorized"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(c.method, c.path, nil)
			for k, v := range c.header {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, r)
			body, _ := io.ReadAll(w.Body)
			if w.Code != c.status || !strings.Contains(string(body), c.contains) {
				t.Fatalf("%d %q, want %d holding %q", w.Code, body, c.status, c.contains)
			}
			if got := w.Header().Get("WWW-Authenticate") != ""; got != c.challenge {
				t.Errorf("Basic challenge sent: %v, want %v", got, c.challenge)
			}
			if c.status == 200 && !strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'self'") {
				t.Errorf("no content security policy: %q", w.Header().Get("Content-Security-Policy"))
			}
		})
	}
}

// A page of a node's origin may call any node (the web view carrying on
// through another node); no other origin gets CORS headers.
func TestCrossNode_OnlyTheNodesOwnOriginsMayCall(t *testing.T) {
	e := newEnv(t)
	var nodes []struct {
		APIAddr string `json:"api_addr"`
	}
	if err := json.Unmarshal(e.call("admin", "GET", "/v1/nodes", "").Body.Bytes(), &nodes); err != nil || len(nodes) == 0 {
		t.Fatalf("nodes: %v", err)
	}
	node := "https://" + nodes[0].APIAddr
	cases := []struct {
		name, method, origin, preflight string
		status                          int
		allowed                         bool
	}{
		{name: "a node's page", method: "GET", origin: node, status: 200, allowed: true},
		{name: "a node's page's preflight", method: "OPTIONS", origin: node, preflight: "POST", status: 204, allowed: true},
		{name: "another site", method: "GET", origin: "https://evil.example", status: 200},
		{name: "another site's preflight", method: "OPTIONS", origin: "https://evil.example", preflight: "POST", status: 405},
		{name: "a node's address over http", method: "GET", origin: "http://" + nodes[0].APIAddr, status: 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.request("admin", c.method, "/v1/nodes", "")
			r.Header.Set("Origin", c.origin)
			if c.preflight != "" {
				r.Header.Set("Access-Control-Request-Method", c.preflight)
			}
			w := e.serve(r)
			if w.Code != c.status {
				t.Errorf("status %d, want %d", w.Code, c.status)
			}
			if got := w.Header().Get("Access-Control-Allow-Origin") == c.origin; got != c.allowed {
				t.Errorf("allowed: %v (%q), want %v", got, w.Header().Get("Access-Control-Allow-Origin"), c.allowed)
			}
		})
	}
}
