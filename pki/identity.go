package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultNodeLifetime is how long a node certificate is valid. Nodes renew
// theirs when a third of it is left, so a node that is down for less than
// that comes back with a valid certificate.
const DefaultNodeLifetime = 90 * 24 * time.Hour

// SignFor issues a node certificate for a CSR, valid for lifetime.
func (ca *CA) SignFor(csrPEM []byte, now time.Time, lifetime time.Duration) ([]byte, error) {
	b, _ := pem.Decode(csrPEM)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("csr: %w", ErrBadPEM)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr signature: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      csr.Subject,
		NotBefore:    now.Add(-Backdate),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  csr.IPAddresses,
		DNSNames:     csr.DNSNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign node certificate: %w", err)
	}
	return pemBlock("CERTIFICATE", der), nil
}

// Serial is a certificate's serial number as the cluster state records it.
func Serial(c *x509.Certificate) string { return hex.EncodeToString(c.SerialNumber.Bytes()) }

// UIDOf reads the node uid a node certificate was issued to (its subject
// is "cnm node N").
func UIDOf(c *x509.Certificate) (int, error) {
	digits, ok := strings.CutPrefix(c.Subject.CommonName, "cnm node ")
	uid, err := strconv.Atoi(digits)
	if !ok || err != nil || uid <= 0 || strconv.Itoa(uid) != digits {
		return 0, fmt.Errorf("certificate subject %q does not name a cnm node", c.Subject.CommonName)
	}
	return uid, nil
}

// Leaf parses the material's own certificate.
func (m Material) Leaf() (*x509.Certificate, error) { return ParseCert(m.CertPEM) }

// ErrRevoked is what a peer check returns for a certificate the cluster
// revoked.
var ErrRevoked = errors.New("certificate revoked")

// PeerCheck decides, after the chain to the cluster CA has been verified,
// whether a node certificate may open node-to-node doors: it refuses the
// certificates the cluster revoked.
type PeerCheck func(*x509.Certificate) error

// Identity is a node's TLS identity that can be replaced while it is in
// use: every config it makes reads the current certificate at each
// handshake, so a renewed certificate takes effect without a restart.
type Identity struct {
	cur   atomic.Pointer[identityState]
	check PeerCheck

	// verified remembers the peer certificates whose chain VerifiedPeer
	// checked (by a hash of the certificate, with its expiry): it runs on
	// every node-to-node request, and a chain does not change. The peer
	// check (revocation) still runs every time.
	mu       sync.Mutex
	verified map[[sha256.Size]byte]time.Time
}

// maxVerified bounds the verified-chain memo; it starts afresh when full.
const maxVerified = 1024

type identityState struct {
	mat  Material
	cert tls.Certificate
	leaf *x509.Certificate
	pool *x509.CertPool
}

// NewIdentity holds m; check (nil: none) runs on every peer certificate
// after its chain is verified, on both ends of a connection.
func NewIdentity(m Material, check PeerCheck) (*Identity, error) {
	id := &Identity{check: check}
	if err := id.Replace(m); err != nil {
		return nil, err
	}
	return id, nil
}

// Replace makes m the identity from the next handshake on. The CA must
// stay the same: a node does not change clusters.
func (id *Identity) Replace(m Material) error {
	cert, err := tls.X509KeyPair(m.CertPEM, m.KeyPEM)
	if err != nil {
		return fmt.Errorf("load node key pair: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("parse node certificate: %w", err)
	}
	// The CA goes along with the node certificate: a joining node knows
	// only the CA's fingerprint (PinnedClientConfig).
	if ca, _ := pem.Decode(m.CAPEM); ca != nil && ca.Type == "CERTIFICATE" {
		cert.Certificate = append(cert.Certificate, ca.Bytes)
	}
	pool, err := m.pool()
	if err != nil {
		return err
	}
	if old := id.cur.Load(); old != nil && string(old.mat.CAPEM) != string(m.CAPEM) {
		return errors.New("a renewed certificate must come from the same cluster CA")
	}
	id.cur.Store(&identityState{mat: m, cert: cert, leaf: leaf, pool: pool})
	return nil
}

// Material returns the current material.
func (id *Identity) Material() Material { return id.cur.Load().mat }

// Leaf returns the current certificate.
func (id *Identity) Leaf() *x509.Certificate { return id.cur.Load().leaf }

func (id *Identity) certificate() *tls.Certificate { c := id.cur.Load().cert; return &c }

// verifyPeer checks a peer's chain against the cluster CA and then runs
// the peer check; usage is what the peer's certificate must allow.
func (id *Identity) verifyPeer(certs []*x509.Certificate, usage x509.ExtKeyUsage) error {
	if err := id.verifyChain(certs, usage); err != nil {
		return err
	}
	if id.check != nil {
		if err := id.check(certs[0]); err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
	}
	return nil
}

// verifyChain checks a peer's chain against the cluster CA only.
func (id *Identity) verifyChain(certs []*x509.Certificate, usage x509.ExtKeyUsage) error {
	if len(certs) == 0 {
		return errors.New("peer presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, ic := range certs[1:] {
		inter.AddCert(ic)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: id.cur.Load().pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return fmt.Errorf("peer certificate: %w", err)
	}
	return nil
}

// ServerConfig is like Material.ServerConfig, on the current certificate,
// with the peer check applied to every client certificate given.
func (id *Identity) ServerConfig(requireClient bool) *tls.Config {
	// The chain is verified in VerifyConnection against the current CA
	// pool and the peer check: ClientCAs would be fixed at config time.
	auth := tls.RequestClientCert
	if requireClient {
		auth = tls.RequireAnyClientCert
	}
	return &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return id.certificate(), nil },
		ClientAuth:     auth,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				if requireClient {
					return errors.New("a node certificate is required")
				}
				return nil
			}
			return id.verifyPeer(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
		},
		MinVersion: tls.VersionTLS12,
	}
}

