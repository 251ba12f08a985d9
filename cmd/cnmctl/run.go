package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const usage = `usage: cnmctl [flags] COMMAND
commands:
  cluster | nodes | node UID | users | ping     shortcuts for the GET endpoints
  get PATH | delete PATH                        any endpoint, e.g. get /v1/nodes/2
  post PATH [BODY] | put PATH [BODY]            BODY is JSON; "-" reads it from stdin
  action NODE ACTION [PARAMS]                   start a node action and follow it to its end
                                                with a live progress bar, e.g. action 2 maintenance_on
  watch NODE ACTION                             follow a node's latest action of that kind
  cert NODE | rotate-cert NODE                  show a node's certificates, or have it replace
                                                its certificate now and revoke the old one
flags:`

// run is cnmctl without the process: testable with fake args and writers.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cnmctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, usage); fs.PrintDefaults() }
	def := func(k, d string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return d
	}
	url := fs.String("url", def("CNM_URL", defaultURLs), "the API of one or more nodes, comma-separated: cnmctl moves on to the next when one cannot be reached (CNM_URL)")
	user := fs.String("user", def("CNM_USER", "admin@cnm.local"), "user email (CNM_USER)")
	password := fs.String("password", getenv("CNM_PASSWORD"), "password; prefer CNM_PASSWORD, as any local user can read a command line (CNM_PASSWORD)")
	caFile := fs.String("ca", getenv("CNM_CA"), "cluster CA file; without it the server certificate is not verified, like curl -k (CNM_CA)")
	output := fs.String("o", "pretty", "output: pretty or json")
	progress := fs.String("progress", "auto", "how action and watch show progress: auto (a bar on a terminal, lines otherwise), bar, lines or none")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *output != "pretty" && *output != "json" {
		return fmt.Errorf("-o must be pretty or json, got %q", *output)
	}
	view, err := newView(*progress, stderr)
	if err != nil {
		return err
	}
	cmd, err := command(fs.Args())
	if err != nil {
		fs.Usage()
		return err
	}
	if cmd.body == "-" {
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return fmt.Errorf("read body from stdin: %w", err)
		}
		cmd.body = string(b)
	}
	c, err := newClient(*url, *user, *password, *caFile)
	if err != nil {
		return err
	}
	print := func(data []byte) error {
		if *output == "pretty" && json.Valid(data) {
			var buf bytes.Buffer
			if json.Indent(&buf, data, "", "  ") == nil {
				data = append(buf.Bytes(), '\n')
			}
		}
		if _, err := stdout.Write(data); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		return nil
	}
	if cmd.follow != nil {
		data, ferr := follow(ctx, c, *cmd.follow, view)
		if data != nil {
			if err := print(data); err != nil {
				return err
			}
		}
		return ferr
	}
	resp, err := c.do(ctx, cmd.method, cmd.path, cmd.body)
	if err != nil {
		return err
	}
	if err := print(resp.body); err != nil {
		return err
	}
	if resp.status >= 300 {
		return fmt.Errorf("%s %s: HTTP %d %s", cmd.method, cmd.path, resp.status, http.StatusText(resp.status))
	}
	return nil
}

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
		return nil, errors.New("-url names no node")
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

// invocation is what the command line asks for: one request, or an action
// to follow.
type invocation struct {
	method, path, body string
	follow             *target
}

func command(args []string) (invocation, error) {
	if len(args) == 0 {
		return invocation{}, errors.New("no command")
	}
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	switch args[0] {
	case "cluster", "nodes", "users", "ping":
		return invocation{method: http.MethodGet, path: "/v1/" + args[0]}, nil
	case "node":
		if arg(1) == "" {
			return invocation{}, errors.New("node needs a uid")
		}
		return invocation{method: http.MethodGet, path: "/v1/nodes/" + arg(1)}, nil
	case "cert", "rotate-cert":
		if arg(1) == "" {
			return invocation{}, fmt.Errorf("%s needs a node uid", args[0])
		}
		if args[0] == "cert" {
			return invocation{method: http.MethodGet, path: "/v1/nodes/" + arg(1) + "/certificate"}, nil
		}
		return invocation{method: http.MethodPost, path: "/v1/nodes/" + arg(1) + "/certificate/rotate"}, nil
	case "get", "delete", "post", "put":
		if !strings.HasPrefix(arg(1), "/") {
			return invocation{}, fmt.Errorf("%s needs a path starting with /", args[0])
		}
		return invocation{method: strings.ToUpper(args[0]), path: arg(1), body: arg(2)}, nil
	case "action", "watch":
		if arg(1) == "" || arg(2) == "" {
			return invocation{}, fmt.Errorf("%s needs a node uid and an action name", args[0])
		}
		t := &target{node: arg(1), action: arg(2), start: args[0] == "action", params: arg(3)}
		if !t.start && arg(3) != "" {
			return invocation{}, errors.New("watch takes no parameters")
		}
		return invocation{follow: t}, nil
	}
	return invocation{}, fmt.Errorf("unknown command %q", args[0])
}
