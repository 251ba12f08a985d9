package pki_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cnm/pki"
)

func material(t *testing.T, ca *pki.CA, uid int, hosts ...string) pki.Material {
	t.Helper()
	key, csr, err := pki.NewKeyAndCSR(uid, hosts)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Sign(csr, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return pki.Material{CertPEM: cert, KeyPEM: key, CAPEM: ca.CertPEM}
}

func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// handshake runs a mutual-TLS handshake over real loopback TCP and returns
// the client's and the server's errors.
func handshake(t *testing.T, server, client pki.Material, serverName string) (clientErr, serverErr error) {
	t.Helper()
	scfg, err := server.ServerConfig(true)
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := client.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	ccfg.ServerName = serverName
	ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		srvErr <- c.(*tls.Conn).Handshake()
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), ccfg)
	if err == nil {
		// The server's verdict on the client certificate arrives with the
		// first read under TLS 1.3.
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		_, err = c.Read(make([]byte, 1))
		if errors.Is(err, io.EOF) || isTimeout(err) {
			err = nil
		}
		c.Close()
	}
	return err, <-srvErr
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestNodesOfOneCAAuthenticateEachOther(t *testing.T) {
	ca := newCA(t)
	a := material(t, ca, 1, "127.0.0.1")
	b := material(t, ca, 2, "127.0.0.2")
	cerr, serr := handshake(t, a, b, "127.0.0.1")
	if cerr != nil || serr != nil {
		t.Fatalf("client %v, server %v", cerr, serr)
	}
}

func TestForeignCertificatesAreRefused(t *testing.T) {
	ours, theirs := newCA(t), newCA(t)
	member := material(t, ours, 1, "127.0.0.1")
	stranger := material(t, theirs, 9, "127.0.0.1")
	if _, serr := handshake(t, member, stranger, "127.0.0.1"); serr == nil {
		t.Fatal("server accepted a client certificate of another CA")
	}
	if cerr, _ := handshake(t, stranger, member, "127.0.0.1"); cerr == nil {
		t.Fatal("client accepted a server certificate of another CA")
	}
}

