package peer

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

	"cnm/fsm"
)

// DialFunc opens a connection from localAddr (a host) to remote; see
// raftnode.DialFunc, which has the same shape.
type DialFunc func(ctx context.Context, network, localAddr, remote string) (net.Conn, error)

// NewHTTPClient makes the HTTP client a node calls its peers with: its
// connections leave from localHost and present the node's certificate.
func NewHTTPClient(tlsCfg *tls.Config, localHost string, dial DialFunc) *http.Client {
	pt := &transport{make: func() *http.Transport {
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

// transport is the node-to-node HTTP transport, replaced as a whole when
// the node's certificate is renewed: a client certificate is sent once per
// connection, so only new connections show the new one.
type transport struct {
	cur  atomic.Pointer[http.Transport]
	make func() *http.Transport
	own  atomic.Pointer[ownRoute] // see ServeOwn
}

func (p *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if o := p.own.Load(); o.matches(r) {
		return o.serve(r)
	}
	return p.cur.Load().RoundTrip(r)
}

func (p *transport) CloseIdleConnections() { p.cur.Load().CloseIdleConnections() }

// RenewConnections makes every later request of c (made by NewHTTPClient)
// use new connections, which show the node's current certificate; the old
// connections close once their requests are done. Call it after a
// renewal, before the old certificate is revoked.
func RenewConnections(c *http.Client) {
	p, ok := c.Transport.(*transport)
	if !ok {
		return
	}
	old := p.cur.Swap(p.make())
	old.CloseIdleConnections()
	// Requests still running on old connections finish there; their
	// connections then idle and are closed here, or by IdleConnTimeout.
	time.AfterFunc(30*time.Second, old.CloseIdleConnections)
}

// Client is how a node calls other nodes: with its cluster certificate,
// trusting only the cluster CA, from its own address.
type Client struct {
	hc *http.Client
}

// NewClient wraps a client made by NewHTTPClient.
func NewClient(hc *http.Client) *Client { return &Client{hc: hc} }

// Close drops idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Do sends a request made by the caller (a stream, a forwarded write).
func (c *Client) Do(req *http.Request) (*http.Response, error) { return c.hc.Do(req) }

// Call sends in (JSON, unless nil) to path on the node at addr and decodes
// a 200 answer into out (unless nil); any other answer is a *RemoteError.
// header, if not nil, is added to the request.
func (c *Client) Call(ctx context.Context, method, addr, path string, header http.Header, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s request: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+path, body)
	if err != nil {
		return fmt.Errorf("%s request: %w", path, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s on %s: %w", method, path, addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return DecodeError(resp, addr)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("decode the answer of %s from %s: %w", path, addr, err)
	}
	return nil
}

// Ping checks that the node at addr answers, and returns how long its cnmd
// has been running.
func (c *Client) Ping(ctx context.Context, addr string) (time.Duration, error) {
	var body struct {
		Uptime int64 `json:"uptime"`
	}
	if err := c.Call(ctx, http.MethodGet, addr, "/v1/ping", nil, nil, &body); err != nil {
		return 0, fmt.Errorf("ping %s: %w", addr, err)
	}
	return time.Duration(body.Uptime) * time.Second, nil
}

// ReadIndex asks the leader at addr for a read index.
func (c *Client) ReadIndex(ctx context.Context, addr string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var out struct {
		Index uint64 `json:"index"`
	}
	if err := c.Call(ctx, http.MethodGet, addr, readIndexPath, nil, nil, &out); err != nil {
		return 0, fmt.Errorf("read index from %s: %w", addr, err)
	}
	return out.Index, nil
}

// Members is the leader's answer to GET /v1/internal/members.
type Members struct {
	Nodes []int  `json:"nodes"`
	Index uint64 `json:"index"`
}

// Members asks the node at addr which nodes the leader's committed state
// holds: the node answers if it leads, and otherwise, unless relayed, asks
// its leader. An error if no confirmed leader answered; one that matches
// fsm.ErrCertRevoked if the cluster revoked this node's certificate.
func (c *Client) Members(ctx context.Context, addr string, relayed bool) (Members, error) {
	var out Members
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	path := membersPath
	if relayed {
		path += "?relayed=true"
	}
	if err := c.Call(ctx, http.MethodGet, addr, path, nil, nil, &out); err != nil {
		return out, fmt.Errorf("members from %s: %w", addr, err)
	}
	return out, nil
}

// Checkpoint asks the node at addr for its hash of its state at index;
// found is false when it holds none (it has not applied index yet, or no
// longer keeps it).
func (c *Client) Checkpoint(ctx context.Context, addr string, index uint64) (h fsm.StateHash, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err = c.Call(ctx, http.MethodGet, addr, checkpointPath+"?index="+strconv.FormatUint(index, 10), nil, nil, &h)
	var re *RemoteError
	switch {
	case errors.As(err, &re) && re.Status == http.StatusNotFound:
		return h, false, nil
	case err != nil:
		return h, false, fmt.Errorf("checkpoint from %s: %w", addr, err)
	case h.Index != index:
		return h, false, fmt.Errorf("checkpoint from %s: asked for index %d, got %d", addr, index, h.Index)
	}
	return h, true, nil
}

// RenewCert sends req to the leader at addr.
func (c *Client) RenewCert(ctx context.Context, addr string, req CertRequest) (CertResponse, error) {
	var out CertResponse
	if err := c.Call(ctx, http.MethodPost, addr, certificatePath, nil, req, &out); err != nil {
		return out, fmt.Errorf("certificate from %s: %w", addr, err)
	}
	return out, nil
}
