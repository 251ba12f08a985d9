package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
)

// ForwardedHeader marks a request forwarded by a follower. It is honoured
// only on connections that present a cluster certificate.
const ForwardedHeader = "X-Cnm-Forwarded-By"

// TaskHeader carries the id a write was given on the node where the client
// sent it, so that every leader it is sent to sees the same write: Apply
// stores an action submission once under it. It is honoured only from
// peers; the receiving node sets it for its clients.
const TaskHeader = "X-Cnm-Task-Id"

// Outcome is what became of a forwarded write.
type Outcome int

const (
	// Answered: the leader's answer was copied to the client.
	Answered Outcome = iota
	// NotApplied: the write surely was not applied (it never reached a
	// leader, or the receiver said it does not lead); it may be sent again.
	NotApplied
	// Unknown: the leader stopped answering; the write may or may not have
	// been applied.
	Unknown
)

// Forward sends a write to the leader at addr and, unless the leader said
// it no longer leads, copies its answer to w unchanged.
func (c *Client) Forward(ctx context.Context, w http.ResponseWriter, r *http.Request, addr string, body []byte, self int) (Outcome, error) {
	u := *r.URL
	u.Scheme, u.Host = "https", addr
	req, err := http.NewRequestWithContext(ctx, r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return NotApplied, fmt.Errorf("forward request: %w", err)
	}
	for _, h := range []string{"Authorization", "Content-Type", "Accept", TaskHeader} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(ForwardedHeader, strconv.Itoa(self))
	resp, err := c.hc.Do(req)
	if err != nil {
		if neverSent(err) {
			return NotApplied, fmt.Errorf("forward to %s: %w", addr, err)
		}
		return Unknown, fmt.Errorf("forward to %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusMisdirectedRequest {
		_, _ = io.Copy(io.Discard, resp.Body)
		return NotApplied, fmt.Errorf("forward to %s: not the leader", addr)
	}
	for k, vs := range resp.Header {
		if k == "Content-Length" || k == "Connection" {
			continue
		}
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
	return Answered, nil
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
