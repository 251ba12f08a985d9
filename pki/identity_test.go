package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"cnm/pki"
)

// handshakeResult is what one handshake of identityHandshake gave.
type handshakeResult struct {
	clientErr, serverErr error
	seen                 string // serial of the certificate the server saw
}

// identityHandshake is one mutual-TLS handshake over loopback between
// configs.
func identityHandshake(t *testing.T, server, client *tls.Config) handshakeResult {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		err    error
		serial string
	}
	srv := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srv <- result{err: err}
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		err = tc.Handshake()
		r := result{err: err}
		if err == nil && len(tc.ConnectionState().PeerCertificates) > 0 {
			r.serial = pki.Serial(tc.ConnectionState().PeerCertificates[0])
		}
		srv <- r
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err == nil {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		_, err = c.Read(make([]byte, 1))
		if errors.Is(err, io.EOF) || isTimeout(err) {
			err = nil
		}
		c.Close()
	}
	r := <-srv
	return handshakeResult{clientErr: err, serverErr: r.err, seen: r.serial}
}

// TestIdentity_RenewedCertificateIsUsedAtTheNextHandshake: Replace needs no
// new config; the peer check refuses a revoked certificate on both ends.
func TestIdentity_RenewedCertificateIsUsedAtTheNextHandshake(t *testing.T) {
	ca := newCA(t)
	var refused atomic.Value // serial
	refused.Store("")
	check := func(c *x509.Certificate) error {
		if pki.Serial(c) == refused.Load().(string) {
			return errors.New("revoked")
		}
		return nil
	}
	srvID, err := pki.NewIdentity(material(t, ca, 1, "127.0.0.1"), check)
	if err != nil {
		t.Fatal(err)
	}
	first := material(t, ca, 2, "127.0.0.1")
	cliID, err := pki.NewIdentity(first, check)
	if err != nil {
		t.Fatal(err)
	}
	server, client := srvID.ServerConfig(true), cliID.ClientConfig()
	firstLeaf, _ := first.Leaf()

	h := identityHandshake(t, server, client)
	if h.clientErr != nil || h.serverErr != nil || h.seen != pki.Serial(firstLeaf) {
		t.Fatalf("first handshake: client %v, server %v, serial %s", h.clientErr, h.serverErr, h.seen)
	}
	second := material(t, ca, 2, "127.0.0.1")
	if err := cliID.Replace(second); err != nil {
		t.Fatal(err)
	}
	secondLeaf, _ := second.Leaf()
	if h = identityHandshake(t, server, client); h.serverErr != nil || h.seen != pki.Serial(secondLeaf) {
		t.Fatalf("after Replace: server %v, saw %s, want %s", h.serverErr, h.seen, pki.Serial(secondLeaf))
	}
	refused.Store(pki.Serial(secondLeaf))
	if h = identityHandshake(t, server, client); h.serverErr == nil {
		t.Error("the server accepted a revoked client certificate")
	}
	// The other way round: a client refuses a server whose certificate
	// the check refuses.
	refused.Store(pki.Serial(srvID.Leaf()))
	if h = identityHandshake(t, server, cliID.ClientConfig()); h.clientErr == nil {
		t.Error("the client accepted a revoked server certificate")
	}
	// A certificate of another cluster is not a renewal.
	if err := cliID.Replace(material(t, newCA(t), 2, "127.0.0.1")); err == nil {
		t.Error("Replace took a certificate of another CA")
	}
}

