package daemon

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"cnm/fsm"
	"cnm/peer"
	"cnm/pki"
)

// revokedIn is the peer check of every node-to-node door: a certificate the
// cluster revoked (its node was removed, or rotated it) is refused. One
// this node's state has not heard of yet is not: a node catching up must
// still accept the leader that will tell it.
func revokedIn(f *fsm.FSM) pki.PeerCheck {
	return func(c *x509.Certificate) error {
		serial := pki.Serial(c)
		revoked := false
		f.Read(func(st *fsm.State, _ uint64) { revoked = st.CertRevoked(serial) })
		if revoked {
			return fmt.Errorf("%w: serial %s", pki.ErrRevoked, serial)
		}
		return nil
	}
}

func certRef(c *x509.Certificate) fsm.CertRef {
	return fsm.CertRef{Serial: pki.Serial(c), NotAfter: c.NotAfter.Unix()}
}

// rotationFile holds the count of certificate rotations this node has
// carried out (the node record's cert_rotation it last acted on).
const rotationFile = "cert-rotation"

// renewCerts renews this node's certificate when a third of its lifetime
// is left, or at once when an admin asked for a rotation, and then revokes
// the one it replaced.
func (n *Node) renewCerts(ctx context.Context) {
	every := min(time.Minute, max(n.cfg.CertLifetime/20, 100*time.Millisecond))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wanted, handled := n.rotationWanted()
		leaf := n.id.Leaf()
		due := time.Until(leaf.NotAfter) < n.cfg.CertLifetime/3
		if !due && wanted <= handled {
			continue
		}
		if err := n.renewCert(ctx); err != nil {
			if ctx.Err() == nil {
				n.log.Warn("renew node certificate", "error", err)
			}
			continue
		}
		if wanted > handled {
			if err := os.WriteFile(filepath.Join(n.cfg.DataDir, rotationFile), []byte(strconv.FormatUint(wanted, 10)+"\n"), 0o600); err != nil {
				n.log.Warn("record the certificate rotation", "error", err)
			}
		}
	}
}

// rotationWanted returns the rotations asked for in this node's record and
// those it has carried out.
func (n *Node) rotationWanted() (wanted, handled uint64) {
	n.raft.FSM().Read(func(st *fsm.State, _ uint64) {
		if rec, ok := st.Nodes[n.cfg.UID]; ok {
			wanted = rec.CertRotation
		}
	})
	if b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, rotationFile)); err == nil {
		handled, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	return wanted, handled
}

// renewCert gets a certificate for a new key from the leader, puts it in
// place (on disk, then in every TLS config), and revokes the old one.
func (n *Node) renewCert(ctx context.Context) error {
	leaderAddr, err := n.leaderAPIAddr()
	if err != nil {
		return err
	}
	old := n.id.Leaf()
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(n.cfg.UID, pki.HostsOf(n.cfg.APIAddr, n.cfg.RaftAddr))
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := n.peers.RenewCert(cctx, leaderAddr, peer.CertRequest{CSR: string(csrPEM)})
	if err != nil {
		return err
	}
	mat := pki.Material{CertPEM: []byte(resp.CertPEM), KeyPEM: keyPEM, CAPEM: n.id.Material().CAPEM}
	// On disk first: a crash after the switch must not come back with the
	// certificate about to be revoked.
	if err := mat.SaveReplacing(n.cfg.tlsDir()); err != nil {
		return err
	}
	if err := n.id.Replace(mat); err != nil {
		return err
	}
	peer.RenewConnections(n.peerHTTP)
	n.log.Info("node certificate renewed", "serial", pki.Serial(n.id.Leaf()), "not_after", n.id.Leaf().NotAfter, "replaces", pki.Serial(old))
	// The old certificate is revoked once the new one is in use; should
	// this fail, the next renewal's bound revokes it.
	if _, err := n.peers.RenewCert(cctx, leaderAddr, peer.CertRequest{Revoke: []string{pki.Serial(old)}}); err != nil {
		n.log.Warn("revoke the replaced certificate", "serial", pki.Serial(old), "error", err)
	}
	return nil
}

// errNoLeader: no leader is known to ask.
var errNoLeader = errors.New("no leader is known")

func (n *Node) leaderAPIAddr() (string, error) {
	uid, _ := n.raft.Leader()
	if uid == 0 {
		return "", errNoLeader
	}
	var addr string
	n.raft.FSM().Read(func(st *fsm.State, _ uint64) {
		if rec, ok := st.Nodes[uid]; ok {
			addr = rec.APIAddr
		}
	})
	if addr == "" {
		return "", fmt.Errorf("leader %d is not in this node's node table yet", uid)
	}
	return addr, nil
}
