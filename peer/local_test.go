package peer_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cnm/fsm"
	"cnm/peer"
)

const ownAddr = "127.0.0.7:9443"

// ownClient is a node's peer client whose own agent (under /agent) is h; it
// counts the connections it tries to open, and opens none.
func ownClient(h http.Handler) (*peer.Client, *atomic.Int32) {
	hc, dials := ownHTTP(h)
	return peer.NewClient(hc), dials
}

// ownHTTP is the HTTP client beneath ownClient.
func ownHTTP(h http.Handler) (*http.Client, *atomic.Int32) {
	dials := &atomic.Int32{}
	hc := peer.NewHTTPClient(&tls.Config{MinVersion: tls.VersionTLS13}, "127.0.0.7", func(_ context.Context, _, _, remote string) (net.Conn, error) {
		dials.Add(1)
		return nil, errors.New("no network in this test: " + remote)
	})
	peer.ServeOwn(hc, ownAddr, "/agent", h)
	return hc, dials
}

// TestServeOwn: a node's calls to its own agent are answered in the process,
// with the handler's status, body and errors as a remote caller gets them,
// and every other call still goes to the network.
func TestServeOwn(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Name string }
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"name": in.Name, "path": r.URL.Path, "query": r.URL.RawQuery,
			"timeout": r.Header.Get("X-Timeout"), "method": r.Method})
	})
	refuse := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		_ = json.NewEncoder(w).Encode(fsm.ErrStaleTerm.With("term 6 owns it"))
	})
	panics := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("broken handler") })
	tests := []struct {
		name      string
		h         http.Handler
		addr      string
		path      string
		want      map[string]string
		wantErr   *fsm.Error
		status    int
		wantDials int32
	}{
		{name: "own agent", h: echo, addr: ownAddr, path: "/agent/shards/1/promote?x=1",
			want: map[string]string{"name": "n", "path": "/agent/shards/1/promote", "query": "x=1", "timeout": "5", "method": "POST"}},
		{name: "refusal keeps its status and code", h: refuse, addr: ownAddr, path: "/agent/shards/1/promote",
			wantErr: fsm.ErrStaleTerm, status: http.StatusConflict},
		{name: "a panic is a broken answer, not a crash", h: panics, addr: ownAddr, path: "/agent/x",
			status: http.StatusInternalServerError},
		{name: "own address, another endpoint", h: echo, addr: ownAddr, path: "/v1/ping", wantDials: 1},
		{name: "prefix without its slash", h: echo, addr: ownAddr, path: "/agentx/y", wantDials: 1},
		{name: "another node's agent", h: echo, addr: "127.0.0.8:9443", path: "/agent/x", wantDials: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, dials := ownClient(tc.h)
			var got map[string]string
			err := c.Call(context.Background(), http.MethodPost, tc.addr, tc.path, http.Header{"X-Timeout": {"5"}}, map[string]string{"name": "n"}, &got)
			if n := dials.Load(); n != tc.wantDials {
				t.Fatalf("%d connections tried, want %d", n, tc.wantDials)
			}
			var re *peer.RemoteError
			switch {
			case tc.wantDials > 0:
				if err == nil {
					t.Fatal("a call that went to the network (which this test has none of) succeeded")
				}
			case tc.status != 0:
				if !errors.As(err, &re) || re.Status != tc.status {
					t.Fatalf("error %v, want an answer of %d", err, tc.status)
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v does not match %s", err, tc.wantErr.Code)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range tc.want {
					if got[k] != v {
						t.Errorf("%s = %q, want %q (answer %v)", k, got[k], v, got)
					}
				}
			}
		})
	}
}

// TestServeOwnEnds: once the route is ended (a node's crash in tests), a
// node's calls to itself go to the network like any other.
func TestServeOwnEnds(t *testing.T) {
	hc, dials := ownHTTP(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	c := peer.NewClient(hc)
	if err := c.Call(context.Background(), http.MethodGet, ownAddr, "/agent/shards", nil, nil, nil); err != nil || dials.Load() != 0 {
		t.Fatalf("served in the process: %v, %d connections tried", err, dials.Load())
	}
	peer.ServeOwn(hc, "", "", nil)
	if err := c.Call(context.Background(), http.MethodGet, ownAddr, "/agent/shards", nil, nil, nil); err == nil || dials.Load() != 1 {
		t.Fatalf("after the route ended: %v, %d connections tried; want a failed dial", err, dials.Load())
	}
}

// TestServeOwnStreams: the answer reaches the caller as the handler writes
// it (a shard's data is not held in memory whole), and a caller that stops
// waiting ends the call and the handler's context.
func TestServeOwnStreams(t *testing.T) {
	more := make(chan struct{})
	ended := make(chan error, 1)
	c, _ := ownClient(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("first\n"))
		select {
		case <-more:
		case <-r.Context().Done():
			ended <- r.Context().Err()
			return
		}
		_, _ = w.Write([]byte("second\n"))
	}))
	get := func(ctx context.Context) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+ownAddr+"/agent/shards/1/data", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	// The first line arrives while the handler still waits to write the
	// second: a buffered answer would deadlock here.
	resp := get(context.Background())
	lines := bufio.NewReader(resp.Body)
	if l, err := lines.ReadString('\n'); err != nil || l != "first\n" {
		t.Fatalf("first line %q, %v", l, err)
	}
	close(more)
	if l, err := lines.ReadString('\n'); err != nil || l != "second\n" {
		t.Fatalf("second line %q, %v", l, err)
	}
	if _, err := lines.ReadString('\n'); err == nil {
		t.Fatal("the answer goes on after the handler returned")
	}
	resp.Body.Close()

	// A caller that gives up mid-answer.
	more = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	resp = get(ctx)
	defer resp.Body.Close()
	lines = bufio.NewReader(resp.Body)
	if l, err := lines.ReadString('\n'); err != nil || l != "first\n" {
		t.Fatalf("first line %q, %v", l, err)
	}
	cancel()
	if _, err := lines.ReadString('\n'); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after the caller gave up: %v, want %v", err, context.Canceled)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("handler's context ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context did not end when its caller gave up")
	}
}

// TestServeOwnCallerGivesUpBeforeAnswer: a handler that never answers does
// not hold its caller past the caller's deadline.
func TestServeOwnCallerGivesUpBeforeAnswer(t *testing.T) {
	c, _ := ownClient(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := c.Call(ctx, http.MethodGet, ownAddr, "/agent/shards", nil, nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "/agent/shards") {
		t.Fatalf("call of a handler that never answers: %v", err)
	}
}
