package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder answers every request as a cluster would, just enough for the
// command to finish, and records what was asked.
type recorder struct {
	mu   sync.Mutex
	reqs []string // "METHOD path?query body"
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(body)))
	rec.mu.Unlock()
	switch {
	case strings.Contains(r.URL.Path, "/actions/") && r.Method == http.MethodPost:
		_, _ = io.WriteString(w, `{"task_id":"t1","status":"queued"}`)
	case strings.Contains(r.URL.Path, "/actions/") && r.Method == http.MethodGet:
		_, _ = io.WriteString(w, `{"task_id":"t1","status":"completed","progress":100}`)
	default:
		_, _ = io.WriteString(w, `{}`)
	}
}

func TestRun_CommandLinesMapToRequests(t *testing.T) {
	tests := []struct {
		args []string
		// first is the first request sent; "" when the command line is
		// refused (exit 2) and nothing may be sent.
		first string
	}{
		{args: []string{"nodes"}, first: "GET /v1/nodes"},
		{args: []string{"node", "3"}, first: "GET /v1/nodes/3"},
		{args: []string{"node", "get", "3"}, first: "GET /v1/nodes/3"},
		{args: []string{"post", "/v1/users", `{"a":1}`}, first: `POST /v1/users {"a":1}`},
		{args: []string{"delete", "/v1/users/2"}, first: "DELETE /v1/users/2"},
		{args: []string{"action", "2", "maintenance_on", `{"keep_slave_shards":true}`},
			first: `POST /v1/nodes/2/actions/maintenance_on {"keep_slave_shards":true}`},
		{args: []string{"node", "2", "maintenance", "on", "--keep-slave-shards", "--evict-dbs", "1,3"},
			first: `POST /v1/nodes/2/actions/maintenance_on {"evict_dbs":["1","3"],"keep_slave_shards":true}`},
		{args: []string{"node", "2", "maintenance", "off", "--dry-run"}, first: "POST /v1/nodes/2/actions/maintenance_off?dry_run=true {}"},
		{args: []string{"node", "3", "remove", "--wait-for-persistence=false", "--wait"},
			first: `POST /v1/nodes/3/actions/remove {"wait_for_persistence":false}`},
		{args: []string{"node", "1", "enslave", "--deadline-seconds", "60"}, first: `POST /v1/nodes/1/actions/enslave_node {"deadline_seconds":60}`},
		{args: []string{"watch", "3", "remove"}, first: "GET /v1/nodes/3/actions/remove?index=0&wait=30s"},
		{args: []string{"action", "list"}, first: "GET /v1/nodes/actions"},
		{args: []string{"action", "list", "--node", "2"}, first: "GET /v1/nodes/2/actions"},
		{args: []string{"action", "cancel", "2", "remove"}, first: "DELETE /v1/nodes/2/actions/remove"},
		{args: []string{"db", "create", "cache", "--memory-size", "256MiB", "--shards", "2", "--replication"},
			first: `POST /v1/bdbs {"data_persistence":"disabled","memory_size":268435456,"name":"cache","replication":true,"shards_count":2}`},
		{args: []string{"db", "delete", "4"}, first: "DELETE /v1/bdbs/4"},
		{args: []string{"policy", "set", "rack_aware=true", "default_shards_placement=sparse"},
			first: `PUT /v1/cluster/policy {"default_shards_placement":"sparse","rack_aware":true}`},
		{args: []string{"cert", "2"}, first: "GET /v1/nodes/2/certificate"},
		{args: []string{"node", "2", "rotate-cert"}, first: "POST /v1/nodes/2/certificate/rotate"},
		{args: []string{"-o", "json", "-url", "URL", "nodes"}, first: "GET /v1/nodes"},
		// Refused before anything is sent.
		{args: []string{"watch", "3", "remove", "{}"}},
		{args: []string{"action", "2"}},
		{args: []string{"node", "x", "remove"}},
		{args: []string{"rotate-cert"}},
		{args: []string{"get", "v1/nodes"}},
		{args: []string{"frobnicate"}},
		{args: []string{"nodes", "--frobnicate"}},
		{args: []string{"db", "create", "cache"}},
		{args: []string{"db", "create", "cache", "--memory-size", "lots"}},
		{args: []string{"-o", "xml", "nodes"}},
		{args: []string{"policy", "set", "rack_aware"}},
	}
	for _, tc := range tests {
		rec := &recorder{}
		srv := httptest.NewTLSServer(rec)
		args := slices.Clone(tc.args)
		for i := range args {
			if args[i] == "URL" {
				args[i] = srv.URL
			}
		}
		env := map[string]string{"CNM_URL": srv.URL, "CNM_PASSWORD": "pw", "HOME": t.TempDir()}
		var out, errs bytes.Buffer
		err := run(t.Context(), append([]string{"-o", "json", "--progress", "none"}, args...), func(k string) string { return env[k] }, &out, &errs)
		srv.Close()
		switch {
		case tc.first == "" && exitCode(err) != exitUsage:
			t.Errorf("%v: exit %d (%v), want %d", tc.args, exitCode(err), err, exitUsage)
		case tc.first == "" && len(rec.reqs) > 0:
			t.Errorf("%v: refused, yet sent %v", tc.args, rec.reqs)
		case tc.first != "" && err != nil:
			t.Errorf("%v: %v (%s)", tc.args, err, errs.String())
		case tc.first != "" && (len(rec.reqs) == 0 || rec.reqs[0] != tc.first):
			t.Errorf("%v: sent %q, want first %q", tc.args, rec.reqs, tc.first)
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
	if !strings.Contains(out.String(), "\"leader\": 2") { // no table for the cluster object: indented JSON
		t.Fatalf("output %q is not the indented answer", out.String())
	}
	env["CNM_PASSWORD"] = "wrong"
	if err := run(t.Context(), []string{"cluster"}, func(k string) string { return env[k] }, &out, &errs); err == nil {
		t.Fatal("a 401 answer was not an error")
	}
}

// scriptedServer answers the paths it knows with fixed bodies, 404 else,
// and counts the requests.
func scriptedServer(t *testing.T, answers map[string]string) (url string, count func() int) {
	t.Helper()
	var mu sync.Mutex
	n := 0
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
		body, ok := answers[r.Method+" "+r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error_code":"not_found","description":"no such path"}`)
			return
		}
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func TestRun_ExitCodes(t *testing.T) {
	url, _ := scriptedServer(t, map[string]string{
		"POST /v1/nodes/2/actions/remove": `{"task_id":"t1","status":"queued"}`,
		"GET /v1/nodes/2/actions/remove":  `{"task_id":"t1","status":"failed","progress":50,"error_code":"insufficient_resources","error_message":"no room"}`,
		"GET /v1/nodes":                   `[]`,
	})
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want int
	}{
		{name: "done", args: []string{"nodes"}, want: exitOK},
		{name: "an HTTP error", args: []string{"get", "/v1/nope"}, want: exitError},
		{name: "a usage error", args: []string{"nodes", "--nope"}, want: exitUsage},
		{name: "no password", args: []string{"nodes"}, env: map[string]string{"CNM_PASSWORD": ""}, want: exitUsage},
		{name: "the action failed", args: []string{"node", "2", "remove", "--wait"}, want: exitActionFailed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{"CNM_URL": url, "CNM_PASSWORD": "pw", "HOME": t.TempDir()}
			for k, v := range c.env {
				env[k] = v
			}
			var out, errs bytes.Buffer
			err := run(t.Context(), append([]string{"--progress", "none"}, c.args...), func(k string) string { return env[k] }, &out, &errs)
			if got := exitCode(err); got != c.want {
				t.Fatalf("exit %d (%v), want %d", got, err, c.want)
			}
		})
	}
}

// Settings come from the flag, else the environment, else the config
// file's context, else the default; a context names the cluster and the
// credentials.
func TestRun_CredentialsFromTheConfigFileContexts(t *testing.T) {
	var got []string
	var mu sync.Mutex
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		mu.Lock()
		got = append(got, u+":"+p)
		mu.Unlock()
		_, _ = io.WriteString(w, `[]`)
	}))
	defer srv.Close()
	home := t.TempDir()
	cfg := filepath.Join(home, ".config", "cnm", "config.yaml")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o700); err != nil {
		t.Fatal(err)
	}
	doc := "current-context: prod\ncontexts:\n" +
		"  - name: prod\n    url: " + srv.URL + "\n    user: ops@x.io\n    password: prodpw\n" +
		"  - name: lab\n    url: " + srv.URL + "\n    user: lab@x.io\n    password: labpw\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string // user:password sent; "" for a usage error
	}{
		{name: "the current context", args: []string{"users"}, want: "ops@x.io:prodpw"},
		{name: "--context", args: []string{"--context", "lab", "users"}, want: "lab@x.io:labpw"},
		{name: "the environment over the context", args: []string{"users"}, env: map[string]string{"CNM_PASSWORD": "envpw"}, want: "ops@x.io:envpw"},
		{name: "a flag over both", args: []string{"--user", "me@x.io", "users"}, env: map[string]string{"CNM_USER": "env@x.io"}, want: "me@x.io:prodpw"},
		{name: "an unknown context", args: []string{"--context", "nope", "users"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mu.Lock()
			got = nil
			mu.Unlock()
			env := map[string]string{"HOME": home}
			for k, v := range c.env {
				env[k] = v
			}
			var out, errs bytes.Buffer
			err := run(t.Context(), c.args, func(k string) string { return env[k] }, &out, &errs)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case c.want == "" && (exitCode(err) != exitUsage || len(got) > 0):
				t.Fatalf("exit %d (%v), sent %v; want a usage error and nothing sent", exitCode(err), err, got)
			case c.want != "" && (err != nil || len(got) != 1 || got[0] != c.want):
				t.Fatalf("sent %v (%v), want %s", got, err, c.want)
			}
		})
	}
}

