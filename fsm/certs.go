package fsm

import "slices"

// CertRef names one node certificate the cluster CA issued: its serial
// number (hex) and when it expires (unix seconds).
type CertRef struct {
	Serial   string `json:"serial"`
	NotAfter int64  `json:"not_after"`
}

// maxNodeCerts bounds the certificates a node record keeps: the current
// one and the one a renewal is replacing.
const maxNodeCerts = 2

// SetNodeCerts records a certificate issued to a node (Add) and revokes
// the node's certificates named in Revoke. Time is the proposer's clock,
// used only to forget revoked certificates that have expired anyway.
type SetNodeCerts struct {
	UID    int      `json:"uid"`
	Add    *CertRef `json:"add,omitempty"`
	Revoke []string `json:"revoke,omitempty"`
	Time   int64    `json:"time"`
}

// RotateNodeCert asks a node to replace its certificate now and revoke the
// old one (a key that may have leaked).
type RotateNodeCert struct {
	Actor Actor `json:"actor"`
	UID   int   `json:"uid"`
}

func (p *RotateNodeCert) author() Actor { return p.Actor }

func (s *State) applySetNodeCerts(p *SetNodeCerts) (any, *Error) {
	old, ok := s.Nodes[p.UID]
	if !ok {
		return nil, NoSuchNode(p.UID)
	}
	if p.Add != nil && (p.Add.Serial == "" || s.CertRevoked(p.Add.Serial)) {
		return nil, Errorf(ErrInvalidParameter, "certificate %q cannot be added", p.Add.Serial)
	}
	n := *old
	n.Certs = slices.Clone(old.Certs)
	for _, serial := range p.Revoke {
		i := slices.IndexFunc(n.Certs, func(c CertRef) bool { return c.Serial == serial })
		if i < 0 {
			continue // revoked or forgotten already: the command is retried
		}
		s.revoke(n.Certs[i])
		n.Certs = slices.Delete(n.Certs, i, i+1)
	}
	if p.Add != nil && !slices.Contains(n.Certs, *p.Add) {
		n.Certs = append(n.Certs, *p.Add)
		// The oldest beyond the bound are revoked: the node has moved on.
		if extra := len(n.Certs) - maxNodeCerts; extra > 0 {
			s.revoke(n.Certs[:extra]...)
			n.Certs = slices.Delete(n.Certs, 0, extra)
		}
	}
	s.Revoked = slices.DeleteFunc(s.Revoked, func(c CertRef) bool { return c.NotAfter < p.Time })
	s.Nodes[p.UID] = &n
	return n, nil
}

func (s *State) applyRotateNodeCert(p *RotateNodeCert) (any, *Error) {
	old, ok := s.Nodes[p.UID]
	if !ok {
		return nil, NoSuchNode(p.UID)
	}
	n := *old
	n.CertRotation++
	s.Nodes[p.UID] = &n
	return n, nil
}

// revoke adds refs to the revoked certificates. It must only be called on
// the state being changed by Apply.
func (s *State) revoke(refs ...CertRef) {
	for _, r := range refs {
		if !s.CertRevoked(r.Serial) {
			s.Revoked = append(s.Revoked, r)
		}
	}
}

// CertRevoked reports whether the certificate with serial was revoked.
func (s *State) CertRevoked(serial string) bool {
	return slices.ContainsFunc(s.Revoked, func(c CertRef) bool { return c.Serial == serial })
}
