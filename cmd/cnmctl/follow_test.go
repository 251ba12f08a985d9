package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// actionServer answers one node action: POST starts task t1, and each GET
// returns the next scripted answer, stamped with a growing X-Cnm-Index.
// It records the index each GET waited on.
type actionServer struct {
	mu      sync.Mutex
	script  []scripted
	posted  string
	waited  []string
	gets    int
	postErr int
}

type scripted struct {
	status int
	action map[string]any
}

func (s *actionServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.URL.Path != "/v1/nodes/2/actions/maintenance_on" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if r.Method == http.MethodPost {
		if s.postErr != 0 {
			w.WriteHeader(s.postErr)
			_, _ = w.Write([]byte(`{"error_code":"action_in_progress","description":"busy"}`))
			return
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(r.Body)
		s.posted = b.String()
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "queued", "task_id": "t1", "progress": 0})
		return
	}
	s.waited = append(s.waited, r.URL.Query().Get("index"))
	step := s.script[min(s.gets, len(s.script)-1)]
	s.gets++
	w.Header().Set("X-Cnm-Index", strconv.Itoa(100+s.gets))
	w.WriteHeader(step.status)
	if step.action != nil {
		_ = json.NewEncoder(w).Encode(step.action)
	} else {
		_, _ = w.Write([]byte(`{"error_code":"no_quorum","description":"no leader"}`))
	}
}

// actEvents is an action whose events so far are events.
func actEvents(task, status string, progress float64, events ...string) scripted {
	sc := act(task, status, progress, "")
	var evs []map[string]any
	for _, e := range events {
		evs = append(evs, map[string]any{"time": 1, "message": e})
	}
	sc.action["additional_info"] = map[string]any{"events": evs}
	return sc
}

func act(task, status string, progress float64, event string) scripted {
	a := map[string]any{"task_id": task, "status": status, "progress": progress,
		"additional_info": map[string]any{"events": []map[string]any{{"time": 1, "message": event}}}}
	if status == "failed" {
		a["error_code"], a["error_message"] = "insufficient_resources", "no room for shard 4"
	}
	return scripted{status: http.StatusOK, action: a}
}

