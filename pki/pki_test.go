package pki_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
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
