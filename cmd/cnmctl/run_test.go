package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

func TestCommand_MapsToRequests(t *testing.T) {
	tests := []struct {
		args               []string
		method, path, body string
		follow             *target
		wantErr            bool
	}{
		{args: []string{"nodes"}, method: "GET", path: "/v1/nodes"},
		{args: []string{"node", "3"}, method: "GET", path: "/v1/nodes/3"},
		{args: []string{"post", "/v1/users", `{"a":1}`}, method: "POST", path: "/v1/users", body: `{"a":1}`},
		{args: []string{"delete", "/v1/users/2"}, method: "DELETE", path: "/v1/users/2"},
		{args: []string{"action", "2", "maintenance_on", `{"keep_slave_shards":true}`},
			follow: &target{node: "2", action: "maintenance_on", start: true, params: `{"keep_slave_shards":true}`}},
		{args: []string{"watch", "3", "remove"}, follow: &target{node: "3", action: "remove"}},
		{args: []string{"watch", "3", "remove", "{}"}, wantErr: true},
		{args: []string{"action", "2"}, wantErr: true},
		{args: []string{"node"}, wantErr: true},
		{args: []string{"cert", "2"}, method: "GET", path: "/v1/nodes/2/certificate"},
		{args: []string{"rotate-cert", "2"}, method: "POST", path: "/v1/nodes/2/certificate/rotate"},
		{args: []string{"rotate-cert"}, wantErr: true},
		{args: []string{"get", "v1/nodes"}, wantErr: true},
		{args: []string{"frobnicate"}, wantErr: true},
		{args: nil, wantErr: true},
	}
	for _, tc := range tests {
		got, err := command(tc.args)
		if (err != nil) != tc.wantErr || got.method != tc.method || got.path != tc.path || got.body != tc.body ||
			!reflect.DeepEqual(got.follow, tc.follow) {
			t.Errorf("%v: got %+v (follow %+v) %v", tc.args, got, got.follow, err)
		}
	}
}

func TestRun_SendsCredentialsAndPrettyPrints(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		if u != "me@x.io" || p != "pw" || r.URL.Path != "/v1/cluster" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]int{"leader": 2})
	}))
	defer srv.Close()
	var out, errs bytes.Buffer
	env := map[string]string{"CNM_URL": srv.URL, "CNM_USER": "me@x.io", "CNM_PASSWORD": "pw"}
	if err := run(t.Context(), []string{"cluster"}, func(k string) string { return env[k] }, &out, &errs); err != nil {
		t.Fatalf("run: %v (%s)", err, errs.String())
	}
	if !strings.Contains(out.String(), "\"leader\": 2") {
		t.Fatalf("output %q is not the indented answer", out.String())
	}
	env["CNM_PASSWORD"] = "wrong"
	if err := run(t.Context(), []string{"cluster"}, func(k string) string { return env[k] }, &out, &errs); err == nil {
		t.Fatal("a 401 answer was not an error")
	}
}