func TestSignFor_LifetimeAndSkew(t *testing.T) {
	ca := newCA(t)
	_, csr, err := pki.NewKeyAndCSR(4, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	certPEM, err := ca.SignFor(csr, now, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.NotAfter.Sub(now); got < time.Minute || got > 2*time.Minute {
		t.Errorf("valid for %s after issue, want 2m", got)
	}
	// A verifier whose clock is hours behind the signer's still accepts.
	if !c.NotBefore.Before(now.Add(-12 * time.Hour)) {
		t.Errorf("not valid before %s: a node 12 h behind would refuse it", c.NotBefore)
	}
	if uid, err := pki.UIDOf(c); err != nil || uid != 4 {
		t.Errorf("NodeUIDOf = %d, %v", uid, err)
	}
}

// TestSaveReplacing_CrashLeavesACompleteSet: a replacement cut short at any
// point recovers to the old or the new material, never a mix.
func TestSaveReplacing_CrashLeavesACompleteSet(t *testing.T) {
	ca := newCA(t)
	dir := filepath.Join(t.TempDir(), "tls")
	old, next := material(t, ca, 1, "127.0.0.1"), material(t, ca, 1, "127.0.0.1")
	if err := old.Save(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.key"), ca.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := next.SaveReplacing(dir); err != nil {
		t.Fatal(err)
	}
	got, err := pki.Load(dir)
	if err != nil || string(got.CertPEM) != string(next.CertPEM) || string(got.KeyPEM) != string(next.KeyPEM) {
		t.Fatalf("after SaveReplacing: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil {
		t.Errorf("the CA key did not stay with the material: %v", err)
	}
	// Crash after the old set was moved aside, before the new one took
	// its place: the new set is complete, so recovery takes it.
	if err := os.Rename(dir, dir+".next"); err != nil {
		t.Fatal(err)
	}
	if err := pki.RecoverReplacing(dir); err != nil {
		t.Fatal(err)
	}
	if got, err := pki.Load(dir); err != nil || string(got.CertPEM) != string(next.CertPEM) {
		t.Fatalf("recovered %v", err)
	}
}

// TestVerifiedPeer_RemembersChainsNotRevocations: a chain checked once is
// not checked again, but the peer check runs at every call; a foreign or
// expired certificate is refused every time.
func TestVerifiedPeer_RemembersChainsNotRevocations(t *testing.T) {
	ca := newCA(t)
	var refused atomic.Value
	refused.Store("")
	id, err := pki.NewIdentity(material(t, ca, 1, "127.0.0.1"), func(c *x509.Certificate) error {
		if pki.Serial(c) == refused.Load().(string) {
			return pki.ErrRevoked
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	leafOf := func(m pki.Material) *x509.Certificate {
		c, err := m.Leaf()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	peer := leafOf(material(t, ca, 2, "127.0.0.1"))
	for range 2 {
		if err := id.VerifiedPeer([]*x509.Certificate{peer}); err != nil {
			t.Fatalf("a member's certificate: %v", err)
		}
	}
	refused.Store(pki.Serial(peer))
	if err := id.VerifiedPeer([]*x509.Certificate{peer}); !errors.Is(err, pki.ErrRevoked) {
		t.Errorf("a revoked certificate whose chain was checked before: %v, want ErrRevoked", err)
	}
	foreign := leafOf(material(t, newCA(t), 2, "127.0.0.1"))
	for range 2 {
		if err := id.VerifiedPeer([]*x509.Certificate{foreign}); err == nil {
			t.Error("a certificate of another CA was accepted")
		}
	}
	_, csr, err := pki.NewKeyAndCSR(3, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	expiredPEM, err := ca.SignFor(csr, time.Now().Add(-72*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := pki.ParseCert(expiredPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := id.VerifiedPeer([]*x509.Certificate{expired}); err == nil {
		t.Error("an expired certificate was accepted")
	}
}

// BenchmarkVerifiedPeer is the cost of the peer check of one node-to-node
// request, chain remembered.
func BenchmarkVerifiedPeer(b *testing.B) {
	ca, err := pki.NewCA("bench", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	mk := func(uid int) pki.Material {
		key, csr, err := pki.NewKeyAndCSR(uid, []string{"127.0.0.1"})
		if err != nil {
			b.Fatal(err)
		}
		cert, err := ca.Sign(csr, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		return pki.Material{CertPEM: cert, KeyPEM: key, CAPEM: ca.CertPEM}
	}
	id, err := pki.NewIdentity(mk(1), func(*x509.Certificate) error { return nil })
	if err != nil {
		b.Fatal(err)
	}
	peer, err := mk(2).Leaf()
	if err != nil {
		b.Fatal(err)
	}
	certs := []*x509.Certificate{peer}
	for b.Loop() {
		if err := id.VerifiedPeer(certs); err != nil {
			b.Fatal(err)
		}
	}
}
