package clustertest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"cnm/daemon/clustertest"
	"cnm/pki"
)

// A request marked as forwarded is never forwarded again: a follower answers
// it with 421 not_leader (telling the forwarding node to look for the
// leader), and applies nothing. The mark counts only on connections that
// present a cluster certificate.
func TestCluster_ForwardedRequestIsNeverForwardedAgain(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	via := followers(c, leader)[0]

	mat, err := pki.Load(filepath.Join(c.Member(leader).Cfg.DataDir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := mat.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	peer := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer peer.CloseIdleConnections()

	post := func(client *http.Client, body map[string]string) *http.Response {
		t.Helper()
		b, _ := json.Marshal(body)
		req, err := http.NewRequest("POST", "https://"+c.Member(via).Cfg.APIAddr+"/v1/users", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(clustertest.AdminUser, clustertest.AdminPassword)
		req.Header.Set("X-Cnm-Forwarded-By", "1")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	if resp := post(peer, newUser(1)); resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("forwarded request to follower %d: status %d, want 421", via, resp.StatusCode)
	}
	var us []user
	c.MustDo(leader, "GET", "/v1/users", nil, http.StatusOK).JSON(t, &us)
	if len(us) != 1 {
		t.Fatalf("a forwarded request refused by a follower was applied: %v", us)
	}

	// Without a node certificate the mark is ignored and the write is
	// forwarded as usual.
	user := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: insecure()}}
	defer user.CloseIdleConnections()
	if resp := post(user, newUser(2)); resp.StatusCode != http.StatusOK {
		t.Fatalf("request with a forged forwarding mark: status %d, want 200", resp.StatusCode)
	}
}
