package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// caKeyFile, in the tls dir, is the cluster CA's key from its making
	// until the bootstrap command carries it into the replicated state.
	caKeyFile = "ca.key"
	// bootstrapMarker is in the data dir while a bootstrap is unfinished
	// (see ensureBootstrapped).
	bootstrapMarker = "bootstrap-pending"
)

// bootstrapTLS is the TLS identity a bootstrapping node comes up on: the
// one in its data dir, or a new cluster CA, but never a new CA in a data
// dir that belongs to a cluster already (its nodes would no longer trust
// it). It records the cluster in the data dir's identity and logs what the
// other nodes join with.
func (c *Config) bootstrapTLS(id *identity, d dataDirState, log *slog.Logger) (pki.Material, error) {
	mat := d.mat
	if !d.haveTLS {
		if id != nil {
			return pki.Material{}, fmt.Errorf("data dir %s belongs to cluster %s but lost its tls material: refusing to create "+
				"a new cluster in it (use an empty data dir)", c.DataDir, short(id.ClusterID))
		}
		var err error
		if mat, err = newClusterTLS(*c); err != nil {
			return pki.Material{}, err
		}
	}
	fp, err := pki.Fingerprint(mat.CAPEM)
	if err != nil {
		return pki.Material{}, err
	}
	if err := c.recordIdentity(fp); err != nil {
		return pki.Material{}, err
	}
	log.Info("cluster CA: other nodes join with --join and --join-ca-fingerprint",
		"join", "https://"+c.APIAddr, "ca_fingerprint", fp, "ca_file", filepath.Join(c.tlsDir(), pki.CAFile))
	return mat, nil
}

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
