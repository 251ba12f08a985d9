package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"cnm/fsm"
	"cnm/peer"
)

// Client calls other nodes' agents; executors move shards with it.
//
// Every call ends when its context does, even against a peer that accepted
// the connection and then stopped (a SIGSTOP, a frozen VM); the small calls
// (Info, List, Drop, Ops) also end after CallTimeout. The time a call has
// left travels with it, so that the peer stops its side of the work then.
type Client struct {
	c *peer.Client
	// CallTimeout caps the small calls; zero means no cap beyond ctx.
	CallTimeout time.Duration
}

// DefaultCallTimeout caps the small calls: they move no shard data, so a
// peer that takes longer is as good as down.
const DefaultCallTimeout = 5 * time.Second

// timeoutHeader carries, in milliseconds, how long the caller waits for the
// answer; the agent bounds its work on the request by it.
const timeoutHeader = "X-Cnm-Timeout-Ms"

// maxRequestTimeout bounds what a caller may ask for in timeoutHeader.
const maxRequestTimeout = 7 * 24 * time.Hour

// NewClient wraps an HTTP client that speaks mutual TLS to other nodes.
func NewClient(c *http.Client) *Client {
	return &Client{c: peer.NewClient(c), CallTimeout: DefaultCallTimeout}
}

// small bounds ctx by CallTimeout.
func (c *Client) small(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.CallTimeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.CallTimeout)
}

// timeoutOf tells the peer how long the caller waits.
func timeoutOf(ctx context.Context) http.Header {
	h := http.Header{}
	if dl, ok := ctx.Deadline(); ok {
		h.Set(timeoutHeader, strconv.FormatInt(max(time.Until(dl).Milliseconds(), 1), 10))
	}
	return h
}

// requestContext bounds the context of a request by the time its caller
// said it waits: a caller that stopped (paused, partitioned) cannot close
// its connection, and the work must not outlive its wait.
func requestContext(r *http.Request) (context.Context, context.CancelFunc) {
	ms, err := strconv.ParseInt(r.Header.Get(timeoutHeader), 10, 64)
	if err != nil || ms <= 0 {
		return context.WithCancel(r.Context())
	}
	return context.WithTimeout(r.Context(), min(time.Duration(ms)*time.Millisecond, maxRequestTimeout))
}

func (c *Client) call(ctx context.Context, method, addr, path string, body, out any) error {
	return agentError(c.c.Call(ctx, method, addr, Prefix+path, timeoutOf(ctx), body, out))
}

// smallCall is a call capped by CallTimeout (small) that decodes its
// answer into a T.
func smallCall[T any](ctx context.Context, c *Client, method, addr, path string, body any) (T, error) {
	ctx, cancel := c.small(ctx)
	defer cancel()
	var out T
	err := c.call(ctx, method, addr, path, body, &out)
	return out, err
}

// agentError gives a peer's refusal the sentinel of its code, so that
// callers tell a missing shard, bad data and a deposed leader apart.
func agentError(err error) error {
	for _, m := range []struct {
		kind     *fsm.Error
		sentinel error
	}{{fsm.ErrShardNotFound, ErrNoShard}, {fsm.ErrChecksumMismatch, ErrChecksum}, {fsm.ErrStaleTerm, ErrStaleTerm}} {
		if peer.IsCode(err, m.kind) {
			return fmt.Errorf("%w (%w)", m.sentinel, err)
		}
	}
	return err
}

// Copy asks the agent at target to copy spec's shard from the agent at source.
func (c *Client) Copy(ctx context.Context, target string, spec Spec, source string, op Op) (Info, error) {
	var info Info
	err := c.call(ctx, http.MethodPost, target, "/shards/"+spec.UID+"/copy", CopyRequest{Spec: spec, Source: source, Op: op}, &info)
	return info, err
}

// Promote asks the agent at addr to make its replica of shard uid the
// master in place of the old master req names. It moves no data, and a
// switch-over holds the old master's writes for a bounded pause only, so
// it is capped like the small calls.
func (c *Client) Promote(ctx context.Context, addr, uid string, req PromoteRequest) (Info, error) {
	return smallCall[Info](ctx, c, http.MethodPost, addr, "/shards/"+uid+"/promote", req)
}

