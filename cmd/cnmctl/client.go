package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// defaultURLs are the nodes of the local cluster that scripts/cluster.sh up starts.
const defaultURLs = "https://127.0.0.1:9443,https://127.0.0.2:9443,https://127.0.0.3:9443"

// client sends authenticated requests to the API of any of several nodes.
// It keeps to the node that answered last, and moves on to the next one
// only when a node cannot be reached or says it is no longer a member: an
// HTTP error from a member is the cluster's answer, the same on every node.
type client struct {
	http           *http.Client
	bases          []string
	cur            int // index in bases of the node asked first
	user, password string
}

func newClient(urls, user, password, caFile string) (*client, error) {
	var bases []string
	for u := range strings.SplitSeq(urls, ",") {
		if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
			bases = append(bases, u)
		}
	}
	if len(bases) == 0 {
		return nil, errors.New("--url names no node")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", caFile)
		}
	} else {
		tc.InsecureSkipVerify = true
	}
	return &client{
		// Bounded dial and handshake: a node that is down or frozen costs
		// seconds before the next one is asked, not the whole timeout.
		http: &http.Client{Timeout: 11 * time.Minute, Transport: &http.Transport{
			TLSClientConfig:     tc,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
		}},
		bases: bases, user: user, password: password,
	}, nil
}

// base is the node the next request goes to first.
func (c *client) base() string { return c.bases[c.cur] }

// next moves on to the node after the current one; false when there is
// only one.
func (c *client) next() bool {
	if len(c.bases) < 2 {
		return false
	}
	c.cur = (c.cur + 1) % len(c.bases)
	return true
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request, to the current node and, if it cannot be reached,
// to each of the others in turn. A GET moves on after any transport error;
// another method only when the connection was never made, so that a write
// the node may have received is not sent twice. A node that answers 503
// not_a_member was removed from the cluster and has not acted on the
// request: the next one is asked.
func (c *client) do(ctx context.Context, method, path, body string) (*response, error) {
	var firstErr error
	for range c.bases {
		resp, err := c.once(ctx, c.base(), method, path, body)
		switch {
		case err == nil && resp.status == http.StatusServiceUnavailable && errorCode(resp.body) == "not_a_member":
			if firstErr == nil {
				firstErr = errNotMember{base: c.base(), resp: resp}
			}
		case err == nil:
			return resp, nil
		case ctx.Err() != nil:
			return nil, err
		case method != http.MethodGet && !dialFailed(err):
			return nil, err
		default:
			if firstErr == nil {
				firstErr = err
			}
		}
		if !c.next() {
			break
		}
	}
	var nm errNotMember
	if errors.As(firstErr, &nm) && len(c.bases) == 1 {
		return nm.resp, nil
	}
	return nil, firstErr
}

// errNotMember: the node at base answered 503 not_a_member.
type errNotMember struct {
	base string
	resp *response
}

func (e errNotMember) Error() string {
	return e.base + " was removed from the cluster (503 not_a_member)"
}

// dialFailed is true when err says no connection was made, so the request
// was never sent.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (c *client) once(ctx context.Context, base, method, path, body string) (*response, error) {
	req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.SetBasicAuth(c.user, c.password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, base+path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read answer to %s %s: %w", method, base+path, err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}
