package daemon

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cnm/pki"
)

// fakeMember is an HTTPS server that answers every request with body and
// counts the requests that carried credentials.
func fakeMember(t *testing.T, body string) (url string, withCredentials *atomic.Int32) {
	t.Helper()
	withCredentials = new(atomic.Int32)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := r.BasicAuth(); ok {
			withCredentials.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, withCredentials
}

func joinConfig(t *testing.T, url string) Config {
	t.Helper()
	cfg := testConfig(t)
	cfg.Join, cfg.AdminUser, cfg.AdminPassword = url, "admin@test", "secret-password"
	cfg.JoinTimeout = 5 * time.Second
	return cfg
}

// --join checks the member against the cluster CA it was given before it
// sends the credentials: a server under any other CA gets nothing.
func TestJoin_SendsNoCredentialsToAServerOfAnotherCA(t *testing.T) {
	url, creds := fakeMember(t, `{}`)
	ca, err := pki.NewCA("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	fp, err := pki.Fingerprint(ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := joinConfig(t, url)
	cfg.JoinCAFingerprint = strings.ToUpper(fp)
	n, err := Start(t.Context(), cfg)
	if err == nil {
		n.Kill()
		t.Fatal("joined a server of another CA")
	}
	if !strings.Contains(err.Error(), "not a node of the expected cluster") {
		t.Errorf("error %q does not say the server is not of the cluster", err)
	}
	if got := creds.Load(); got != 0 {
		t.Fatalf("%d requests with credentials reached a server of another CA", got)
	}
}

// A server that answers a join without a certificate is not a cnm node:
// one clear error at once, not a PEM error, and no retries.
func TestJoin_AnswerWithoutCertificateIsNotACnmNode(t *testing.T) {
	for _, body := range []string{`{}`, `<html>hello</html>`} {
		url, creds := fakeMember(t, body)
		cfg := joinConfig(t, url)
		cfg.JoinInsecure = true
		start := time.Now()
		n, err := Start(t.Context(), cfg)
		if err == nil {
			n.Kill()
			t.Fatalf("answer %s: joined", body)
		}
		if want := "the server at " + url + " did not answer as a cnm node"; !strings.Contains(err.Error(), want) {
			t.Errorf("answer %s: error %q, want %q", body, err, want)
		}
		if got := creds.Load(); got != 1 || time.Since(start) > 3*time.Second {
			t.Errorf("answer %s: %d requests in %s, want one, at once", body, got, time.Since(start))
		}
	}
}

// A node restarted after the first join step, with its certificate from
// it, pins the CA it got there even without the flags.
func TestJoinTLS_PinsTheCAOfTheDataDir(t *testing.T) {
	cfg := bootstrapped(t)
	cfg.Bootstrap, cfg.Join = false, "https://127.0.0.1:1"
	id, err := cfg.checkIdentity()
	if err != nil {
		t.Fatal(err)
	}
	tc, fp, err := joinTLS(cfg, id)
	if err != nil {
		t.Fatal(err)
	}
	if fp != id.ClusterID || tc.VerifyConnection == nil {
		t.Fatalf("pinned %q (verifying: %v), want the data dir's cluster %s", fp, tc.VerifyConnection != nil, id.ClusterID)
	}
}

func TestConfig_JoinsItself(t *testing.T) {
	for _, tc := range []struct {
		api, join string
		want      bool
	}{
		{"127.0.0.2:9443", "https://127.0.0.2:9443", true},
		{"127.0.0.2:9443", "127.0.0.2:9443/", true},
		{"0.0.0.0:9443", "https://127.0.0.1:9443", true},
		{":9443", "https://localhost:9443", true},
		{"10.0.0.2:443", "https://10.0.0.2", true},
		{"127.0.0.2:9443", "https://127.0.0.1:9443", false},
		{"127.0.0.2:9443", "https://127.0.0.2:9543", false},
		{"0.0.0.0:9443", "https://10.0.0.1:9443", false},
	} {
		c := Config{APIAddr: tc.api, Join: tc.join}
		if got := c.joinsItself(); got != tc.want {
			t.Errorf("--api-addr %s --join %s: joins itself = %v, want %v", tc.api, tc.join, got, tc.want)
		}
	}
}

// The CA file and the fingerprint, when both given, must name one CA.
func TestConfig_JoinPinFlagsMustAgree(t *testing.T) {
	ca, other := mustCA(t), mustCA(t)
	file := filepath.Join(t.TempDir(), "ca.crt")
	writeFile(t, file, ca.CertPEM)
	fp, _ := pki.Fingerprint(ca.CertPEM)
	otherFP, _ := pki.Fingerprint(other.CertPEM)
	c := Config{JoinCAFile: file, JoinCAFingerprint: fp}
	if got, _, err := c.joinPin(); err != nil || got != fp {
		t.Fatalf("matching file and fingerprint: %q, %v", got, err)
	}
	c.JoinCAFingerprint = otherFP
	if _, _, err := c.joinPin(); err == nil || !strings.Contains(err.Error(), "not the --join-ca-fingerprint") {
		t.Fatalf("file and fingerprint of different CAs: %v", err)
	}
}

func mustCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}
