package clustertest_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cnm/daemon/clustertest"
	"cnm/pki"
)

// With --tls-cert/--tls-key every node's API shows clients the operator's
// certificate, while joins, forwarding and agents between nodes keep
// working on the cluster CA.
func TestTLS_OperatorCertificateOnTheAPI(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, err := pki.NewCA("operator", now)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(0, []string{clustertest.HostOf(1), clustertest.HostOf(2), clustertest.HostOf(3)})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Sign(csrPEM, now)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key")
	for f, b := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// Nodes 2 and 3 join through node 1, whose API shows the operator's
	// certificate.
	c := clustertest.Start(t, 3, clustertest.Options{TLSCertFile: certFile, TLSKeyFile: keyFile})

	trusting := func(caPEM []byte) *http.Client {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			t.Fatal("no CA certificate")
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	operator := trusting(ca.CertPEM)
	clusterCA, err := os.ReadFile(filepath.Join(c.Member(1).Cfg.DataDir, "tls", pki.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	cluster := trusting(clusterCA)
	leader := c.Leader(10 * time.Second)
	for _, uid := range c.UIDs() {
		url := "https://" + c.Member(uid).Cfg.APIAddr
		req, _ := http.NewRequest("GET", url+"/v1/nodes", nil)
		req.SetBasicAuth(clustertest.AdminUser, clustertest.AdminPassword)
		resp, err := operator.Do(req)
		if err != nil {
			t.Fatalf("node %d, verified with the operator's CA: %v", uid, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("node %d: GET /v1/nodes = %d", uid, resp.StatusCode)
		}
		if _, err := cluster.Get(url + "/v1/ping"); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("node %d showed a client its cluster certificate (err %v)", uid, err)
		}
		// A write through a follower is forwarded to the leader over TLS.
		if uid != leader {
			c.MustDo(uid, "POST", "/v1/users", newUser(uid), http.StatusOK)
		}
	}
}