func TestFollow_ShowsProgressUntilTheActionEnds(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		script    []scripted
		postErr   int
		wantErr   string // "" for success
		wantLines []string
		wantGets  int
	}{
		{
			name: "started action runs to completion through a leader change",
			args: []string{"-progress", "lines", "action", "2", "maintenance_on", `{"evict_ha_replica":false}`},
			script: []scripted{
				act("t1", "queued", 0, "submitted"),
				act("t1", "running", 25, "moved shard 1 to node 3"),
				{status: http.StatusServiceUnavailable},
				act("t1", "running", 25, "moved shard 1 to node 3"),
				act("t1", "running", 62.5, "moved shard 3 to node 1"),
				act("t1", "completed", 100, "done"),
			},
			wantLines: []string{"queued       0.0%  submitted", "running     25.0%  moved shard 1 to node 3",
				"running     62.5%  moved shard 3 to node 1", "completed  100.0%  done"},
			wantGets: 6,
		},
		{
			name:      "a failed action is an error naming its code",
			args:      []string{"-progress", "lines", "watch", "2", "maintenance_on"},
			script:    []scripted{act("t7", "running", 50, "moved"), act("t7", "failed", 50, "stopped")},
			wantErr:   "insufficient_resources: no room for shard 4",
			wantLines: []string{"running     50.0%  moved", "failed      50.0%  stopped"},
			wantGets:  2,
		},
		{
			name:     "another task replacing ours is reported, not followed",
			args:     []string{"-progress", "none", "action", "2", "maintenance_on"},
			script:   []scripted{act("t1", "running", 10, "x"), act("t2", "queued", 0, "y")},
			wantErr:  "task t1 is no longer node 2's latest maintenance_on: task t2 is",
			wantGets: 2,
		},
		{
			name: "a node that answers not_a_member is not waited on",
			args: []string{"-progress", "lines", "watch", "2", "maintenance_on"},
			script: []scripted{act("t3", "running", 50, "moving"),
				{status: http.StatusServiceUnavailable, action: map[string]any{"error_code": "not_a_member", "description": "removed"}}},
			wantErr:   "was removed from the cluster",
			wantLines: []string{"running     50.0%  moving"},
			wantGets:  2,
		},
		{
			// Two steps landed between two reads: both are printed.
			name: "every step is printed, also those done between two reads",
			args: []string{"-progress", "lines", "watch", "2", "maintenance_on"},
			script: []scripted{
				actEvents("t4", "running", 25, "planned 4 steps", "step 1/4: snapshot"),
				actEvents("t4", "running", 75, "planned 4 steps", "step 1/4: snapshot", "step 2/4: stop accepting shards", "step 3/4: shard 2 moved"),
				actEvents("t4", "completed", 100, "planned 4 steps", "step 1/4: snapshot", "step 2/4: stop accepting shards", "step 3/4: shard 2 moved", "step 4/4: shard 4 moved", "completed"),
			},
			wantLines: []string{"running     25.0%  planned 4 steps", "running     25.0%  step 1/4: snapshot",
				"running     75.0%  step 2/4: stop accepting shards", "running     75.0%  step 3/4: shard 2 moved",
				"completed  100.0%  step 4/4: shard 4 moved", "completed  100.0%  completed"},
			wantGets: 3,
		},
		{
			name:    "a refused start is an error, and nothing is followed",
			args:    []string{"-progress", "lines", "action", "2", "maintenance_on"},
			postErr: http.StatusConflict,
			wantErr: "HTTP 409",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			as := &actionServer{script: tc.script, postErr: tc.postErr}
			srv := httptest.NewTLSServer(as)
			defer srv.Close()
			var out, errs bytes.Buffer
			env := map[string]string{"CNM_URL": srv.URL, "CNM_PASSWORD": "pw"}
			// JSON: the last action object itself (a table is the default).
			err := run(t.Context(), append(slices.Clone(tc.args), "-o", "json"), func(k string) string { return env[k] }, &out, &errs)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("run: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("run error = %v, want one containing %q", err, tc.wantErr)
			}
			var lines []string
			for l := range strings.Lines(errs.String()) {
				lines = append(lines, strings.TrimRight(l, " \n"))
			}
			if fmt.Sprint(lines) != fmt.Sprint(tc.wantLines) {
				t.Fatalf("progress lines:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(tc.wantLines, "\n"))
			}
			as.mu.Lock()
			defer as.mu.Unlock()
			if as.gets != tc.wantGets {
				t.Fatalf("%d reads, want %d", as.gets, tc.wantGets)
			}
			// Each read waits past the index of the last action read.
			want := "0"
			for i, idx := range as.waited {
				if i > 0 && tc.script[i-1].status == http.StatusOK {
					want = strconv.Itoa(100 + i)
				}
				if idx != want {
					t.Fatalf("read %d waited on index %s, want %s (all: %v)", i+1, idx, want, as.waited)
				}
			}
			if len(tc.args) > 5 && as.posted != tc.args[5] {
				t.Fatalf("posted %q, want %q", as.posted, tc.args[5])
			}
			if tc.wantGets > 0 && !strings.Contains(out.String(), `"task_id"`) {
				t.Fatalf("stdout %q does not hold the last action object", out.String())
			}
		})
	}
}

func TestFollow_BarReachesTheFinalProgress(t *testing.T) {
	as := &actionServer{script: []scripted{act("t1", "running", 42.5, "moving"), act("t1", "completed", 100, "done")}}
	srv := httptest.NewTLSServer(as)
	defer srv.Close()
	var out, errs bytes.Buffer
	env := map[string]string{"CNM_URL": srv.URL, "CNM_PASSWORD": "pw"}
	if err := run(t.Context(), []string{"-progress", "bar", "-o", "json", "action", "2", "maintenance_on"},
		func(k string) string { return env[k] }, &out, &errs); err != nil {
		t.Fatalf("run: %v", err)
	}
	bar := errs.String()
	for _, want := range []string{"42%", "running: moving", "100%", "completed: done"} {
		if !strings.Contains(bar, want) {
			t.Fatalf("bar output lacks %q:\n%q", want, bar)
		}
	}
	var final map[string]any
	if err := json.Unmarshal(out.Bytes(), &final); err != nil || final["status"] != "completed" {
		t.Fatalf("-o json output %q is not the completed action (%v)", out.String(), err)
	}
}
