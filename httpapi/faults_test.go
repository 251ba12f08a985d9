package httpapi_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"cnm/fsm"
	"cnm/httpapi"
)

// asPeer marks r as sent with a verified node certificate.
func asPeer(r *http.Request) *http.Request {
	r.TLS = &tls.ConnectionState{HandshakeComplete: true, VerifiedChains: [][]*x509.Certificate{{&x509.Certificate{}}}}
	return r
}

func TestCheckpoint_PeersGetThisNodesHash(t *testing.T) {
	e := newEnv(t, withoutRoleUsers())
	index := e.applied() + 1
	applyCheckpoint(t, e)
	want, ok := e.fsm.CheckpointAt(index)
	if !ok {
		t.Fatal("no checkpoint applied")
	}
	for _, tc := range []struct {
		name   string
		target string
		peer   bool
		status int
		code   string
	}{
		{"the hash", "/v1/internal/checkpoint?index=" + strconv.FormatUint(index, 10), true, http.StatusOK, ""},
		{"an index with no checkpoint", "/v1/internal/checkpoint?index=" + strconv.FormatUint(index-1, 10), true, http.StatusNotFound, "checkpoint_not_found"},
		{"no index", "/v1/internal/checkpoint", true, http.StatusBadRequest, "invalid_parameter"},
		{"a bad index", "/v1/internal/checkpoint?index=-1", true, http.StatusBadRequest, "invalid_parameter"},
		{"not a peer", "/v1/internal/checkpoint?index=" + strconv.FormatUint(index, 10), false, http.StatusForbidden, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.request("", "GET", tc.target, "")
			if tc.peer {
				asPeer(r)
			}
			w := e.serve(r)
			if tc.code != "" {
				assertError(t, e, w, tc.status, tc.code)
				return
			}
			mustStatus(t, w, tc.status)
			var got fsm.StateHash
			decodeInto(t, w, &got)
			if got != want {
				t.Errorf("hash = %+v, want %+v", got, want)
			}
		})
	}
}

// TestFault_NodeRefusesToServeAndSaysWhy: with a fault set, reads, writes
// and ping answer the fault; /metrics and the checkpoint question still
// work; clearing it serves again.
func TestFault_NodeRefusesToServeAndSaysWhy(t *testing.T) {
	e := newEnv(t, withoutRoleUsers())
	s, ok := e.h.(*httpapi.Server)
	if !ok {
		t.Fatalf("handler is %T", e.h)
	}
	applyCheckpoint(t, e)
	s.SetFault(fsm.ErrStateDiverged.With("this node's state differs from the other nodes'"))
	before := len(e.state().Users)
	for _, rq := range [][3]string{
		{"GET", "/v1/nodes", ""},
		{"GET", "/v1/ping", ""},
		{"POST", "/v1/users", `{"email":"x@cnm.local","password":"pw-x-long","role":"db_viewer"}`},
	} {
		w := e.call("admin", rq[0], rq[1], rq[2])
		assertError(t, e, w, http.StatusServiceUnavailable, "state_diverged")
	}
	if got := len(e.state().Users); got != before {
		t.Errorf("a write went through a node with a fault: %d users, had %d", got, before)
	}
	w := e.call("admin", "GET", "/metrics", "")
	mustStatus(t, w, http.StatusOK)
	if !strings.Contains(w.Body.String(), `cnm_node_fault{code="state_diverged"} 1`) {
		t.Error("/metrics does not show the fault")
	}
	h, _ := e.fsm.LatestCheckpoint()
	mustStatus(t, e.serve(asPeer(e.request("", "GET", "/v1/internal/checkpoint?index="+strconv.FormatUint(h.Index, 10), ""))), http.StatusOK)

	s.SetFault(nil)
	mustStatus(t, e.call("admin", "GET", "/v1/nodes", ""), http.StatusOK)
	if strings.Contains(e.call("admin", "GET", "/metrics", "").Body.String(), `cnm_node_fault{`) {
		t.Error("/metrics still shows a cleared fault")
	}
}

func applyCheckpoint(t *testing.T, e *env) {
	t.Helper()
	cmd, err := fsm.Encode(&fsm.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.raft.Apply(context.Background(), cmd); err != nil {
		t.Fatal(err)
	}
}
