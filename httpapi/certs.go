package httpapi

import (
	"net/http"

	"cnm/fsm"
)

// certView is a node's certificates as GET /v1/nodes/{uid}/certificate
// shows them.
type certView struct {
	UID          int           `json:"uid"`
	Certificates []fsm.CertRef `json:"certificates"`
	// CertRotation counts the rotations asked for; the node renews at once
	// when it sees one it has not carried out.
	CertRotation uint64 `json:"cert_rotation"`
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
		return fsm.NoSuchNode(uid)
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
	n, err := s.ctl.RotateCert(r.Context(), p.actor(), uid)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, certView{UID: uid, Certificates: append([]fsm.CertRef{}, n.Certs...), CertRotation: n.CertRotation})
	return nil
}
