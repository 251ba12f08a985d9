package httpapi_test

import (
	"crypto/x509"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"cnm/fsm"
	"cnm/peer"
	"cnm/pki"
)

func TestJoin_AdmitsANodeThenMakesItAVoter(t *testing.T) {
	e := newEnv(t)
	_, csr, err := pki.NewKeyAndCSR(2, []string{"127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"uid":2,"api_addr":"127.0.0.2:9443","raft_addr":"127.0.0.2:9444","csr":` + jsonString(string(csr)) +
		`,"total_memory":1073741824,"max_redis_servers":10,"rack_id":"r2","software_version":"test"}`

	w := e.call("admin", "POST", "/v1/internal/join", body)
	mustStatus(t, w, http.StatusOK)
	var resp peer.JoinResponse
	decodeInto(t, w, &resp)
	ca, err := testCA()
	if err != nil {
		t.Fatal(err)
	}
	if resp.ClusterName != testClusterName || resp.CAPEM != string(ca.CertPEM) {
		t.Fatalf("join answer: cluster %q, CA matches: %v", resp.ClusterName, resp.CAPEM == string(ca.CertPEM))
	}
	cert, err := pki.ParseCert([]byte(resp.CertPEM))
	if err != nil {
		t.Fatalf("node certificate: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: time.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("node certificate does not chain to the cluster CA: %v", err)
	}
	n := e.state().Nodes[2]
	want := fsm.Node{UID: 2, Addr: "127.0.0.2", APIAddr: "127.0.0.2:9443", RaftAddr: "127.0.0.2:9444",
		Status: fsm.NodeProvisioning, AcceptServers: true, MaxRedisServers: 10, TotalMemory: 1 << 30,
		RackID: "r2", SoftwareVersion: "test",
		// The certificate it was given is on record: the cluster knows it.
		Certs: []fsm.CertRef{{Serial: pki.Serial(cert), NotAfter: cert.NotAfter.Unix()}}}
	if n == nil {
		t.Fatalf("node 2 not recorded")
	}
	joined := n.JoinedAt
	n.JoinedAt = 0
	if !reflect.DeepEqual(*n, want) {
		t.Fatalf("node 2 = %+v\nwant %+v", *n, want)
	}
	if _, voters := e.raft.calls(); len(voters) != 0 {
		t.Fatalf("voters added before the second step: %v", voters)
	}

	// First stage: the node receives the log without voting, and learns
	// the index to apply before it may vote.
	// A join retried after a lost answer, before the node votes, keeps
	// the first record.
	w = e.call("admin", "POST", "/v1/internal/join", body)
	mustStatus(t, w, http.StatusOK)
	if n := e.state().Nodes[2]; n.Status != fsm.NodeProvisioning || n.JoinedAt != joined {
		t.Fatalf("a repeated join changed node 2: %+v", n)
	}

	w = e.call("admin", "POST", "/v1/internal/join/voter", `{"uid":2,"nonvoter":true}`)
	mustStatus(t, w, http.StatusOK)
	var stage peer.NonvoterResponse
	decodeInto(t, w, &stage)
	if commit, _ := e.raft.Indexes(); stage.Index != commit || stage.Index == 0 {
		t.Fatalf("nonvoter stage index = %d, want the commit index %d", stage.Index, commit)
	}
	e.raft.mu.Lock()
	nonvoters := append([]voterCall(nil), e.raft.nonvoters...)
	e.raft.mu.Unlock()
	if _, voters := e.raft.calls(); len(voters) != 0 || !reflect.DeepEqual(nonvoters, []voterCall{{UID: 2, RaftAddr: "127.0.0.2:9444"}}) {
		t.Fatalf("after the nonvoter stage: voters %v, nonvoters %v", voters, nonvoters)
	}
	if got := e.state().Nodes[2].Status; got != fsm.NodeProvisioning {
		t.Fatalf("node 2 is %q after the nonvoter stage, want provisioning until it votes", got)
	}

	w = e.call("admin", "POST", "/v1/internal/join/voter", `{"uid":2}`)
	mustStatus(t, w, http.StatusOK)
	var view nodeJSON
	decodeInto(t, w, &view)
	if view.UID != 2 || view.Status != "active" || view.RaftAddr != "127.0.0.2:9444" {
		t.Fatalf("voter answer = %+v", view)
	}
	if _, voters := e.raft.calls(); !reflect.DeepEqual(voters, []voterCall{{UID: 2, RaftAddr: "127.0.0.2:9444"}}) {
		t.Fatalf("AddVoter calls = %v", voters)
	}
	if got := e.state().Nodes[2].Status; got != fsm.NodeActive {
		t.Fatalf("node 2 status = %q, want active", got)
	}
}

// A join under the uid of a node that is a member (past provisioning) comes
// from a node that lost its data dir or from a copy of one: 409, telling
// the operator to remove the node first, and nothing changes.
func TestJoin_RefusesTheUIDOfAMember(t *testing.T) {
	base := newEnv(t)
	_, csr, err := pki.NewKeyAndCSR(2, []string{"127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"uid":2,"api_addr":"127.0.0.2:9443","raft_addr":"127.0.0.2:9444","csr":` + jsonString(string(csr)) +
		`,"total_memory":1073741824,"max_redis_servers":10,"software_version":"test"}`
	mustStatus(t, base.call("admin", "POST", "/v1/internal/join", body), http.StatusOK)
	for _, status := range []string{fsm.NodeActive, fsm.NodeDown, fsm.NodeDecommissioning} {
		t.Run(status, func(t *testing.T) {
			e := base.fork(t)
			cmd, err := fsm.Encode(&fsm.SetNodeStatus{UID: 2, Status: status})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.raft.Apply(t.Context(), cmd); err != nil {
				t.Fatal(err)
			}
			before, applied := *e.state().Nodes[2], e.applied()
			desc := assertError(t, e, e.call("admin", "POST", "/v1/internal/join", body), http.StatusConflict, "node_exists")
			if !strings.Contains(desc, "remove node 2 first") {
				t.Errorf("description %q does not say to remove node 2 first", desc)
			}
			if after := *e.state().Nodes[2]; !reflect.DeepEqual(after, before) || e.applied() != applied {
				t.Errorf("the refused join changed node 2 or applied a command: %+v, index %d -> %d", after, applied, e.applied())
			}
		})
	}
}
