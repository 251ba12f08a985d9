package peer

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
	"time"
)

// ErrJoinRefused marks join answers that retrying cannot fix (bad
// credentials, a uid taken by another node).
var ErrJoinRefused = errors.New("join refused")

// JoinClient is a joining node's side of a join: it calls one member with
// the administrator's credentials, retrying what a retry can fix. Both
// join steps are idempotent, so a retry after a lost answer is harmless.
type JoinClient struct {
	hc *http.Client
	// Target names the member as the operator gave it; URL is its base URL.
	Target, URL    string
	User, Password string
	// Timeout bounds each step, retries included.
	Timeout time.Duration
	Log     *slog.Logger
}

// NewJoinClient makes a client whose connections leave from localHost and
// check the member with tc.
func NewJoinClient(tc *tls.Config, localHost string, dial DialFunc) *JoinClient {
	return &JoinClient{hc: &http.Client{Transport: &http.Transport{
		TLSClientConfig: tc.Clone(),
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dial(ctx, network, localHost, addr)
		},
	}, Timeout: 15 * time.Second}}
}

// Close drops idle connections.
func (c *JoinClient) Close() { c.hc.CloseIdleConnections() }

// Admit asks the member to admit this node and sign its certificate.
func (c *JoinClient) Admit(ctx context.Context, req JoinRequest) (JoinResponse, error) {
	var resp JoinResponse
	err := c.callWithRetry(ctx, joinPath, req, &resp)
	return resp, err
}

// Vote asks the leader to make this node a nonvoter (req.Nonvoter) or a
// voter; out receives the answer.
func (c *JoinClient) Vote(ctx context.Context, req VoterRequest, out any) error {
	return c.callWithRetry(ctx, voterPath, req, out)
}

// callWithRetry POSTs body to path until it answers 200 or a permanent
// refusal, for at most c.Timeout.
func (c *JoinClient) callWithRetry(ctx context.Context, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode join request: %w", err)
	}
	backoff := 50 * time.Millisecond
	for {
		err := c.postJSON(ctx, path, b, out)
		if err == nil || errors.Is(err, ErrJoinRefused) {
			return err
		}
		c.Log.Warn("join attempt failed; retrying", "path", path, "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("join %s: %w (last error: %w)", c.Target, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

func (c *JoinClient) postJSON(ctx context.Context, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("join request: %w", err)
	}
	req.SetBasicAuth(c.User, c.Password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("call %s: %w", path, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500:
		return fmt.Errorf("%s: %w", path, DecodeError(resp, c.Target))
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%w: %s: %w", ErrJoinRefused, path, DecodeError(resp, c.Target))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read answer of %s: %w", path, err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%w: the server at %s did not answer as a cnm node (%s: %w)", ErrJoinRefused, c.Target, path, err)
	}
	return nil
}
