package peer

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"cnm/fsm"
)

// CertRequest is what a node sends to renew its certificate (CSR) and,
// once it has switched to the new one, to revoke the old (Revoke: serials
// of its own certificates).
type CertRequest struct {
	CSR    string   `json:"csr,omitempty"`
	Revoke []string `json:"revoke,omitempty"`
}

// CertResponse carries a renewed certificate and the cluster CA.
type CertResponse struct {
	CertPEM string `json:"cert_pem,omitempty"`
	CAPEM   string `json:"ca_pem,omitempty"`
}

// renewCert issues a new certificate to the calling node, for a key it
// made, and revokes the node's own certificates it names. Only the leader
// answers: the certificate must be on record before the node uses it.
func (s *Server) renewCert(r *http.Request, _ fsm.Actor) (any, error) {
	uid, err := callerUID(r)
	if err != nil {
		return nil, err
	}
	var req CertRequest
	if err := s.Decode(r, &req); err != nil {
		return nil, err
	}
	if req.CSR == "" && len(req.Revoke) == 0 {
		return nil, fsm.ErrInvalidParameter.With("give \"csr\", \"revoke\" or both")
	}
	if !s.Raft.IsLeader() {
		leader, _ := s.Raft.Leader()
		return nil, fsm.Errorf(fsm.ErrNotLeader, "certificates are issued by the leader (node %d), not by node %d", leader, s.Raft.ID())
	}
	var caCert, caKey string
	var own []fsm.CertRef
	exists := false
	s.FSM.Read(func(st *fsm.State, _ uint64) {
		caCert, caKey = st.Cluster.CACertPEM, st.Cluster.CAKeyPEM
		if n, ok := st.Nodes[uid]; ok {
			exists, own = true, n.Certs
		}
	})
	if !exists {
		return nil, fsm.NoSuchNode(uid)
	}
	for _, serial := range req.Revoke {
		if !slices.ContainsFunc(own, func(c fsm.CertRef) bool { return c.Serial == serial }) {
			return nil, fsm.ErrInvalidParameter.With(fmt.Sprintf("certificate %q is not one of node %d's", serial, uid))
		}
	}
	now := time.Now()
	cmd := &fsm.SetNodeCerts{UID: uid, Revoke: req.Revoke, Time: now.Unix()}
	var resp CertResponse
	if req.CSR != "" {
		certPEM, ref, err := s.sign(caCert, caKey, req.CSR, uid, now, ", the caller")
		if err != nil {
			return nil, err
		}
		cmd.Add = &ref
		resp = CertResponse{CertPEM: string(certPEM), CAPEM: caCert}
	}
	if _, err := s.Propose(r.Context(), cmd); err != nil {
		return nil, err
	}
	s.Log.Info("node certificates changed", "for_node", uid, "issued", req.CSR != "", "revoked", len(req.Revoke))
	return resp, nil
}
