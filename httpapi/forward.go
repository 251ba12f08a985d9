package httpapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// DialFunc opens a connection from localAddr (a host) to remote; see
// raftnode.DialFunc, which has the same shape.
type DialFunc func(ctx context.Context, network, localAddr, remote string) (net.Conn, error)

// PeerClient is how a node calls other nodes' APIs: with its cluster
// certificate, trusting only the cluster CA, from its own address.
type PeerClient struct {
	client *http.Client
}

// errRetryable marks a forwarding failure after which the request surely was
// not applied (it never reached a leader, or the receiver said it does not
// lead), so it may be sent again.
var errRetryable = errors.New("retryable")

// NewPeerHTTPClient makes the HTTP client a node calls its peers with: its
// connections leave from localHost and present the node's certificate.
func NewPeerHTTPClient(tlsCfg *tls.Config, localHost string, dial DialFunc) *http.Client {
	pt := &peerTransport{make: func() *http.Transport {
		return &http.Transport{
			// A copy: the HTTP/2 setup writes to it, and raft reads the original.
			TLSClientConfig: tlsCfg.Clone(),
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dial(ctx, network, localHost, addr)
			},
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 2 * time.Second,
		}
	}}
	pt.cur.Store(pt.make())
	return &http.Client{Transport: pt}
}

// peerTransport is the node-to-node HTTP transport, replaced as a whole
// when the node's certificate is renewed: a client certificate is sent
// once per connection, so only new connections show the new one.
type peerTransport struct {
	cur  atomic.Pointer[http.Transport]
	make func() *http.Transport
}

func (p *peerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return p.cur.Load().RoundTrip(r)
}

func (p *peerTransport) CloseIdleConnections() { p.cur.Load().CloseIdleConnections() }

// RenewPeerConnections makes every later request of c (made by
// NewPeerHTTPClient) use new connections, which show the node's current
// certificate; the old connections close once their requests are done.
// Call it after a renewal, before the old certificate is revoked.
func RenewPeerConnections(c *http.Client) {
	p, ok := c.Transport.(*peerTransport)
	if !ok {
		return
	}
	old := p.cur.Swap(p.make())
	old.CloseIdleConnections()
	// Requests still running on old connections finish there; their
	// connections then idle and are closed here, or by IdleConnTimeout.
	time.AfterFunc(30*time.Second, old.CloseIdleConnections)
}

// NewPeerClient wraps a client made by NewPeerHTTPClient.
func NewPeerClient(c *http.Client) *PeerClient { return &PeerClient{client: c} }

// Ping checks that the node at addr answers, and returns how long its cnmd
// has been running.
func (c *PeerClient) Ping(ctx context.Context, addr string) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/v1/ping", nil)
	if err != nil {
		return 0, fmt.Errorf("ping request: %w", err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("ping %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return 0, fmt.Errorf("ping %s: status %d", addr, resp.StatusCode)
	}
	var body struct {
		Uptime int64 `json:"uptime"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&body); err != nil {
		return 0, fmt.Errorf("ping %s: %w", addr, err)
	}
	return time.Duration(body.Uptime) * time.Second, nil
}

// Close drops idle connections.
func (c *PeerClient) Close() { c.client.CloseIdleConnections() }

// ReadIndex asks the leader at addr for a read index.
func (c *PeerClient) ReadIndex(ctx context.Context, addr string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/v1/internal/read-index", nil)
	if err != nil {
		return 0, fmt.Errorf("read index request: %w", err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("read index from %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("read index from %s: status %d", addr, resp.StatusCode)
	}
	var out struct {
		Index uint64 `json:"index"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("read index from %s: %w", addr, err)
	}
	return out.Index, nil
}

// Members asks the node at addr which nodes the leader's committed state
// holds: the node answers if it leads, and otherwise, unless relayed, asks
// its leader. An error if no confirmed leader answered.
func (c *PeerClient) Members(ctx context.Context, addr string, relayed bool) (Members, error) {
	var out Members
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	u := "https://" + addr + "/v1/internal/members"
	if relayed {
		u += "?relayed=true"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return out, fmt.Errorf("members request: %w", err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return out, fmt.Errorf("members from %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusForbidden {
		var e struct {
			Code string `json:"error_code"`
		}
		if json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e) == nil && e.Code == "certificate_revoked" {
			return out, fmt.Errorf("members from %s: %w", addr, ErrCertRevoked)
		}
	}
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("members from %s: status %d", addr, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return out, fmt.Errorf("members from %s: %w", addr, err)
	}
	return out, nil
}

// Forward sends a write to the leader at addr and, unless the leader said it
// no longer leads, copies its answer to w unchanged (done is then true). An
// error wrapping errRetryable means nothing was applied.
func (c *PeerClient) Forward(ctx context.Context, w http.ResponseWriter, r *http.Request, addr string, body []byte, self int) (done bool, err error) {
	u := *r.URL
	u.Scheme, u.Host = "https", addr
	req, err := http.NewRequestWithContext(ctx, r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("forward request: %w", err)
	}
	for _, h := range []string{"Authorization", "Content-Type", "Accept", taskHeader} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(forwardedHeader, strconv.Itoa(self))
	resp, err := c.client.Do(req)
	if err != nil {
		if neverSent(err) {
			return false, fmt.Errorf("forward to %s: %w: %w", addr, errRetryable, err)
		}
		return false, fmt.Errorf("forward to %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusMisdirectedRequest {
		_, _ = io.Copy(io.Discard, resp.Body)
		return false, fmt.Errorf("forward to %s: %w: not the leader", addr, errRetryable)
	}
	for k, vs := range resp.Header {
		if k == "Content-Length" || k == "Connection" {
			continue
		}
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
	return true, nil
}

// neverSent reports whether a client error happened before the request could
// reach the server (the connection could not be made).
func neverSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var te *tls.CertificateVerificationError
	return errors.As(err, &te)
}
