package httpapi

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"cnm/fsm"
	"cnm/pki"
)

// JoinRequest is what a new node sends to become a member (first step): it
// is recorded in the node table and gets a certificate for its key.
type JoinRequest struct {
	UID             int    `json:"uid"`
	APIAddr         string `json:"api_addr"`
	RaftAddr        string `json:"raft_addr"`
	CSR             string `json:"csr"`
	TotalMemory     int64  `json:"total_memory"`
	MaxRedisServers int    `json:"max_redis_servers"`
	RackID          string `json:"rack_id"`
	SoftwareVersion string `json:"software_version"`
	Cores           int    `json:"cores,omitempty"`
}

// JoinResponse carries the new node's certificate and the cluster CA.
type JoinResponse struct {
	ClusterName string `json:"cluster_name"`
	CertPEM     string `json:"cert_pem"`
	CAPEM       string `json:"ca_pem"`
}

// VoterRequest is the second step of a join, sent once the new node's raft
// listens: the leader then makes it a voter.
type VoterRequest struct {
	UID int `json:"uid"`
	// Nonvoter asks for the first stage: the node receives the log without
	// voting; the answer's index is what it must apply before it asks to
	// vote. A voter that has not caught up could, with one other node
	// down, block every election: its old configuration may not even name
	// the others.
	Nonvoter bool `json:"nonvoter,omitempty"`
}

// NonvoterResponse answers the first stage of VoterRequest.
type NonvoterResponse struct {
	Index uint64 `json:"index"`
}

func (s *Server) join(w http.ResponseWriter, r *http.Request, p principal) error {
	var req JoinRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.UID <= 0 {
		return fsm.ErrInvalidParameter.With("field \"uid\" must be a positive integer")
	}
	for field, addr := range map[string]string{"api_addr": req.APIAddr, "raft_addr": req.RaftAddr} {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" || port == "0" {
			return fsm.ErrInvalidParameter.With("field \"" + field + "\" must be host:port, got " + quote(addr))
		}
	}
	if req.MaxRedisServers < 0 || req.TotalMemory < 0 || req.Cores < 0 {
		return fsm.ErrInvalidParameter.With("node capacity must not be negative")
	}
	var caCert, caKey string
	var clusterName string
	var old *fsm.Node
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		caCert, caKey, clusterName = st.Cluster.CACertPEM, st.Cluster.CAKeyPEM, st.Cluster.Name
		if n, ok := st.Nodes[req.UID]; ok {
			c := *n
			old = &c
		}
	})
	if err := s.refuseMemberRejoin(old); err != nil {
		return err
	}
	ca, err := pki.ParseCA([]byte(caCert), []byte(caKey))
	if err != nil {
		return err
	}
	now := time.Now()
	if csrUID, err := csrNodeUID([]byte(req.CSR)); err != nil || csrUID != req.UID {
		return fsm.ErrInvalidParameter.With(fmt.Sprintf("field \"csr\" must be for node %d", req.UID))
	}
	cert, err := ca.SignFor([]byte(req.CSR), now, s.certLifetime)
	if err != nil {
		return fsm.ErrInvalidParameter.With("field \"csr\": " + err.Error())
	}
	leaf, err := pki.ParseCert(cert)
	if err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(req.APIAddr)
	node := fsm.Node{
		UID: req.UID, Addr: host, APIAddr: req.APIAddr, RaftAddr: req.RaftAddr, Status: fsm.NodeProvisioning,
		AcceptServers: true, MaxRedisServers: req.MaxRedisServers, TotalMemory: req.TotalMemory,
		RackID: req.RackID, SoftwareVersion: req.SoftwareVersion, JoinedAt: now.Unix(), Cores: req.Cores,
		// The certificate is on record before the node can use it.
		Certs: []fsm.CertRef{{Serial: pki.Serial(leaf), NotAfter: leaf.NotAfter.Unix()}},
	}
	if _, err := s.submit(r.Context(), &fsm.AddNode{Actor: p.actor(), Node: node}); err != nil {
		return err
	}
	s.log.Info("node admitted", "joining_uid", req.UID, "api_addr", req.APIAddr, "raft_addr", req.RaftAddr)
	writeJSON(w, http.StatusOK, JoinResponse{ClusterName: clusterName, CertPEM: string(cert), CAPEM: caCert})
	return nil
}

// refuseMemberRejoin refuses a join under the uid of a node that is
// already a member: one past its join (no longer provisioning), or already
// a voter. Such a request comes from a node that lost its data dir, or
// from a copy of one, and admitting it would make a voter of a node whose
// raft history the cluster cannot trust. A join retried after a lost
// answer still passes (the node is provisioning, not voting yet), and a
// removed node, gone from the node table, may join afresh.
func (s *Server) refuseMemberRejoin(old *fsm.Node) error {
	if old == nil {
		return nil
	}
	voter := false
	if servers, err := s.raft.Servers(); err == nil {
		for _, srv := range servers {
			voter = voter || (srv.UID == old.UID && srv.Voter)
		}
	}
	if old.Status == fsm.NodeProvisioning && !voter {
		return nil
	}
	uid := itoa(old.UID)
	return fsm.ErrNodeExists.With("node " + uid +
		" is already a member of the cluster (" + old.Status + ", at " + old.APIAddr + "): a node that lost its data dir, " +
		"or a copy of one, cannot take its place; remove node " + uid + " first (POST /v1/nodes/" + uid +
		"/actions/remove), then join it afresh")
}

func (s *Server) joinVoter(w http.ResponseWriter, r *http.Request, p principal) error {
	var req VoterRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	var node fsm.Node
	var ok bool
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		var n *fsm.Node
		if n, ok = st.Nodes[req.UID]; ok {
			node = *n
		}
	})
	if !ok {
		return errNodeNotFound(req.UID)
	}
	if req.Nonvoter {
		if err := s.raft.AddNonvoter(r.Context(), node.UID, node.RaftAddr); err != nil {
			return err
		}
		commit, _ := s.raft.Indexes()
		writeJSON(w, http.StatusOK, NonvoterResponse{Index: commit})
		return nil
	}
	if err := s.raft.AddVoter(r.Context(), node.UID, node.RaftAddr); err != nil {
		return err
	}
	if node.Status == fsm.NodeProvisioning {
		res, err := s.submit(r.Context(), &fsm.SetNodeStatus{Actor: p.actor(), UID: node.UID, Status: fsm.NodeActive})
		if err != nil {
			return err
		}
		if err := json.Unmarshal(res.Value, &node); err != nil {
			return err
		}
	}
	s.log.Info("node is a voter", "joining_uid", node.UID)
	writeJSON(w, http.StatusOK, viewNode(&node, time.Now()))
	return nil
}

func itoa(n int) string { return strconv.Itoa(n) }

func quote(s string) string { return strconv.Quote(s) }
