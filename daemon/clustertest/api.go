package clustertest

// Requests to a member's API, as the admin or any user, over the test
// client (which trusts any certificate, like curl -k).

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// Response is an API answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test on error.
func (r Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %q: %v", r.Body, err)
	}
}

// ErrorCode returns the error_code of an error body ("" if none).
func (r Response) ErrorCode() string {
	var e struct {
		Code string `json:"error_code"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Code
}

// Do sends a request as the admin to node uid's API.
func (c *Cluster) Do(uid int, method, path string, body any) (Response, error) {
	return c.DoAs(uid, AdminUser, AdminPassword, method, path, body)
}

// DoAs sends a request with the given credentials.
func (c *Cluster) DoAs(uid int, user, password, method, path string, body any) (Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return Response{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "https://"+c.Member(uid).Cfg.APIAddr+path, rd)
	if err != nil {
		return Response{}, err
	}
	req.SetBasicAuth(user, password)
	resp, err := c.client.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, err
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// MustDo is Do that fails the test unless the answer has status want.
func (c *Cluster) MustDo(uid int, method, path string, body any, want int) Response {
	c.t.Helper()
	r, err := c.Do(uid, method, path, body)
	if err != nil {
		c.t.Fatalf("%s %s on node %d: %v", method, path, uid, err)
	}
	if r.Status != want {
		c.t.Fatalf("%s %s on node %d: status %d, want %d: %s", method, path, uid, r.Status, want, r.Body)
	}
	return r
}