// Ops fetches the op log of the agent at addr.
func (c *Client) Ops(ctx context.Context, addr string) ([]OpRecord, error) {
	return smallCall[[]OpRecord](ctx, c, http.MethodGet, addr, "/ops", nil)
}

// Info asks the agent at addr about a shard.
func (c *Client) Info(ctx context.Context, addr, uid string) (Info, error) {
	return smallCall[Info](ctx, c, http.MethodGet, addr, "/shards/"+uid, nil)
}

// WaitEndpoint asks the agent at addr to answer once the proxy of
// endpoint uid runs there (for at most EndpointWait), or at once when it
// runs no proxies (a file backend).
func (c *Client) WaitEndpoint(ctx context.Context, addr, uid string) error {
	ctx, cancel := context.WithTimeout(ctx, EndpointWait+DefaultCallTimeout)
	defer cancel()
	var out map[string]any
	return c.call(ctx, http.MethodGet, addr, "/endpoints/"+uid, nil, &out)
}

// List asks the agent at addr for all its shards.
func (c *Client) List(ctx context.Context, addr string) ([]Info, error) {
	return smallCall[[]Info](ctx, c, http.MethodGet, addr, "/shards", nil)
}

// Stats asks the agent at addr what its shards' processes report; empty
// from a backend that runs none.
func (c *Client) Stats(ctx context.Context, addr string) ([]Info, error) {
	return smallCall[[]Info](ctx, c, http.MethodGet, addr, "/stats", nil)
}

// SwitchRole asks the agent at addr to change a shard's role.
func (c *Client) SwitchRole(ctx context.Context, addr, uid, role string) error {
	return c.call(ctx, http.MethodPost, addr, "/shards/"+uid+"/role", map[string]string{"role": role}, nil)
}

// Persist asks the agent at addr to write a shard's persistence file.
func (c *Client) Persist(ctx context.Context, addr, uid, mode string) error {
	return c.call(ctx, http.MethodPost, addr, "/shards/"+uid+"/persist", map[string]string{"mode": mode}, nil)
}

// Drop asks the agent at addr to delete its copy of a shard.
func (c *Client) Drop(ctx context.Context, addr, uid string) error {
	ctx, cancel := c.small(ctx)
	defer cancel()
	return c.call(ctx, http.MethodDelete, addr, "/shards/"+uid, nil, nil)
}

// Source returns the agent at addr as a copy source.
func (c *Client) Source(addr string) Source { return peerSource{c: c, addr: addr} }

type peerSource struct {
	c    *Client
	addr string
}

func (p peerSource) Fetch(ctx context.Context, uid string) (io.ReadCloser, int64, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+p.addr+Prefix+"/shards/"+uid+"/data", nil)
	if err != nil {
		return nil, 0, "", fmt.Errorf("fetch request: %w", err)
	}
	req.Header = timeoutOf(ctx)
	resp, err := p.c.c.Do(req)
	if err != nil {
		return nil, 0, "", fmt.Errorf("fetch shard %s from %s: %w", uid, p.addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, 0, "", agentError(peer.DecodeError(resp, p.addr))
	}
	size, err := strconv.ParseInt(resp.Header.Get(sizeHeader), 10, 64)
	if err != nil {
		resp.Body.Close()
		return nil, 0, "", fmt.Errorf("fetch shard %s from %s: no length", uid, p.addr)
	}
	return resp.Body, size, resp.Header.Get(checksumHeader), nil
}

// Endpoint is where the source's copy of the shard listens: the host of
// the node's API address (shard processes bind to it) and the port its
// agent reports.
func (p peerSource) Endpoint(ctx context.Context, uid string) (string, error) {
	info, err := p.c.Info(ctx, p.addr, uid)
	if err != nil {
		return "", err
	}
	if info.Port == 0 {
		return "", fmt.Errorf("shard %s on %s listens on no port: %w", uid, p.addr, ErrNotStreamable)
	}
	host, _, err := net.SplitHostPort(p.addr)
	if err != nil {
		return "", fmt.Errorf("source address %q: %w", p.addr, err)
	}
	return net.JoinHostPort(host, strconv.Itoa(info.Port)), nil
}
