package peer

import (
	"crypto/x509"
	"errors"
	"net/http"

	"cnm/fsm"
	"cnm/pki"
)

// Checker is the one server-side check that a caller is a current member:
// its connection presented a node certificate of the cluster that the
// cluster has not revoked.
type Checker struct {
	// Check, when set, decides at every request whether the certificates
	// a connection presented are a current member's (chain to the cluster
	// CA, not revoked); nil leaves it to the TLS layer's verified chains.
	Check func(certs []*x509.Certificate) error
}

// Allows reports whether r came from a current member.
func (c Checker) Allows(r *http.Request) bool {
	if r.TLS == nil {
		return false
	}
	if c.Check != nil {
		// Checked at every request, not only at the handshake: a
		// keep-alive connection outlives the removal of its node.
		return len(r.TLS.PeerCertificates) > 0 && c.Check(r.TLS.PeerCertificates) == nil
	}
	return len(r.TLS.VerifiedChains) > 0
}

// Refusal is the answer to a caller Allows refused; a revoked certificate
// is told so, which is how a removed node that missed its removal learns
// of it.
func (c Checker) Refusal(r *http.Request) *fsm.Error {
	if c.Check != nil && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		if err := c.Check(r.TLS.PeerCertificates); errors.Is(err, pki.ErrRevoked) {
			return fsm.ErrCertRevoked.With("this node certificate was revoked: its node was removed from the cluster or rotated its certificate")
		}
	}
	return fsm.ErrForbidden.With("this endpoint is for cluster nodes and needs a node certificate")
}

// callerUID is the node uid of the calling node's certificate.
func callerUID(r *http.Request) (int, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return 0, fsm.ErrForbidden.With("this endpoint needs a node certificate")
	}
	uid, err := pki.UIDOf(r.TLS.PeerCertificates[0])
	if err != nil {
		return 0, fsm.ErrForbidden.With(err.Error())
	}
	return uid, nil
}
