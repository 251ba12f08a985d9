package agent_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cnm/agent"
	"cnm/fsm"
)

// silentListener accepts connections on host and never reads from or
// writes to them, as a SIGSTOPped node's kernel does; they are closed when
// the test ends.
func silentListener(t *testing.T, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// within runs call and fails the test unless it returns an error within d.
func within(t *testing.T, d time.Duration, call func() error) error {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- call() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("call to a peer that never answers succeeded")
		}
		t.Logf("returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
		return err
	case <-time.After(d):
		t.Fatalf("call to a peer that never answers still waits after %v", d)
		return nil
	}
}

func TestClientCallsToAPeerThatNeverAnswersEnd(t *testing.T) {
	ca := newCA(t)
	caller := startPeer(t, ca, 1, "127.0.0.21", peerOpts{})
	// A node that completes the handshake and then stops answering: it
	// never answers while the test runs, not even when the request's own
	// deadline (the caller's, sent along) passes, which would race the
	// caller's timeout with an empty answer.
	frozen := make(chan struct{})
	stopped := startPeer(t, ca, 2, "127.0.0.22", peerOpts{wrap: func(http.Handler) http.Handler {
		return http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			<-frozen
		})
	}})
	t.Cleanup(stopped.srv.CloseClientConnections)
	t.Cleanup(func() { close(frozen) })
	silent := silentListener(t, "127.0.0.23")

	const callCap = 300 * time.Millisecond
	cl := agent.NewClient(caller.http)
	cl.CallTimeout = callCap
	spec := agent.Spec{UID: "1", Role: fsm.RoleSlave, Size: 10}
	calls := []struct {
		name string
		// ctxTimeout bounds the call's context; zero leaves it unbounded,
		// for the calls that CallTimeout caps.
		ctxTimeout time.Duration
		call       func(ctx context.Context, addr string) error
	}{
		{"info", 0, func(ctx context.Context, addr string) error { _, err := cl.Info(ctx, addr, "1"); return err }},
		{"list", 0, func(ctx context.Context, addr string) error { _, err := cl.List(ctx, addr); return err }},
		{"stats", 0, func(ctx context.Context, addr string) error { _, err := cl.Stats(ctx, addr); return err }},
		{"drop", 0, func(ctx context.Context, addr string) error { return cl.Drop(ctx, addr, "1") }},
		{"ops", 0, func(ctx context.Context, addr string) error { _, err := cl.Ops(ctx, addr); return err }},
		{"copy", callCap, func(ctx context.Context, addr string) error {
			_, err := cl.Copy(ctx, addr, spec, caller.addr, agent.Op{})
			return err
		}},
		{"switch role", callCap, func(ctx context.Context, addr string) error { return cl.SwitchRole(ctx, addr, "1", fsm.RoleMaster) }},
	}
	peers := []struct{ name, addr string }{{"accepts TCP only", silent}, {"stopped after TLS", stopped.addr}}
	for _, p := range peers {
		for _, c := range calls {
			t.Run(p.name+"/"+c.name, func(t *testing.T) {
				ctx := context.Background()
				if c.ctxTimeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, c.ctxTimeout)
					defer cancel()
				}
				err := within(t, callCap+5*time.Second, func() error { return c.call(ctx, p.addr) })
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error %v, want it to wrap context.DeadlineExceeded", err)
				}
			})
		}
	}
}

// The time a caller waits travels with its request: a target whose copy
// source stopped answering gives up when the caller does, even if the
// caller cannot close its connection (it is paused itself).
func TestCopyOnTargetEndsWhenItsCallerStopsWaiting(t *testing.T) {
	ca := newCA(t)
	// The source stopped after accepting the target's fetch.
	src := startPeer(t, ca, 1, "127.0.0.21", peerOpts{wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/data") {
				<-r.Context().Done()
				return
			}
			h.ServeHTTP(w, r)
		})
	}})
	t.Cleanup(src.srv.CloseClientConnections)
	dst := startPeer(t, ca, 2, "127.0.0.22", peerOpts{})
	materialise(t, src.backend, agent.Spec{UID: "5", Role: fsm.RoleMaster, Size: 1000})

	// A caller that says it waits 300 ms and then keeps its connection
	// open without a deadline of its own.
	body := `{"spec":{"uid":"5","role":"slave"},"source":"` + src.addr + `","op":{"task_id":"","step":0,"term":0}}`
	req, err := http.NewRequest(http.MethodPost, "https://"+dst.addr+agent.Prefix+"/shards/5/copy", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Cnm-Timeout-Ms", strconv.Itoa(300))
	var status int
	within(t, 5*time.Second, func() error {
		resp, err := src.http.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		status = resp.StatusCode
		return errors.New(resp.Status)
	})
	if status == http.StatusOK || status == 0 {
		t.Errorf("the copy answered %d, want an error", status)
	}
	if files := shardFiles(t, dst.dir, "5"); len(files) != 0 {
		t.Errorf("target kept %v", files)
	}
}
