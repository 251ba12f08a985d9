package peer

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
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

func (r *JoinRequest) check() error {
	if r.UID <= 0 {
		return fsm.ErrInvalidParameter.With("field \"uid\" must be a positive integer")
	}
	for field, addr := range map[string]string{"api_addr": r.APIAddr, "raft_addr": r.RaftAddr} {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" || port == "0" {
			return fsm.ErrInvalidParameter.With("field \"" + field + "\" must be host:port, got " + strconv.Quote(addr))
		}
	}
	if r.MaxRedisServers < 0 || r.TotalMemory < 0 || r.Cores < 0 {
		return fsm.ErrInvalidParameter.With("node capacity must not be negative")
	}
	return nil
}

// join admits a node (first step): it signs the node's certificate and
// records the node, provisioning, with that certificate.
func (s *Server) join(r *http.Request, actor fsm.Actor) (any, error) {
	var req JoinRequest
	if err := s.Decode(r, &req); err != nil {
		return nil, err
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	var caCert, caKey, clusterName string
	var old *fsm.Node
	s.FSM.Read(func(st *fsm.State, _ uint64) {
		caCert, caKey, clusterName = st.Cluster.CACertPEM, st.Cluster.CAKeyPEM, st.Cluster.Name
		if n, ok := st.Nodes[req.UID]; ok {
			c := *n
			old = &c
		}
	})
	if err := s.refuseMemberRejoin(old); err != nil {
		return nil, err
	}
	now := time.Now()
	certPEM, ref, err := s.sign(caCert, caKey, req.CSR, req.UID, now, "")
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(req.APIAddr)
	node := fsm.Node{
		UID: req.UID, Addr: host, APIAddr: req.APIAddr, RaftAddr: req.RaftAddr, Status: fsm.NodeProvisioning,
		AcceptServers: true, MaxRedisServers: req.MaxRedisServers, TotalMemory: req.TotalMemory,
		RackID: req.RackID, SoftwareVersion: req.SoftwareVersion, JoinedAt: now.Unix(), Cores: req.Cores,
		// The certificate is on record before the node can use it.
		Certs: []fsm.CertRef{ref},
	}
	if _, err := s.Propose(r.Context(), &fsm.AddNode{Actor: actor, Node: node}); err != nil {
		return nil, err
	}
	s.Log.Info("node admitted", "joining_uid", req.UID, "api_addr", req.APIAddr, "raft_addr", req.RaftAddr)
	return JoinResponse{ClusterName: clusterName, CertPEM: string(certPEM), CAPEM: caCert}, nil
}

// sign issues a certificate for the CSR of node uid; who, if set, names
// the caller in the refusal of a CSR for another node.
func (s *Server) sign(caCert, caKey, csr string, uid int, now time.Time, who string) ([]byte, fsm.CertRef, error) {
	if csrUID, err := csrNodeUID([]byte(csr)); err != nil || csrUID != uid {
		return nil, fsm.CertRef{}, fsm.Errorf(fsm.ErrInvalidParameter, "field \"csr\" must be for node %d%s", uid, who)
	}
	ca, err := pki.ParseCA([]byte(caCert), []byte(caKey))
	if err != nil {
		return nil, fsm.CertRef{}, err
	}
	certPEM, err := ca.SignFor([]byte(csr), now, s.certLifetime())
	if err != nil {
		return nil, fsm.CertRef{}, fsm.ErrInvalidParameter.With("field \"csr\": " + err.Error())
	}
	leaf, err := pki.ParseCert(certPEM)
	if err != nil {
		return nil, fsm.CertRef{}, err
	}
	return certPEM, fsm.CertRef{Serial: pki.Serial(leaf), NotAfter: leaf.NotAfter.Unix()}, nil
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
	if servers, err := s.Raft.Servers(); err == nil {
		for _, srv := range servers {
			voter = voter || (srv.UID == old.UID && srv.Voter)
		}
	}
	if old.Status == fsm.NodeProvisioning && !voter {
		return nil
	}
	uid := strconv.Itoa(old.UID)
	return fsm.ErrNodeExists.With("node " + uid +
		" is already a member of the cluster (" + old.Status + ", at " + old.APIAddr + "): a node that lost its data dir, " +
		"or a copy of one, cannot take its place; remove node " + uid + " first (POST /v1/nodes/" + uid +
		"/actions/remove), then join it afresh")
}

// joinVoter is a join's last step, in two stages: a nonvoter receiving the
// log, then a voter, active.
func (s *Server) joinVoter(r *http.Request, actor fsm.Actor) (any, error) {
	var req VoterRequest
	if err := s.Decode(r, &req); err != nil {
		return nil, err
	}
	var node fsm.Node
	var ok bool
	s.FSM.Read(func(st *fsm.State, _ uint64) {
		var n *fsm.Node
		if n, ok = st.Nodes[req.UID]; ok {
			node = *n
		}
	})
	if !ok {
		return nil, fsm.NoSuchNode(req.UID)
	}
	if req.Nonvoter {
		if err := s.Raft.AddNonvoter(r.Context(), node.UID, node.RaftAddr); err != nil {
			return nil, err
		}
		commit, _ := s.Raft.Indexes()
		return NonvoterResponse{Index: commit}, nil
	}
	if err := s.Raft.AddVoter(r.Context(), node.UID, node.RaftAddr); err != nil {
		return nil, err
	}
	if node.Status == fsm.NodeProvisioning {
		res, err := s.Propose(r.Context(), &fsm.SetNodeStatus{Actor: actor, UID: node.UID, Status: fsm.NodeActive})
		if err != nil {
			return nil, err
		}
		// Into a new value: node is a shallow copy, and decoding into it
		// would write through its slices into the state itself.
		var active fsm.Node
		if err := json.Unmarshal(res.Value, &active); err != nil {
			return nil, err
		}
		node = active
	}
	s.Log.Info("node is a voter", "joining_uid", node.UID)
	return s.NodeView(&node), nil
}

func csrNodeUID(csrPEM []byte) (int, error) {
	b, _ := pem.Decode(csrPEM)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return 0, pki.ErrBadPEM
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return 0, err
	}
	return pki.UIDOf(&x509.Certificate{Subject: csr.Subject})
}
