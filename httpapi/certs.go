package httpapi

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"cnm/fsm"
	"cnm/pki"
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

// certView is a node's certificates as GET /v1/nodes/{uid}/certificate
// shows them.
type certView struct {
	UID          int           `json:"uid"`
	Certificates []fsm.CertRef `json:"certificates"`
	// CertRotation counts the rotations asked for; the node renews at once
	// when it sees one it has not carried out.
	CertRotation uint64 `json:"cert_rotation"`
}

// fromPeer reports whether the request came over a connection with a node
// certificate of the cluster that the cluster has not revoked.
func (s *Server) fromPeer(r *http.Request) bool {
	if r.TLS == nil {
		return false
	}
	if s.peerCheck != nil {
		// Checked at every request, not only at the handshake: a
		// keep-alive connection outlives the removal of its node.
		return len(r.TLS.PeerCertificates) > 0 && s.peerCheck(r.TLS.PeerCertificates) == nil
	}
	return len(r.TLS.VerifiedChains) > 0
}

// notPeer is the refusal of a node-to-node endpoint to a caller without
// a current member's certificate; a revoked one is told so, which is how a
// removed node that missed its removal learns of it.
func (s *Server) notPeer(r *http.Request) *fsm.Error {
	if s.peerCheck != nil && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		if err := s.peerCheck(r.TLS.PeerCertificates); errors.Is(err, pki.ErrRevoked) {
			return fsm.ErrCertRevoked.With("this node certificate was revoked: its node was removed from the cluster or rotated its certificate")
		}
	}
	return fsm.ErrForbidden.With("this endpoint is for cluster nodes and needs a node certificate")
}

// ErrCertRevoked is returned by PeerClient calls that a member refused
// because this node's certificate was revoked.
var ErrCertRevoked = errors.New("this node's certificate was revoked by the cluster")

// RenewCert sends req to the leader at addr.
func (c *PeerClient) RenewCert(ctx context.Context, addr string, req CertRequest) (CertResponse, error) {
	var out CertResponse
	b, err := json.Marshal(req)
	if err != nil {
		return out, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/v1/internal/certificate", bytes.NewReader(b))
	if err != nil {
		return out, fmt.Errorf("certificate request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(hreq)
	if err != nil {
		return out, fmt.Errorf("certificate from %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("certificate from %s: status %d: %s", addr, resp.StatusCode, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return out, fmt.Errorf("certificate from %s: %w", addr, err)
	}
	return out, nil
}

// peerUID is the node uid of the calling node's certificate.
func peerUID(r *http.Request) (int, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return 0, fsm.ErrForbidden.With("this endpoint needs a node certificate")
	}
	uid, err := pki.UIDOf(r.TLS.PeerCertificates[0])
	if err != nil {
		return 0, fsm.ErrForbidden.With(err.Error())
	}
	return uid, nil
}

// renewCert issues a new certificate to the calling node, for a key it
// made, and revokes the node's own certificates it names. Only the leader
// answers: the certificate must be on record before the node uses it.
func (s *Server) renewCert(w http.ResponseWriter, r *http.Request, _ principal) error {
	uid, err := peerUID(r)
	if err != nil {
		return err
	}
	var req CertRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.CSR == "" && len(req.Revoke) == 0 {
		return fsm.ErrInvalidParameter.With("give \"csr\", \"revoke\" or both")
	}
	if !s.raft.IsLeader() {
		leader, _ := s.raft.Leader()
		return fsm.ErrNotLeader.With(fmt.Sprintf("certificates are issued by the leader (node %d), not by node %d", leader, s.raft.ID()))
	}
	var caCert, caKey string
	var own []fsm.CertRef
	exists := false
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		caCert, caKey = st.Cluster.CACertPEM, st.Cluster.CAKeyPEM
		if n, ok := st.Nodes[uid]; ok {
			exists, own = true, n.Certs
		}
	})
	if !exists {
		return errNodeNotFound(uid)
	}
	for _, serial := range req.Revoke {
		if !slices.ContainsFunc(own, func(c fsm.CertRef) bool { return c.Serial == serial }) {
			return fsm.ErrInvalidParameter.With(fmt.Sprintf("certificate %q is not one of node %d's", serial, uid))
		}
	}
	now := time.Now()
	cmd := &fsm.SetNodeCerts{UID: uid, Revoke: req.Revoke, Time: now.Unix()}
	var resp CertResponse
	if req.CSR != "" {
		if csrUID, err := csrNodeUID([]byte(req.CSR)); err != nil || csrUID != uid {
			return fsm.ErrInvalidParameter.With(fmt.Sprintf("field \"csr\" must be for node %d, the caller", uid))
		}
		ca, err := pki.ParseCA([]byte(caCert), []byte(caKey))
		if err != nil {
			return err
		}
		certPEM, err := ca.SignFor([]byte(req.CSR), now, s.certLifetime)
		if err != nil {
			return fsm.ErrInvalidParameter.With("field \"csr\": " + err.Error())
		}
		leaf, err := pki.ParseCert(certPEM)
		if err != nil {
			return err
		}
		cmd.Add = &fsm.CertRef{Serial: pki.Serial(leaf), NotAfter: leaf.NotAfter.Unix()}
		resp = CertResponse{CertPEM: string(certPEM), CAPEM: caCert}
	}
	if _, err := s.submit(r.Context(), cmd); err != nil {
		return err
	}
	s.log.Info("node certificates changed", "for_node", uid, "issued", req.CSR != "", "revoked", len(req.Revoke))
	writeJSON(w, http.StatusOK, resp)
	return nil
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

// getNodeCert shows a node's certificates.
func (s *Server) getNodeCert(w http.ResponseWriter, r *http.Request, _ principal) error {
	uid, err := pathUID(r, "node")
	if err != nil {
		return err
	}
	v := certView{UID: uid, Certificates: []fsm.CertRef{}}
	ok := false
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		var n *fsm.Node
		if n, ok = st.Nodes[uid]; ok {
			v.Certificates = append(v.Certificates, n.Certs...)
			v.CertRotation = n.CertRotation
		}
	})
	if !ok {
		return errNodeNotFound(uid)
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// rotateCert asks a node to replace its certificate now and revoke the old
// one; the answer counts the rotations asked for.
func (s *Server) rotateCert(w http.ResponseWriter, r *http.Request, p principal) error {
	uid, err := pathUID(r, "node")
	if err != nil {
		return err
	}
	if err := decodeBody(r, &struct{}{}); err != nil {
		return err
	}
	res, err := s.submit(r.Context(), &fsm.RotateNodeCert{Actor: p.actor(), UID: uid})
	if err != nil {
		return err
	}
	var n fsm.Node
	if err := json.Unmarshal(res.Value, &n); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, certView{UID: uid, Certificates: append([]fsm.CertRef{}, n.Certs...), CertRotation: n.CertRotation})
	return nil
}
