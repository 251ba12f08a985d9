package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"

	"cnm/peer"
	"cnm/pki"
)

// errNoJoinPin: --join was given nothing to check the member against.
var errNoJoinPin = errors.New("--join sends the admin credentials only to a member of the cluster it can check: " +
	"pass --join-ca-fingerprint (the first node logs it at bootstrap; on a member, " +
	"openssl x509 -noout -fingerprint -sha256 -in DATA_DIR/tls/ca.crt prints it), " +
	"or --join-ca-file with that ca.crt, or --join-insecure to send them to any server")

// joinPin is the cluster CA that --join-ca-fingerprint and --join-ca-file
// name ("" and nil for neither).
func (c *Config) joinPin() (string, *x509.Certificate, error) {
	var fp string
	if c.JoinCAFingerprint != "" {
		var err error
		if fp, err = pki.ParseFingerprint(c.JoinCAFingerprint); err != nil {
			return "", nil, fmt.Errorf("--join-ca-fingerprint: %w", err)
		}
	}
	if c.JoinCAFile == "" {
		return fp, nil, nil
	}
	b, err := os.ReadFile(c.JoinCAFile)
	if err != nil {
		return "", nil, fmt.Errorf("--join-ca-file: %w", err)
	}
	ca, err := pki.ParseCert(b)
	if err != nil {
		return "", nil, fmt.Errorf("--join-ca-file %s: %w", c.JoinCAFile, err)
	}
	fileFP, _ := pki.Fingerprint(b)
	if fp != "" && fp != fileFP {
		return "", nil, fmt.Errorf("--join-ca-file %s has fingerprint %s, not the --join-ca-fingerprint %s", c.JoinCAFile, fileFP, fp)
	}
	return fileFP, ca, nil
}