func TestRun_OutputFormats(t *testing.T) {
	url, _ := scriptedServer(t, map[string]string{
		"GET /v1/users": `[{"uid":1,"email":"admin@cnm.local","name":"Admin","role":"admin"}]`,
	})
	cases := []struct{ output, want string }{
		{"table", "USER  EMAIL            NAME   ROLE\n1     admin@cnm.local  Admin  admin\n"},
		{"json", "[\n  {\n    \"email\": \"admin@cnm.local\",\n    \"name\": \"Admin\",\n    \"role\": \"admin\",\n    \"uid\": 1\n  }\n]\n"},
		{"yaml", "- email: admin@cnm.local\n  name: Admin\n  role: admin\n  uid: 1\n"},
	}
	for _, c := range cases {
		env := map[string]string{"CNM_URL": url, "CNM_PASSWORD": "pw", "HOME": t.TempDir()}
		var out, errs bytes.Buffer
		if err := run(t.Context(), []string{"user", "list", "-o", c.output}, func(k string) string { return env[k] }, &out, &errs); err != nil {
			t.Fatalf("-o %s: %v", c.output, err)
		}
		same := out.String() == c.want
		if c.output == "json" { // indented, in the server's order of keys
			var x, y any
			same = json.Unmarshal(out.Bytes(), &x) == nil && json.Unmarshal([]byte(c.want), &y) == nil && reflect.DeepEqual(x, y) &&
				strings.Contains(out.String(), "\n  {\n    \"")
		}
		if !same {
			t.Errorf("-o %s:\n%s\nwant:\n%s", c.output, out.String(), c.want)
		}
	}
}

