package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"time"

	"cnm/httpapi"
	"cnm/pki"
)

// errPermanent marks join answers that retrying cannot fix (bad credentials,
// a uid taken by another node).
var errPermanent = errors.New("join refused")

// joinFirstStep asks the cluster at cfg.Join to admit this node and sign its
// certificate. The joining node does not know the cluster CA yet, so, like
// `curl -k`, it does not verify the member's certificate on this call; the
// admin credentials are what authorise it.
func joinFirstStep(ctx context.Context, cfg Config, log *slog.Logger) (pki.Material, error) {
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(cfg.UID, pki.HostsOf(cfg.APIAddr, cfg.RaftAddr))
	if err != nil {
		return pki.Material{}, err
	}
	req := httpapi.JoinRequest{
		UID: cfg.UID, APIAddr: cfg.APIAddr, RaftAddr: cfg.RaftAddr, CSR: string(csrPEM),
		TotalMemory: cfg.Memory, MaxRedisServers: cfg.MaxShards, RackID: cfg.RackID, SoftwareVersion: Version,
		Cores: runtime.NumCPU(),
	}
	client := joinClient(cfg, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // see above
	defer client.CloseIdleConnections()
	var resp httpapi.JoinResponse
	if err := callWithRetry(ctx, cfg, log, client, "/v1/internal/join", req, &resp); err != nil {
		return pki.Material{}, err
	}
	mat := pki.Material{CertPEM: []byte(resp.CertPEM), KeyPEM: keyPEM, CAPEM: []byte(resp.CAPEM)}
	if _, err := mat.ClientConfig(); err != nil {
		return pki.Material{}, fmt.Errorf("certificate from %s: %w", cfg.Join, err)
	}
	if err := mat.Save(cfg.tlsDir()); err != nil {
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
			return fmt.Errorf("decode answer of %s: %w", path, err)
		}
		return nil
	case resp.StatusCode >= 500:
		return fmt.Errorf("%s answered %d: %s", path, resp.StatusCode, bytes.TrimSpace(data))
	default:
		return fmt.Errorf("%w: %s answered %d: %s", errPermanent, path, resp.StatusCode, bytes.TrimSpace(data))
	}
}
