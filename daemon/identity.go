package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"cnm/pki"
)

// identityFile records whose a data dir is: the node uid, the cluster (the
// SHA-256 fingerprint of its CA certificate) and the addresses the node
// was admitted with. It is written at bootstrap and at join, before raft
// or the agent open, and Start compares it with the flags before it opens
// anything: a data dir started under another uid would otherwise catch up
// as that raft server while its agent reconciled shards for the wrong
// node, and a copy started on other addresses would run as a second
// candidate with a history the cluster no longer shares.
const identityFile = "identity.json"

type identity struct {
	UID       int    `json:"uid"`
	ClusterID string `json:"cluster_id"`
	APIAddr   string `json:"api_addr"`
	RaftAddr  string `json:"raft_addr"`
}

func (c *Config) identityPath() string { return filepath.Join(c.DataDir, identityFile) }

// readIdentity returns the data dir's identity record, nil if it has none.
func (c *Config) readIdentity() (*identity, error) {
	b, err := os.ReadFile(c.identityPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read identity of data dir: %w", err)
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, fmt.Errorf("data dir %s: %s is damaged: refusing to start on it: %w", c.DataDir, identityFile, err)
	}
	if id.UID <= 0 || id.ClusterID == "" || id.APIAddr == "" || id.RaftAddr == "" {
		return nil, fmt.Errorf("data dir %s: %s is damaged (uid %d, cluster %q, api %q, raft %q): refusing to start on it",
			c.DataDir, identityFile, id.UID, id.ClusterID, id.APIAddr, id.RaftAddr)
	}
	return &id, nil
}

// caFingerprint is the fingerprint of the cluster CA in the data dir, ""
// when it has none.
func (c *Config) caFingerprint() (string, error) {
	b, err := os.ReadFile(filepath.Join(c.tlsDir(), pki.CAFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read cluster ca: %w", err)
	}
	fp, err := pki.Fingerprint(b)
	if err != nil {
		return "", fmt.Errorf("cluster ca %s: %w", filepath.Join(c.tlsDir(), pki.CAFile), err)
	}
	return fp, nil
}

// checkIdentity refuses a data dir that belongs to another node or another
// cluster, or that was copied to other addresses; it only reads, except
// that a data dir from before identity records is given one once it
// passes. It returns the data dir's identity (nil for a fresh data dir).
func (c *Config) checkIdentity() (*identity, error) {
	id, err := c.readIdentity()
	if err != nil {
		return nil, err
	}
	fp, err := c.caFingerprint()
	if err != nil {
		return nil, err
	}
	if id == nil {
		return c.adoptIdentity(fp)
	}
	if id.UID != c.UID {
		return nil, fmt.Errorf("data dir %s belongs to node %d (cluster %s), not to --uid %d: refusing to start "+
			"(start it as --uid %d, or use an empty data dir for a new node)", c.DataDir, id.UID, short(id.ClusterID), c.UID, id.UID)
	}
	if id.APIAddr != c.APIAddr || id.RaftAddr != c.RaftAddr {
		return nil, fmt.Errorf("data dir %s is node %d's at --api-addr %s --raft-addr %s, not %s %s: refusing to start "+
			"(a copy of a node's data dir must not run as a second node; to move a node, remove it and join it afresh)",
			c.DataDir, id.UID, id.APIAddr, id.RaftAddr, c.APIAddr, c.RaftAddr)
	}
	if fp != "" && fp != id.ClusterID {
		return nil, fmt.Errorf("data dir %s: its tls/%s is of cluster %s, but the data dir belongs to cluster %s: refusing to start",
			c.DataDir, pki.CAFile, short(fp), short(id.ClusterID))
	}
	return id, nil
}

// adoptIdentity gives a data dir written before identity records one, from
// its node certificate ("cnm node N") and cluster CA, once they agree with
// the flags. A data dir without them has no owner yet.
func (c *Config) adoptIdentity(fp string) (*identity, error) {
	certPEM, err := os.ReadFile(filepath.Join(c.tlsDir(), pki.CertFile))
	if errors.Is(err, os.ErrNotExist) || fp == "" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read node certificate: %w", err)
	}
	uid, err := pki.NodeUIDOf(certPEM)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %s: %w", c.DataDir, pki.CertFile, err)
	}
	if uid != c.UID {
		return nil, fmt.Errorf("data dir %s belongs to node %d (its certificate says so), not to --uid %d: refusing to start "+
			"(start it as --uid %d, or use an empty data dir for a new node)", c.DataDir, uid, c.UID, uid)
	}
	cert, err := pki.ParseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %s: %w", c.DataDir, pki.CertFile, err)
	}
	for _, h := range pki.HostsOf(c.APIAddr, c.RaftAddr) {
		if err := cert.VerifyHostname(h); err != nil {
			return nil, fmt.Errorf("data dir %s is node %d's, whose certificate does not name host %s of --api-addr/--raft-addr: "+
				"refusing to start (a copy of a node's data dir must not run as a second node)", c.DataDir, uid, h)
		}
	}
	id := &identity{UID: uid, ClusterID: fp, APIAddr: c.APIAddr, RaftAddr: c.RaftAddr}
	if err := c.writeIdentity(id); err != nil {
		return nil, err
	}
	return id, nil
}

// recordIdentity writes the identity of this node in cluster fp.
func (c *Config) recordIdentity(fp string) error {
	return c.writeIdentity(&identity{UID: c.UID, ClusterID: fp, APIAddr: c.APIAddr, RaftAddr: c.RaftAddr})
}

func (c *Config) writeIdentity(id *identity) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return fmt.Errorf("encode identity: %w", err)
	}
	return writeFileAtomic(c.identityPath(), append(b, '\n'), 0o600)
}

// writeFileAtomic replaces path with data so that a crash leaves either
// the old file or the new one, both on disk.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("open %s: %w", filepath.Dir(path), err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Dir(path), err)
	}
	return nil
}

// short abbreviates a cluster id for messages.
func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}
