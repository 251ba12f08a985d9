package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// tabler renders an API answer as a table; nil prints the answer as
// indented JSON in table mode too (answers with no shape worth a table).
type tabler func(w io.Writer, body []byte) error

// emit writes an API answer as --output says.
func (a *app) emit(body []byte, table tabler) error {
	var out []byte
	switch {
	case a.output == "yaml" && json.Valid(body):
		y, err := yaml.JSONToYAML(body)
		if err != nil {
			return fmt.Errorf("answer as YAML: %w", err)
		}
		out = y
	case a.output == "table" && table != nil && json.Valid(body):
		var buf bytes.Buffer
		tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
		if err := table(tw, body); err != nil {
			return fmt.Errorf("answer as a table: %w", err)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		out = buf.Bytes()
	default:
		var buf bytes.Buffer
		if json.Indent(&buf, body, "", "  ") == nil {
			out = append(buf.Bytes(), '\n')
		} else {
			out = body
		}
	}
	if _, err := a.stdout.Write(out); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// call sends one request and returns the answer's body; an HTTP error is
// printed (the API's error body names what is wrong) and returned.
func (a *app) call(ctx context.Context, method, path, body string) ([]byte, error) {
	c, err := a.api()
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	if resp.status >= 300 {
		return resp.body, httpError(method, path, resp)
	}
	return resp.body, nil
}

// httpError says what an error answer said: its code and description.
func httpError(method, path string, resp *response) error {
	var e struct {
		Code        string `json:"error_code"`
		Description string `json:"description"`
	}
	if json.Unmarshal(resp.body, &e) == nil && e.Code != "" {
		return fmt.Errorf("%s %s: HTTP %d %s: %s", method, path, resp.status, e.Code, e.Description)
	}
	return fmt.Errorf("%s %s: HTTP %d %s", method, path, resp.status, http.StatusText(resp.status))
}

// show is call, then emit.
func (a *app) show(ctx context.Context, method, path, body string, table tabler) error {
	out, err := a.call(ctx, method, path, body)
	if err != nil {
		return err
	}
	return a.emit(out, table)
}

// row writes one tab-separated table row.
func row(w io.Writer, cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(w, strings.Join(s, "\t"))
}

// yesNo is a flag in a table.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// mib is a size for people: KiB, MiB or GiB, one decimal.
func mib(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
}