func TestCertificateNamesOnlyTheRequestedHosts(t *testing.T) {
	ca := newCA(t)
	m := material(t, ca, 3, "127.0.0.3", "node3.example")
	cert, err := pki.ParseCert(m.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	for _, tc := range []struct {
		name string
		ok   bool
	}{{"127.0.0.3", true}, {"node3.example", true}, {"127.0.0.4", false}, {"other.example", false}} {
		_, err := cert.Verify(x509.VerifyOptions{DNSName: tc.name, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if (err == nil) != tc.ok {
			t.Errorf("verify as %s: err %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("node certificate is not valid for client auth: %v", err)
	}
}

func TestSignRefusesBadRequests(t *testing.T) {
	ca := newCA(t)
	_, csr, err := pki.NewKeyAndCSR(1, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), csr...)
	tampered[len(tampered)/2] ^= 0x01
	for name, in := range map[string][]byte{
		"empty":       nil,
		"not pem":     []byte("hello"),
		"certificate": ca.CertPEM,
		"tampered":    tampered,
	} {
		if _, err := ca.Sign(in, time.Now()); err == nil {
			t.Errorf("%s: Sign accepted it", name)
		}
	}
}

func TestMaterialSaveLoadKeepsKeyPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := pki.Load(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of an empty dir: %v, want os.ErrNotExist", err)
	}
	m := material(t, newCA(t), 1, "127.0.0.1")
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := pki.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.CertPEM) != string(m.CertPEM) || string(got.KeyPEM) != string(m.KeyPEM) || string(got.CAPEM) != string(m.CAPEM) {
		t.Fatal("loaded material differs from what was saved")
	}
	st, err := os.Stat(filepath.Join(dir, pki.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("node key mode %v, want 0600", st.Mode().Perm())
	}
}

// dialAPI handshakes with an API server config as a client config would and
// returns the certificate the server showed, or the client's error.
func dialAPI(t *testing.T, scfg, ccfg *tls.Config) (*x509.Certificate, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), ccfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// With an operator's certificate on the API, peers asking for PeerName get
// the node certificate (and accept it, even one issued without PeerName),
// clients get the operator's, and a foreign node certificate is refused.
func TestPeerAPIConfigAndOperatorCertificate(t *testing.T) {
	ca, opCA := newCA(t), newCA(t)
	node := material(t, ca, 1, "127.0.0.1")
	op := material(t, opCA, 0, "127.0.0.1")
	opCert, err := tls.X509KeyPair(op.CertPEM, op.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	base, err := node.ServerConfig(false)
	if err != nil {
		t.Fatal(err)
	}
	api := pki.WithAPICertificate(base, opCert)
	peerCfg, err := material(t, ca, 2, "127.0.0.2").PeerAPIClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	got, err := dialAPI(t, api, peerCfg)
	if err != nil || got.Subject.CommonName != "cnm node 1" {
		t.Fatalf("a peer got %v (%v), want node 1's certificate", got, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(op.CAPEM)
	got, err = dialAPI(t, api, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err != nil || got.Subject.CommonName != "cnm node 0" {
		t.Fatalf("a client got %v (%v), want the operator's certificate", got, err)
	}

	// A node certificate issued without PeerName (before it existed).
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "cnm node 7"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Sign(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	old, err := tls.X509KeyPair(certPEM, func() []byte {
		der, _ := x509.MarshalPKCS8PrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}())
	if err != nil {
		t.Fatal(err)
	}
	oldSrv := base.Clone()
	oldSrv.Certificates = []tls.Certificate{old}
	if got, err := dialAPI(t, oldSrv, peerCfg); err != nil || got.Subject.CommonName != "cnm node 7" {
		t.Fatalf("a peer refused an older node certificate: %v %v", got, err)
	}

	// A node certificate of another cluster.
	stranger, err := material(t, newCA(t), 9, "127.0.0.1").ServerConfig(false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dialAPI(t, stranger, peerCfg); err == nil {
		t.Fatal("a peer accepted another cluster's certificate")
	}
}

// A verifier whose clock lags the signer's by most of a day still accepts
// the CA and the node certificates: clocks need not agree.
func TestCertificatesTolerateClockSkew(t *testing.T) {
	signed := time.Now()
	ca, err := pki.NewCA("test", signed)
	if err != nil {
		t.Fatal(err)
	}
	m := material(t, ca, 2, "127.0.0.2")
	cert, err := pki.ParseCert(m.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, lag := range []time.Duration{0, time.Hour, 23 * time.Hour} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: signed.Add(-lag),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("verifier %s behind the signer: %v", lag, err)
		}
	}
}

func TestParseFingerprint(t *testing.T) {
	const fp = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	colons := "01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF"
	for _, tc := range []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: fp, want: fp},
		{in: colons, want: fp},
		{in: "sha256 Fingerprint=" + colons + "\n", want: fp},
		{in: " " + strings.ToUpper(fp) + " ", want: fp},
		{in: "", wantErr: true},
		{in: fp[:62], wantErr: true},
		{in: fp + "00", wantErr: true},
		{in: "zz" + fp[2:], wantErr: true},
	} {
		got, err := pki.ParseFingerprint(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseFingerprint(%q) = %q, %v; want %q (error: %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err != nil && !errors.Is(err, pki.ErrBadFingerprint) {
			t.Errorf("ParseFingerprint(%q): error %v does not wrap ErrBadFingerprint", tc.in, err)
		}
	}
}

func TestFingerprintIsTheSHA256OfTheDER(t *testing.T) {
	ca := newCA(t)
	got, err := pki.Fingerprint(ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(ca.Cert.Raw)
	if want := hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("Fingerprint = %s, want %s", got, want)
	}
	if _, err := pki.Fingerprint([]byte("{}")); !errors.Is(err, pki.ErrBadPEM) {
		t.Fatalf("Fingerprint of no PEM: %v", err)
	}
}

func TestNodeUIDOf(t *testing.T) {
	ca := newCA(t)
	uid, err := pki.NodeUIDOf(material(t, ca, 27, "127.0.0.1").CertPEM)
	if err != nil || uid != 27 {
		t.Fatalf("NodeUIDOf = %d, %v; want 27", uid, err)
	}
	if _, err := pki.NodeUIDOf(ca.CertPEM); err == nil {
		t.Fatal("NodeUIDOf of the CA certificate found a node uid")
	}
}

// A client pinning the cluster CA's fingerprint completes a handshake with
// a node of that cluster, from the fingerprint alone or with the CA file,
// and refuses a node of any other cluster before it sends a byte.
func TestPinnedClientConfigTrustsExactlyThatCA(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	fp, err := pki.Fingerprint(ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		server pki.Material
		caFile *x509.Certificate
		ok     bool
	}{
		{"node of the pinned cluster", material(t, ca, 1, "127.0.0.1"), nil, true},
		{"node of the pinned cluster, CA file given", material(t, ca, 1, "127.0.0.1"), ca.Cert, true},
		{"node of another cluster", material(t, other, 1, "127.0.0.1"), nil, false},
		{"node of another cluster, CA file given", material(t, other, 1, "127.0.0.1"), ca.Cert, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ccfg, err := pki.PinnedClientConfig(fp, tc.caFile)
			if err != nil {
				t.Fatal(err)
			}
			scfg, err := tc.server.ServerConfig(false)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				if c, err := ln.Accept(); err == nil {
					_ = c.(*tls.Conn).Handshake()
					c.Close()
				}
			}()
			c, err := tls.Dial("tcp", ln.Addr().String(), ccfg)
			if err == nil {
				c.Close()
			}
			if tc.ok && err != nil {
				t.Fatalf("handshake with a node of the pinned cluster: %v", err)
			}
			if !tc.ok && !errors.Is(err, pki.ErrNotThisCluster) {
				t.Fatalf("handshake with a node of another cluster: %v, want ErrNotThisCluster", err)
			}
		})
	}
	if _, err := pki.PinnedClientConfig(fp, other.Cert); err == nil {
		t.Fatal("a CA file that does not match the fingerprint was accepted")
	}
	if _, err := pki.PinnedClientConfig("nope", nil); !errors.Is(err, pki.ErrBadFingerprint) {
		t.Fatalf("a bad fingerprint: %v", err)
	}
}
