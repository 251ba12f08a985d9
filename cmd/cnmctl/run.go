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
	url := fs.String("url", def("CNM_URL", "https://127.0.0.1:9443"), "any node's API (CNM_URL)")
	user := fs.String("user", def("CNM_USER", "admin@cnm.local"), "user email (CNM_USER)")
	password := fs.String("password", getenv("CNM_PASSWORD"), "password (CNM_PASSWORD)")
	caFile := fs.String("ca", getenv("CNM_CA"), "cluster CA file; without it the server certificate is not verified, like curl -k (CNM_CA)")
	output := fs.String("o", "pretty", "output: pretty or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	method, path, body, err := command(fs.Args())
	if err != nil {
		fs.Usage()
		return err
	}
	if body == "-" {
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return fmt.Errorf("read body from stdin: %w", err)
		}
		body = string(b)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("read ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("no certificate in %s", *caFile)
		}
	} else {
		tc.InsecureSkipVerify = true
	}
	client := &http.Client{Timeout: 11 * time.Minute, Transport: &http.Transport{TLSClientConfig: tc}}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(*url, "/")+path, strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.SetBasicAuth(*user, *password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if *output == "pretty" && json.Valid(data) {
		var buf bytes.Buffer
		if json.Indent(&buf, data, "", "  ") == nil {
			data = append(buf.Bytes(), '\n')
		}
	}
	if _, err := stdout.Write(data); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return nil
}

func command(args []string) (method, path, body string, err error) {
	if len(args) == 0 {
		return "", "", "", errors.New("no command")
	}
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	switch args[0] {
	case "cluster", "nodes", "users", "ping":
		return http.MethodGet, "/v1/" + args[0], "", nil
	case "node":
		if arg(1) == "" {
			return "", "", "", errors.New("node needs a uid")
		}
		return http.MethodGet, "/v1/nodes/" + arg(1), "", nil
	case "get", "delete", "post", "put":
		if !strings.HasPrefix(arg(1), "/") {
			return "", "", "", fmt.Errorf("%s needs a path starting with /", args[0])
		}
		return strings.ToUpper(args[0]), arg(1), arg(2), nil
	}
	return "", "", "", fmt.Errorf("unknown command %q", args[0])
}