// APIServerConfig is ServerConfig(false) for the HTTPS API; with apiCert,
// clients get that certificate and peers asking for PeerName the node's.
//
// Only the chain is checked at the handshake: the API decides at each
// request what a certificate may do (Identity.VerifiedPeer), so that a
// node whose certificate was revoked hears why.
func (id *Identity) APIServerConfig(apiCert *tls.Certificate) *tls.Config {
	c := id.ServerConfig(false)
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		return id.verifyChain(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
	}
	if apiCert != nil {
		c.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if h.ServerName == PeerName {
				return id.certificate(), nil
			}
			return apiCert, nil
		}
	}
	return c
}

// ClientConfig is the config for calls to peers (raft): it shows the
// current certificate and accepts servers the cluster CA signed and the
// peer check passes. Host names are not checked: nodes are named by the CA
// and the check, not by DNS.
func (id *Identity) ClientConfig() *tls.Config {
	return &tls.Config{
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return id.certificate(), nil },
		InsecureSkipVerify:   true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return id.verifyPeer(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
		},
		MinVersion: tls.VersionTLS12,
	}
}

// PeerAPIClientConfig is ClientConfig for calls to peers' HTTPS APIs: it
// asks for PeerName by SNI (see Material.PeerAPIClientConfig).
func (id *Identity) PeerAPIClientConfig() *tls.Config {
	c := id.ClientConfig()
	c.ServerName = PeerName
	return c
}

// VerifiedPeer reports whether certs (a connection's peer certificates)
// are a node certificate the cluster CA signed and the peer check passes.
func (id *Identity) VerifiedPeer(certs []*x509.Certificate) error {
	if len(certs) == 0 {
		return errors.New("peer presented no certificate")
	}
	key := sha256.Sum256(certs[0].Raw)
	id.mu.Lock()
	notAfter, ok := id.verified[key]
	id.mu.Unlock()
	if !ok || !time.Now().Before(notAfter) {
		if err := id.verifyChain(certs, x509.ExtKeyUsageClientAuth); err != nil {
			return err
		}
		id.mu.Lock()
		if id.verified == nil || len(id.verified) >= maxVerified {
			id.verified = map[[sha256.Size]byte]time.Time{}
		}
		id.verified[key] = certs[0].NotAfter
		id.mu.Unlock()
	}
	if id.check != nil {
		if err := id.check(certs[0]); err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
	}
	return nil
}

// SaveReplacing writes m to dir in place of what it holds, so that a crash
// at any moment leaves a complete old or new set: the new files go to a
// sibling directory first, and directories are swapped by rename.
func (m Material) SaveReplacing(dir string) error {
	next, prev := dir+".next", dir+".prev"
	_ = os.RemoveAll(next)
	if err := m.Save(next); err != nil {
		return err
	}
	// The CA key (on the first node) stays with the material.
	if b, err := os.ReadFile(filepath.Join(dir, "ca.key")); err == nil {
		if err := writeFileSync(filepath.Join(next, "ca.key"), b, 0o600); err != nil {
			return err
		}
	}
	_ = os.RemoveAll(prev)
	if err := os.Rename(dir, prev); err != nil {
		return fmt.Errorf("set aside old tls material: %w", err)
	}
	if err := os.Rename(next, dir); err != nil {
		return fmt.Errorf("put new tls material in place: %w", err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return err
	}
	return os.RemoveAll(prev)
}

// RecoverReplacing finishes or undoes a SaveReplacing that a crash cut
// short; call it before Load.
func RecoverReplacing(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	for _, from := range []string{dir + ".next", dir + ".prev"} {
		if _, err := Load(from); err == nil {
			if err := os.Rename(from, dir); err != nil {
				return fmt.Errorf("recover tls material from %s: %w", from, err)
			}
			return nil
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
