package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/crypto/bcrypt"

	"cnm/fsm"
	"cnm/pki"
	"cnm/raftnode"
)

// ensureBootstrapped creates the cluster state on a bootstrapping node: the
// raft configuration (first start only) and the bootstrap command (until it
// has been applied, so a crash between the two is repaired on restart).
func (n *Node) ensureBootstrapped(ctx context.Context, hasState bool, mat pki.Material) error {
	// The marker is written before the raft configuration and removed once
	// the bootstrap command is applied: a restart that finds raft state
	// without the marker must not wait for a leader (a restarting cluster
	// may have none yet).
	marker := filepath.Join(n.cfg.DataDir, bootstrapMarker)
	if hasState {
		if _, err := os.Stat(marker); errors.Is(err, os.ErrNotExist) {
			return nil
		}
	} else {
		if err := os.WriteFile(marker, nil, 0o600); err != nil {
			return fmt.Errorf("write bootstrap marker: %w", err)
		}
		if err := n.raft.BootstrapSelf(); err != nil {
			return err
		}
	}
	caKey, err := os.ReadFile(filepath.Join(n.cfg.tlsDir(), caKeyFile))
	if err != nil {
		return fmt.Errorf("read ca key: %w", err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(n.cfg.AdminPassword), n.cfg.BcryptCost)
	if err != nil {
		return fmt.Errorf("hash admin password: %w", err)
	}
	now := time.Now()
	cmd, err := fsm.Encode(&fsm.Bootstrap{
		Cluster: fsm.ClusterInfo{Name: n.cfg.ClusterName, CreatedAt: now.Unix(), CACertPEM: string(mat.CAPEM), CAKeyPEM: string(caKey)},
		Node:    n.nodeRecord(fsm.NodeActive, now),
		Admin:   fsm.User{Email: n.cfg.AdminUser, Name: "admin", PasswordHash: string(hash)},
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, err := n.raft.Apply(ctx, cmd)
		if err == nil || errors.Is(err, fsm.ErrAlreadyBootstrapped) {
			n.log.Info("cluster created", "cluster", n.cfg.ClusterName)
			if err := os.Remove(marker); err != nil {
				return fmt.Errorf("remove bootstrap marker: %w", err)
			}
			return nil
		}
		if !errors.Is(err, raftnode.ErrNotLeader) {
			return fmt.Errorf("apply bootstrap: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for leadership to bootstrap: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (n *Node) nodeRecord(status string, now time.Time) fsm.Node {
	return fsm.Node{
		UID: n.cfg.UID, Addr: n.cfg.host(), APIAddr: n.cfg.APIAddr, RaftAddr: n.cfg.RaftAddr,
		Status: status, AcceptServers: true, MaxRedisServers: n.cfg.MaxShards, TotalMemory: n.cfg.Memory,
		RackID: n.cfg.RackID, SoftwareVersion: Version, JoinedAt: now.Unix(), Cores: runtime.NumCPU(),
		Certs: []fsm.CertRef{certRef(n.id.Leaf())},
	}
}

const (
	caKeyFile       = "ca.key"
	bootstrapMarker = "bootstrap-pending"
)

// newClusterTLS makes the cluster CA and this node's certificate.
func newClusterTLS(cfg Config) (pki.Material, error) {
	now := time.Now()
	ca, err := pki.NewCA(cfg.ClusterName, now)
	if err != nil {
		return pki.Material{}, err
	}
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(cfg.UID, pki.HostsOf(cfg.APIAddr, cfg.RaftAddr))
	if err != nil {
		return pki.Material{}, err
	}
	certPEM, err := ca.SignFor(csrPEM, now, cfg.CertLifetime)
	if err != nil {
		return pki.Material{}, err
	}
	mat := pki.Material{CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: ca.CertPEM}
	if err := mat.Save(cfg.tlsDir()); err != nil {
		return pki.Material{}, err
	}
	if err := os.WriteFile(filepath.Join(cfg.tlsDir(), caKeyFile), ca.KeyPEM, 0o600); err != nil {
		return pki.Material{}, fmt.Errorf("write ca key: %w", err)
	}
	return mat, nil
}
