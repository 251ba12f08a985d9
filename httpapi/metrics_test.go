package httpapi_test

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// scrape reads /metrics as role and returns each sample line's value by
// its name and labels, exactly as written ("name{a=\"b\"}").
func scrape(t *testing.T, e *env, role string) map[string]float64 {
	t.Helper()
	w := e.call(role, "GET", "/metrics", "")
	mustStatus(t, w, http.StatusOK)
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type = %q, want the Prometheus text format", ct)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(w.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	return samples
}

func TestMetrics_ReportRaftHTTPModelAndActions(t *testing.T) {
	e := newModelEnv(t)
	// One refused and one accepted write, so that both codes are counted.
	mustStatus(t, e.call("admin", "POST", "/v1/nodes/1/actions/no_such_action", "{}"), http.StatusBadRequest)
	mustStatus(t, e.call("admin", "POST", "/v1/nodes/1/actions/enslave_node", "{}"), http.StatusOK)
	for range 3 {
		mustStatus(t, e.call("db_viewer", "GET", "/v1/bdbs", ""), http.StatusOK)
	}

	got := scrape(t, e, "cluster_viewer")
	st := e.state()
	want := map[string]float64{
		`cnm_raft_state{state="leader"}`:                                    1,
		`cnm_raft_state{state="follower"}`:                                  0,
		`cnm_raft_leader_uid`:                                               1,
		`cnm_fsm_applied_index`:                                             float64(e.applied()),
		`cnm_cluster_nodes{status="active"}`:                                float64(len(st.Nodes)),
		`cnm_cluster_bdbs`:                                                  1,
		`cnm_cluster_shards{role="master"}`:                                 2,
		`cnm_cluster_shards{role="slave"}`:                                  2,
		`cnm_node_actions{action="enslave_node",status="queued"}`:           1,
		`cnm_node_action_progress{action="enslave_node",node_uid="1"}`:      0,
		`cnm_http_requests_total{code="200",method="GET",route="/v1/bdbs"}`: 3,
		`cnm_http_requests_total{code="400",method="POST",route="/v1/nodes/{uid}/actions/{action}"}`: 1,
		`cnm_http_requests_total{code="200",method="POST",route="/v1/nodes/{uid}/actions/{action}"}`: 1,
		`cnm_http_request_duration_seconds_count{method="GET",route="/v1/bdbs"}`:                     3,
	}
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, v)
		}
	}
	// The accepted write was committed by this (leading) node.
	if got["cnm_raft_apply_duration_seconds_count"] < 1 {
		t.Errorf("cnm_raft_apply_duration_seconds_count = %v, want at least 1", got["cnm_raft_apply_duration_seconds_count"])
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := got[name]; !ok {
			t.Errorf("%s missing: the runtime collectors are not registered", name)
		}
	}
}

func TestMetrics_UnmatchedPathsShareOneLabel(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/nope", "/v1/nope/1", "/v1/nope/2"} {
		mustStatus(t, e.call("admin", "GET", p, ""), http.StatusNotFound)
	}
	got := scrape(t, e, "admin")
	if v := got[`cnm_http_requests_total{code="404",method="GET",route="unmatched"}`]; v != 3 {
		t.Fatalf("unmatched 404s counted %v, want 3", v)
	}
	for name := range got {
		if strings.Contains(name, "/nope") {
			t.Fatalf("a caller-chosen path became a label: %s", name)
		}
	}
}

func TestMetrics_NeedCredentials(t *testing.T) {
	e := newEnv(t)
	assertError(t, e, e.call("", "GET", "/metrics", ""), http.StatusUnauthorized, "unauthorized")
	assertError(t, e, e.call("none", "GET", "/metrics", ""), http.StatusForbidden, "forbidden")
}
