package clustertest_test

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"cnm/daemon/clustertest"
	"cnm/pki"
)

type certView struct {
	UID          int `json:"uid"`
	Certificates []struct {
		Serial string `json:"serial"`
	} `json:"certificates"`
	CertRotation uint64 `json:"cert_rotation"`
}

// currentSerial is the serial of the certificate node uid uses now. A
// renewal swaps the node's tls dir for a new one, so for a moment there is
// none: a read that finds none looks again.
func currentSerial(t *testing.T, c *clustertest.Cluster, uid int) string {
	t.Helper()
	var m pki.Material
	clustertest.Eventually(t, 5*time.Second, func() error {
		var err error
		m, err = pki.Load(filepath.Join(c.Member(uid).Cfg.DataDir, "tls"))
		return err
	})
	leaf, err := m.Leaf()
	if err != nil {
		t.Fatal(err)
	}
	return pki.Serial(leaf)
}

// peerClient calls node APIs with material m, as a node would.
func peerClient(t *testing.T, m pki.Material) *http.Client {
	t.Helper()
	cert, err := tls.X509KeyPair(m.CertPEM, m.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, //nolint:gosec // test probe
		ServerName: pki.PeerName}
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	t.Cleanup(cl.CloseIdleConnections)
	return cl
}

func peerGet(cl *http.Client, addr, path string) (int, string, error) {
	resp, err := cl.Get("https://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Code string `json:"error_code"`
	}
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e.Code, nil
}

// TestCerts_RemovedNodesCertificateOpensNoDoor: once node 3 is removed,
// its certificate gets certificate_revoked from the API's node-to-node
// endpoints, on a keep-alive connection opened before the removal too,
// and the raft ports close connections made with it.
func TestCerts_RemovedNodesCertificateOpensNoDoor(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	target := followers(c, leader)[0]
	old, err := pki.Load(filepath.Join(c.Member(target).Cfg.DataDir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	cl := peerClient(t, old)
	if st, _, err := peerGet(cl, c.Member(leader).Cfg.APIAddr, "/v1/internal/members"); err != nil || st != http.StatusOK {
		t.Fatalf("a member's certificate before its removal: %d %v", st, err)
	}
	via := followers(c, target)[0]
	c.MustDo(via, "POST", fmt.Sprintf("/v1/nodes/%d/actions/remove", target), nil, http.StatusOK)
	clustertest.Eventually(t, 60*time.Second, func() error {
		r, err := c.Do(via, "GET", fmt.Sprintf("/v1/nodes/%d/actions/remove", target), nil)
		if err != nil {
			return err
		}
		var a struct {
			Status string `json:"status"`
		}
		_ = json.Unmarshal(r.Body, &a)
		if a.Status != "completed" {
			return fmt.Errorf("remove is %q", a.Status)
		}
		return nil
	})
	for _, uid := range c.Running() {
		if uid == target {
			continue
		}
		addr := c.Member(uid).Cfg.APIAddr
		clustertest.Eventually(t, 10*time.Second, func() error {
			for _, path := range []string{"/v1/internal/members", "/v1/internal/agent/shards"} {
				st, code, err := peerGet(cl, addr, path)
				if err != nil {
					return err
				}
				if st != http.StatusForbidden || code != "certificate_revoked" {
					return fmt.Errorf("node %d answers %s with %d %s to the removed node's certificate", uid, path, st, code)
				}
			}
			return nil
		})
		cert, _ := tls.X509KeyPair(old.CertPEM, old.KeyPEM)
		conn, err := tls.Dial("tcp", c.Member(uid).Cfg.RaftAddr, &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}) //nolint:gosec // probe
		if err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("node %d's raft port kept a connection made with the removed node's certificate", uid)
			}
		}
	}
}

// TestCerts_RenewedBeforeExpiryAndRotatedOnRequest: with a short lifetime,
// every node renews its certificate on its own and revokes the old one,
// and the cluster keeps working across renewals; an admin's rotation
// replaces a node's certificate at once.
func TestCerts_RenewedBeforeExpiryAndRotatedOnRequest(t *testing.T) {
	const lifetime = 9 * time.Second
	c := clustertest.Start(t, 3, clustertest.Options{CertLifetime: lifetime})
	first := map[int]string{}
	for _, uid := range c.UIDs() {
		first[uid] = currentSerial(t, c, uid)
	}
	// Every node renews within two thirds of the lifetime, plus slack.
	clustertest.Eventually(t, 3*lifetime, func() error {
		for _, uid := range c.UIDs() {
			if currentSerial(t, c, uid) == first[uid] {
				return fmt.Errorf("node %d still uses its first certificate", uid)
			}
		}
		return nil
	})
	leader := c.Leader(10 * time.Second)
	for _, uid := range c.UIDs() {
		var v certView
		c.MustDo(leader, "GET", fmt.Sprintf("/v1/nodes/%d/certificate", uid), nil, http.StatusOK).JSON(t, &v)
		for _, cert := range v.Certificates {
			if cert.Serial == first[uid] {
				// Revoked once the node switched; the revocation may lag a
				// moment behind the switch.
				clustertest.Eventually(t, 10*time.Second, func() error {
					c.MustDo(leader, "GET", fmt.Sprintf("/v1/nodes/%d/certificate", uid), nil, http.StatusOK).JSON(t, &v)
					if slices.ContainsFunc(v.Certificates, func(x struct {
						Serial string `json:"serial"`
					}) bool {
						return x.Serial == first[uid]
					}) {
						return fmt.Errorf("node %d's first certificate is still on record", uid)
					}
					return nil
				})
			}
		}
	}
	// Writes still go through every node, forwarded with renewed
	// certificates.
	for i, uid := range c.UIDs() {
		c.MustDo(uid, "POST", "/v1/users", newUser(100+i), http.StatusOK)
	}
	// A rotation: a fresh certificate at once, well before the next
	// renewal would be due.
	target := followers(c, leader)[0]
	before := currentSerial(t, c, target)
	var v certView
	c.MustDo(leader, "POST", fmt.Sprintf("/v1/nodes/%d/certificate/rotate", target), nil, http.StatusOK).JSON(t, &v)
	if v.CertRotation != 1 {
		t.Fatalf("cert_rotation = %d, want 1", v.CertRotation)
	}
	clustertest.Eventually(t, 5*time.Second, func() error {
		if currentSerial(t, c, target) == before {
			return fmt.Errorf("node %d has not rotated its certificate", target)
		}
		return nil
	})
}
