package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"cnm/httpapi"
	"cnm/pki"
)

// errPermanent marks join answers that retrying cannot fix (bad credentials,
// a uid taken by another node).
var errPermanent = errors.New("join refused")

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
	client := joinClient(cfg, tc)
	defer client.CloseIdleConnections()
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(cfg.UID, pki.HostsOf(cfg.APIAddr, cfg.RaftAddr))
	if err != nil {
		return pki.Material{}, err
	}
	req := httpapi.JoinRequest{
		UID: cfg.UID, APIAddr: cfg.APIAddr, RaftAddr: cfg.RaftAddr, CSR: string(csrPEM),
		TotalMemory: cfg.Memory, MaxRedisServers: cfg.MaxShards, RackID: cfg.RackID, SoftwareVersion: Version,
		Cores: runtime.NumCPU(),
	}
	var resp httpapi.JoinResponse
	if err := callWithRetry(ctx, cfg, log, client, "/v1/internal/join", req, &resp); err != nil {
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
	client := joinClient(n.cfg, tc)
	defer client.CloseIdleConnections()
	// First receive the log without voting, catch up, then vote.
	var stage httpapi.NonvoterResponse
	if err := callWithRetry(ctx, n.cfg, n.log, client, "/v1/internal/join/voter", httpapi.VoterRequest{UID: n.cfg.UID, Nonvoter: true}, &stage); err != nil {
		return err
	}
	if err := n.raft.WaitApplied(ctx, stage.Index); err != nil {
		return fmt.Errorf("catch up to index %d before voting: %w", stage.Index, err)
	}
	var out json.RawMessage
	if err := callWithRetry(ctx, n.cfg, n.log, client, "/v1/internal/join/voter", httpapi.VoterRequest{UID: n.cfg.UID}, &out); err != nil {
		return err
	}
	n.log.Info("joined cluster as a voter", "via", n.cfg.Join)
	return nil
}

func joinClient(cfg Config, tc *tls.Config) *http.Client {
	host := cfg.host()
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: tc.Clone(),
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return cfg.Dial(ctx, network, host, addr)
		},
	}, Timeout: 15 * time.Second}
}

// callWithRetry POSTs body to the member at cfg.Join until it answers 200 or
// a permanent refusal, for at most cfg.JoinTimeout. Both join steps are
// idempotent, so a retry after a lost answer is harmless.
func callWithRetry(ctx context.Context, cfg Config, log *slog.Logger, client *http.Client, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
	defer cancel()
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode join request: %w", err)
	}
	backoff := 50 * time.Millisecond
	for {
		err := postJSON(ctx, client, cfg, path, b, out)
		if err == nil || errors.Is(err, errPermanent) {
			return err
		}
		log.Warn("join attempt failed; retrying", "path", path, "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("join %s: %w (last error: %w)", cfg.Join, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

func postJSON(ctx context.Context, client *http.Client, cfg Config, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, joinURL(cfg.Join)+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("join request: %w", err)
	}
	req.SetBasicAuth(cfg.AdminUser, cfg.AdminPassword)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("call %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read answer of %s: %w", path, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%w: the server at %s did not answer as a cnm node (%s: %w)", errPermanent, cfg.Join, path, err)
		}
		return nil
	case resp.StatusCode >= 500:
		return fmt.Errorf("%s answered %d: %s", path, resp.StatusCode, bytes.TrimSpace(data))
	default:
		return fmt.Errorf("%w: %s answered %d: %s", errPermanent, path, resp.StatusCode, bytes.TrimSpace(data))
	}
}