// joinsItself: --join names this node's own API address, where no member
// will ever answer.
func (c *Config) joinsItself() bool {
	u, err := url.Parse(joinURL(c.Join))
	if err != nil {
		return false
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	host, apiPort, err := net.SplitHostPort(c.APIAddr)
	if err != nil || port != apiPort {
		return false
	}
	if strings.EqualFold(u.Hostname(), host) {
		return true
	}
	// An API listening on every address is also reached on loopback.
	ip := net.ParseIP(host)
	if host == "" || (ip != nil && ip.IsUnspecified()) {
		jip := net.ParseIP(u.Hostname())
		return strings.EqualFold(u.Hostname(), "localhost") || (jip != nil && jip.IsLoopback())
	}
	return false
}

// joinTLS is the TLS config of the first join step: it trusts only the
// cluster CA that the flags name, or that the data dir already belongs to
// (a restart caught mid-join), and with --join-insecure and nothing else
// to go by, any server. It returns the fingerprint it pins ("" for none).
func joinTLS(cfg Config, id *identity) (*tls.Config, string, error) {
	fp, ca, err := cfg.joinPin()
	if err != nil {
		return nil, "", err
	}
	if id != nil {
		if fp != "" && fp != id.ClusterID {
			return nil, "", fmt.Errorf("data dir %s belongs to cluster %s, not to the cluster %s that --join-ca-fingerprint/--join-ca-file name: "+
				"refusing to join (use an empty data dir)", cfg.DataDir, short(id.ClusterID), short(fp))
		}
		fp = id.ClusterID
	}
	if fp == "" {
		if fp, err = cfg.caFingerprint(); err != nil {
			return nil, "", err
		}
	}
	if fp == "" {
		if !cfg.JoinInsecure {
			return nil, "", errNoJoinPin
		}
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, "", nil //nolint:gosec // --join-insecure
	}
	tc, err := pki.PinnedClientConfig(fp, ca)
	return tc, fp, err
}

// joinFirstStep asks the cluster at cfg.Join to admit this node and sign its
// certificate. The joining node has no certificate yet: it checks that the
// member's chains to the cluster CA it was told of (joinTLS) before it
// sends the admin credentials that authorise the call.
func joinFirstStep(ctx context.Context, cfg Config, id *identity, log *slog.Logger) (pki.Material, error) {
	tc, pinned, err := joinTLS(cfg, id)
	if err != nil {
		return pki.Material{}, err
	}
	client := newJoinClient(cfg, tc, log)
	defer client.Close()
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(cfg.UID, pki.HostsOf(cfg.APIAddr, cfg.RaftAddr))
	if err != nil {
		return pki.Material{}, err
	}
	req := peer.JoinRequest{
		UID: cfg.UID, APIAddr: cfg.APIAddr, RaftAddr: cfg.RaftAddr, CSR: string(csrPEM),
		TotalMemory: cfg.Memory, MaxRedisServers: cfg.MaxShards, RackID: cfg.RackID, SoftwareVersion: Version,
		Cores: runtime.NumCPU(),
	}
	resp, err := client.Admit(ctx, req)
	if err != nil {
		return pki.Material{}, err
	}
	mat := pki.Material{CertPEM: []byte(resp.CertPEM), KeyPEM: keyPEM, CAPEM: []byte(resp.CAPEM)}
	fp, err := pki.Fingerprint(mat.CAPEM)
	if err == nil {
		_, err = mat.ClientConfig()
	}
	if err != nil {
		return pki.Material{}, fmt.Errorf("the server at %s did not answer as a cnm node (its join answer holds no usable certificate: %w)", cfg.Join, err)
	}
	switch {
	case pinned != "" && fp != pinned:
		return pki.Material{}, fmt.Errorf("the server at %s answered with the CA of cluster %s, not %s: refusing it", cfg.Join, short(fp), short(pinned))
	case id != nil && fp != id.ClusterID:
		return pki.Material{}, fmt.Errorf("data dir %s belongs to cluster %s, but %s is a member of cluster %s: refusing to join (use an empty data dir)",
			cfg.DataDir, short(id.ClusterID), cfg.Join, short(fp))
	}
	if err := mat.Save(cfg.tlsDir()); err != nil {
		return pki.Material{}, err
	}
	if err := cfg.recordIdentity(fp); err != nil {
		return pki.Material{}, err
	}
	log.Info("admitted to cluster", "cluster", resp.ClusterName, "via", cfg.Join)
	return mat, nil
}

// joinSecondStep asks the leader, now that this node's raft listens, to make
// it a voter. This call verifies the member with the cluster CA.
func (n *Node) joinSecondStep(ctx context.Context, mat pki.Material) error {
	tc, err := mat.PeerAPIClientConfig()
	if err != nil {
		return err
	}
	client := newJoinClient(n.cfg, tc, n.log)
	defer client.Close()
	// First receive the log without voting, catch up, then vote.
	var stage peer.NonvoterResponse
	if err := client.Vote(ctx, peer.VoterRequest{UID: n.cfg.UID, Nonvoter: true}, &stage); err != nil {
		return err
	}
	if err := n.raft.WaitApplied(ctx, stage.Index); err != nil {
		return fmt.Errorf("catch up to index %d before voting: %w", stage.Index, err)
	}
	var out json.RawMessage
	if err := client.Vote(ctx, peer.VoterRequest{UID: n.cfg.UID}, &out); err != nil {
		return err
	}
	n.log.Info("joined cluster as a voter", "via", n.cfg.Join)
	return nil
}

// newJoinClient calls the member at cfg.Join with the admin credentials.
func newJoinClient(cfg Config, tc *tls.Config, log *slog.Logger) *peer.JoinClient {
	c := peer.NewJoinClient(tc, cfg.host(), peer.DialFunc(cfg.Dial))
	c.Target, c.URL = cfg.Join, joinURL(cfg.Join)
	c.User, c.Password, c.Timeout, c.Log = cfg.AdminUser, cfg.AdminPassword, cfg.JoinTimeout, log
	return c
}
