package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// refusedURL is an https URL on which nothing listens: connections to it
// are refused.
func refusedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "https://" + addr
}

func runWith(t *testing.T, url string, args ...string) (string, string, error) {
	t.Helper()
	var out, errs bytes.Buffer
	env := map[string]string{"CNM_URL": url, "CNM_PASSWORD": "pw"}
	err := run(t.Context(), args, func(k string) string { return env[k] }, &out, &errs)
	return out.String(), errs.String(), err
}

func TestRun_MovesOnToTheNextEndpointWhenOneRefusesConnections(t *testing.T) {
	var posts int
	var mu sync.Mutex
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodPost {
			posts++
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"leader": 2, "path": r.URL.Path})
	}))
	defer srv.Close()
	dead := refusedURL(t)
	for _, args := range [][]string{{"cluster"}, {"post", "/v1/users", "{}"}} {
		out, errs, err := runWith(t, dead+" , "+srv.URL+"/", args...)
		if err != nil {
			t.Fatalf("%v: %v (%s)", args, err, errs)
		}
		if !strings.Contains(out, `"leader": 2`) {
			t.Fatalf("%v: output %q is not the second endpoint's answer", args, out)
		}
	}
	if posts != 1 {
		t.Fatalf("the second endpoint got %d POSTs, want 1", posts)
	}
	// Every endpoint refusing: the error says so.
	if _, _, err := runWith(t, dead+","+refusedURL(t), "cluster"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("two refusing endpoints: error %v, want connection refused", err)
	}
}

func TestRun_AnHTTPErrorIsTheAnswerNotAReasonToMoveOn(t *testing.T) {
	var second int
	first := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error_code":"node_not_found","description":"node 9"}`))
	}))
	defer first.Close()
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { second++ }))
	defer other.Close()
	if _, _, err := runWith(t, first.URL+","+other.URL, "node", "9"); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Fatalf("error %v, want the first endpoint's 404", err)
	}
	if second != 0 {
		t.Fatalf("the second endpoint was asked %d times after an HTTP error", second)
	}
}

// dyingServer serves the action through the script of as until its die-th
// read, and from then on drops every connection without an answer, as a
// node whose process exited mid-way (a removed node, a crash).
type dyingServer struct {
	as   *actionServer
	mu   sync.Mutex
	gets int
	die  int
	// notMember: answer 503 not_a_member instead of dropping connections.
	notMember bool
}

func (d *dyingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	if r.Method == http.MethodGet {
		d.gets++
	}
	dead := d.gets >= d.die
	d.mu.Unlock()
	if !dead {
		d.as.ServeHTTP(w, r)
		return
	}
	if d.notMember {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error_code":"not_a_member","description":"this node was removed from the cluster"}`))
		return
	}
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

func TestFollow_CompletesThroughAnotherEndpointWhenTheFirstDies(t *testing.T) {
	for _, notMember := range []bool{false, true} {
		name := "connections dropped"
		if notMember {
			name = "answers not_a_member"
		}
		t.Run(name, func(t *testing.T) {
			// Both nodes show the same action: the cluster's state.
			script := []scripted{act("t1", "running", 50, "moving"), act("t1", "completed", 100, "node removed")}
			first := &dyingServer{as: &actionServer{script: script}, die: 2, notMember: notMember}
			srv1 := httptest.NewUnstartedServer(first)
			srv1.EnableHTTP2 = false
			srv1.StartTLS()
			defer srv1.Close()
			second := &actionServer{script: script[1:]}
			srv2 := httptest.NewTLSServer(second)
			defer srv2.Close()
			out, errs, err := runWith(t, srv1.URL+","+srv2.URL, "-progress", "lines", "-o", "json", "action", "2", "maintenance_on")
			if err != nil {
				t.Fatalf("run: %v\n%s", err, errs)
			}
			var final map[string]any
			if json.Unmarshal([]byte(out), &final) != nil || final["status"] != "completed" {
				t.Fatalf("output %q is not the completed action", out)
			}
			if !strings.Contains(errs, "completed  100.0%") {
				t.Fatalf("progress lines do not end completed:\n%s", errs)
			}
			second.mu.Lock()
			defer second.mu.Unlock()
			if second.gets == 0 || second.posted != "" {
				t.Fatalf("second endpoint: %d reads, posted %q; want reads and no second POST", second.gets, second.posted)
			}
		})
	}
}
