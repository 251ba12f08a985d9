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

// httpSeries returns the cnm_http_ sample lines of a scrape and its size.
func httpSeries(t *testing.T, e *env) (map[string]bool, int) {
	t.Helper()
	w := e.call("admin", "GET", "/metrics", "")
	mustStatus(t, w, http.StatusOK)
	size := w.Body.Len()
	series := map[string]bool{}
	for _, line := range strings.Split(w.Body.String(), "\n") {
		if strings.HasPrefix(line, "cnm_http_") {
			series[line[:strings.LastIndexByte(line, ' ')]] = true
		}
	}
	return series, size
}

// TestMetrics_InventedMethodsDoNotGrowTheOutput: methods are caller-chosen
// text; 2,500 unique 4 KB methods once grew /metrics from 14 KB to 103 MB
// (SPEC §9). They share one label, so the set of series stays the same.
func TestMetrics_InventedMethodsDoNotGrowTheOutput(t *testing.T) {
	e := newEnv(t, withoutRoleUsers())
	targets := []struct{ as, path string }{
		{"admin", "/v1/nodes"}, {"", "/v1/nodes/1/actions/remove"}, {"admin", "/v1/nope"},
		{"", "/v1/ping"}, {"admin", "/v1//nodes"}, {"", "/metrics"},
	}
	send := func(from, to int) {
		for i := from; i < to; i++ {
			method := "X" + strconv.Itoa(i) + strings.Repeat("M", 4096)
			tg := targets[i%len(targets)]
			if w := e.call(tg.as, method, tg.path, ""); w.Code < 400 {
				t.Fatalf("%s with an invented method answered %d", tg.path, w.Code)
			}
		}
	}
	send(0, 2*len(targets))
	httpSeries(t, e) // a scrape is counted after it answers: count one first
	before, sizeBefore := httpSeries(t, e)
	const n = 10000
	send(2*len(targets), n)
	after, sizeAfter := httpSeries(t, e)
	t.Logf("/metrics: %d bytes after %d invented methods, %d bytes after %d", sizeBefore, 2*len(targets), sizeAfter, n)
	for s := range after {
		if !before[s] {
			t.Errorf("new series after more invented methods: %.200s", s)
		}
		if strings.Contains(s, "MMMM") {
			t.Errorf("an invented method became a label: %.200s", s)
		}
	}
	// Counter values gain digits; nothing else may grow.
	if sizeAfter-sizeBefore > 2048 {
		t.Errorf("/metrics grew from %d to %d bytes", sizeBefore, sizeAfter)
	}
	if !before[`cnm_http_requests_total{code="405",method="OTHER",route="unmatched"}`] {
		t.Errorf("no OTHER series for the 405s among %v", before)
	}
}
