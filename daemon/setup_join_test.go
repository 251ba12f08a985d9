package daemon

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A join_cluster naming a member that does not answer ends in an error
// that names the member, within the bound, and can be retried.
func TestSetup_JoinToAnUnreachableMemberEndsInError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there any more

	cfg := testConfig(t)
	cfg.SetupJoinTimeout = 500 * time.Millisecond
	startSetup(t, cfg)

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // test client, like curl -k
	}}
	defer client.CloseIdleConnections()
	join := func() int {
		t.Helper()
		body, _ := json.Marshal(map[string]any{
			"cluster":     map[string]any{"nodes": []string{"https://" + dead}},
			"credentials": map[string]any{"username": "admin@cnm.local", "password": "secret-password"},
		})
		resp, err := client.Post("https://"+cfg.APIAddr+"/v1/bootstrap/join_cluster", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	status := func() (state, message string) {
		t.Helper()
		resp, err := client.Get("https://" + cfg.APIAddr + "/v1/bootstrap")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b struct {
			Status struct {
				State   string `json:"state"`
				Message string `json:"error_message"`
			} `json:"bootstrap_status"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
			t.Fatal(err)
		}
		return b.Status.State, b.Status.Message
	}

	for attempt := 1; attempt <= 2; attempt++ {
		if code := join(); code != http.StatusOK {
			t.Fatalf("attempt %d: join_cluster answered %d", attempt, code)
		}
		var msg string
		waitFor(t, "the join to end in an error", 5*time.Second, func() bool {
			var state string
			state, msg = status()
			return state == "error"
		})
		if !strings.Contains(msg, dead) {
			t.Fatalf("attempt %d: error %q does not name the member %s", attempt, msg, dead)
		}
	}
}
