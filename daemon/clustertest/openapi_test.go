package clustertest_test

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"cnm/daemon/clustertest"
	"cnm/httpapi"
)

// TestOpenAPI_LiveAnswersMatchTheDocument sends requests of every kind to
// a real cluster (answers and errors both) and checks each answer against
// the document GET /v1/openapi.json serves.
func TestOpenAPI_LiveAnswersMatchTheDocument(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	c.Leader(15 * time.Second)
	served := c.MustDo(2, "GET", "/v1/openapi.json", nil, 200)
	if !bytes.Equal(served.Body, httpapi.OpenAPIJSON) {
		t.Fatal("GET /v1/openapi.json does not serve the document")
	}
	doc, err := openapi3.NewLoader().LoadFromData(served.Body)
	if err != nil {
		t.Fatal(err)
	}
	doc.Servers = nil // match paths on any node's address
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	c.MustDo(1, "POST", "/v1/bdbs", map[string]any{"name": "orders", "memory_size": 1 << 30, "shards_count": 2, "replication": true}, 200)
	c.MustDo(1, "POST", "/v1/users", map[string]any{"email": "v@x.io", "password": "viewer-pass", "role": "cluster_viewer"}, 200)
	requests := []struct {
		method, path string
		body         any
		status       int
	}{
		{"GET", "/v1/ping", nil, 200},
		{"GET", "/v1/bootstrap", nil, 200},
		{"POST", "/v1/bootstrap/create_cluster", map[string]any{"cluster": map[string]any{"name": "x"}, "credentials": map[string]any{"username": "a@b.c", "password": "p"}}, 409},
		{"GET", "/v1/cluster", nil, 200},
		{"GET", "/v1/cluster?stale=true", nil, 200},
		{"GET", "/v1/cluster/policy", nil, 200},
		{"PUT", "/v1/cluster/policy", map[string]any{"default_shards_placement": "sparse"}, 200},
		{"GET", "/v1/nodes", nil, 200},
		{"GET", "/v1/nodes/2", nil, 200},
		{"GET", "/v1/nodes/9", nil, 404},
		{"PUT", "/v1/nodes/3", map[string]any{"rack_id": "r3"}, 200},
		{"GET", "/v1/nodes/status", nil, 200},
		{"GET", "/v1/nodes/2/status", nil, 200},
		{"GET", "/v1/nodes/2/certificate", nil, 200},
		{"POST", "/v1/nodes/2/actions/maintenance_on?dry_run=true", map[string]any{}, 200},
		{"POST", "/v1/nodes/2/actions/maintenance_on?dry_run=yes", map[string]any{}, 400},
		{"POST", "/v1/nodes/2/actions/maintenance_on", map[string]any{"keep_slave_shards": false}, 200},
		{"GET", "/v1/nodes/2/actions/maintenance_on", nil, 200},
		{"GET", "/v1/nodes/2/actions", nil, 200},
		{"GET", "/v1/nodes/actions", nil, 200},
		{"GET", "/v1/nodes/2/snapshots", nil, 200},
		{"GET", "/v1/nodes/2/actions/remove", nil, 404},
		{"GET", "/v1/bdbs", nil, 200},
		{"GET", "/v1/bdbs/1", nil, 200},
		{"GET", "/v1/bdbs/7", nil, 404},
		{"GET", "/v1/shards", nil, 200},
		{"GET", "/v1/shards/1", nil, 200},
		{"GET", "/v1/users", nil, 200},
		{"GET", "/v1/users/1", nil, 200},
		{"GET", "/v1/users/permissions", nil, 200},
		{"PUT", "/v1/users/2", map[string]any{"name": "Viewer"}, 200},
		{"DELETE", "/v1/users/2", nil, 200},
		{"GET", "/metrics", nil, 200},
		{"DELETE", "/v1/bdbs/1", nil, 200},
	}
	for _, rq := range requests {
		resp, err := c.Do(1, rq.method, rq.path, rq.body)
		if err != nil {
			t.Fatalf("%s %s: %v", rq.method, rq.path, err)
		}
		if resp.Status != rq.status {
			t.Errorf("%s %s: %d %s, want %d", rq.method, rq.path, resp.Status, resp.Body, rq.status)
			continue
		}
		u, _ := url.Parse("https://127.0.0.1:9443" + rq.path)
		req := &http.Request{Method: rq.method, URL: u, Header: http.Header{"Content-Type": {"application/json"}}}
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Errorf("%s %s: no route of the document matches: %v", rq.method, rq.path, err)
			continue
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		header := resp.Header.Clone()
		if header.Get("Content-Type") == "" {
			header.Set("Content-Type", "application/json")
		}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.Status, Header: header,
			Body: io.NopCloser(bytes.NewReader(resp.Body))}
		if err := openapi3filter.ValidateResponse(t.Context(), out); err != nil {
			t.Errorf("%s %s: the answer (%d) does not match the document: %v\n%s", rq.method, rq.path, resp.Status, err, resp.Body)
		}
	}
}