// completion scripts for the shells, and the version, need no cluster.
func TestRun_CompletionAndVersion(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"completion", "bash"}, "__start_cnmctl"},
		{[]string{"completion", "zsh"}, "#compdef cnmctl"},
		{[]string{"completion", "fish"}, "complete -c cnmctl"},
		{[]string{"--version"}, "cnmctl version "},
		{[]string{"help", "exit-codes"}, "3  the followed action ended failed, aborted or cancelled"},
		{[]string{"node", "maintenance", "on", "--help"}, "cnmctl node NODE maintenance on [flags]"},
	}
	for _, c := range cases {
		var out, errs bytes.Buffer
		if err := run(t.Context(), c.args, func(string) string { return "" }, &out, &errs); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if !strings.Contains(out.String(), c.want) {
			t.Errorf("%v printed %.200q, want it to hold %q", c.args, out.String(), c.want)
		}
	}
}

// Ctrl-C while following stops the watching only, and says how to watch
// again and how to cancel the action.
func TestRun_InterruptStopsWatchingAndSaysHowToCancel(t *testing.T) {
	url, _ := scriptedServer(t, map[string]string{
		"GET /v1/nodes/2/actions/remove": `{"task_id":"t1","status":"running","progress":40}`,
	})
	env := map[string]string{"CNM_URL": url, "CNM_PASSWORD": "pw", "HOME": t.TempDir()}
	ctx, cancel := context.WithCancel(t.Context())
	var out, errs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--progress", "lines", "watch", "2", "remove"}, func(k string) string { return env[k] }, &out, &errs)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errs.String(), "running") {
		if time.Now().After(deadline) {
			t.Fatalf("no progress shown: %q", errs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) || exitCode(err) != exitError {
		t.Fatalf("run: %v (exit %d), want context.Canceled, exit %d", err, exitCode(err), exitError)
	}
	if !strings.Contains(errs.String(), "cancel it: cnmctl action cancel 2 remove") {
		t.Errorf("stderr %q does not say how to cancel", errs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
