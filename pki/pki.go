// Package pki makes the cluster CA and the node certificates that every
// node-to-node connection (raft, forwarding, agents) and the HTTPS API use.
//
// The CA is created when a cluster is bootstrapped and replicated in the
// cluster state; a joining node makes its own key and sends only a signing
// request, so node private keys never cross the network.
package pki

import (
	"crypto"
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
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Validity periods. The CA outlives any sensible cluster; node
// certificates are renewed (DefaultNodeLifetime).
const (
	caValidity = 20 * 365 * 24 * time.Hour
	// Backdate is how far before the signer's clock a certificate starts:
	// nodes' clocks need not agree (a new VM's clock can lag by hours
	// until NTP catches up), and a certificate that is not yet valid on
	// the verifying node would lock that node out of the cluster.
	Backdate = 24 * time.Hour
)

// ErrBadPEM is returned for PEM input that holds no usable block.
var ErrBadPEM = errors.New("bad pem")

// CA is a certificate authority able to sign node certificates.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA makes a fresh self-signed cluster CA.
func NewCA(clusterName string, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ca key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "cnm cluster CA " + clusterName, Organization: []string{"cnm"}},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create ca certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode ca key: %w", err)
	}
	return ParseCA(pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER))
}

// ParseCA loads a CA from PEM certificate and key.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, err
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("ca key: %w", ErrBadPEM)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse ca key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("ca key of type %T cannot sign", k)
	}
	return &CA{Cert: cert, Key: signer, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// ParseCert parses the first certificate of a PEM document.
func ParseCert(certPEM []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("certificate: %w", ErrBadPEM)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return c, nil
}

// NewKeyAndCSR makes a node key and a signing request naming the given hosts
// (IP addresses or DNS names) as the node's identities.
func NewKeyAndCSR(nodeUID int, hosts []string) (keyPEM, csrPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate node key: %w", err)
	}
	ips, names := splitHosts(hosts)
	names = append(names, PeerName)
	tmpl := &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: fmt.Sprintf("cnm node %d", nodeUID), Organization: []string{"cnm"}},
		IPAddresses: ips,
		DNSNames:    names,
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create csr: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode node key: %w", err)
	}
	return pemBlock("PRIVATE KEY", keyDER), pemBlock("CERTIFICATE REQUEST", der), nil
}

// Sign issues a node certificate for a CSR, valid for DefaultNodeLifetime.
// The certificate serves both ends of a connection: nodes present it as
// servers and as clients.
func (ca *CA) Sign(csrPEM []byte, now time.Time) ([]byte, error) {
	return ca.SignFor(csrPEM, now, DefaultNodeLifetime)
}

// Material is a node's TLS identity plus the cluster CA it trusts.
type Material struct {
	CertPEM, KeyPEM, CAPEM []byte
}

// File names inside a node's TLS directory.
const (
	CertFile = "node.crt"
	KeyFile  = "node.key"
	CAFile   = "ca.crt"
)

// Save writes the material to dir (created 0700; the key 0600).
func (m Material) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create tls dir: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{CertFile, m.CertPEM, 0o644}, {KeyFile, m.KeyPEM, 0o600}, {CAFile, m.CAPEM, 0o644}} {
		if err := writeFileSync(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// Load reads material written by Save. It returns an error wrapping
// os.ErrNotExist when the directory holds none.
func Load(dir string) (Material, error) {
	var m Material
	var err error
	if m.CertPEM, err = os.ReadFile(filepath.Join(dir, CertFile)); err != nil {
		return m, fmt.Errorf("read node certificate: %w", err)
	}
	if m.KeyPEM, err = os.ReadFile(filepath.Join(dir, KeyFile)); err != nil {
		return m, fmt.Errorf("read node key: %w", err)
	}
	if m.CAPEM, err = os.ReadFile(filepath.Join(dir, CAFile)); err != nil {
		return m, fmt.Errorf("read ca certificate: %w", err)
	}
	return m, nil
}

// ServerConfig is the TLS config of a listener that accepts node peers. With
// requireClient, every client must present a certificate from the cluster CA
// (raft, internal endpoints); otherwise a certificate is verified only when
// given (the public API, where users authenticate with passwords).
func (m Material) ServerConfig(requireClient bool) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(m.CertPEM, m.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("load node key pair: %w", err)
	}
	pool, err := m.pool()
	if err != nil {
		return nil, err
	}
	// The CA goes along with the node certificate: a joining node knows
	// only the CA's fingerprint (PinnedClientConfig).
	if ca, _ := pem.Decode(m.CAPEM); ca != nil && ca.Type == "CERTIFICATE" {
		cert.Certificate = append(cert.Certificate, ca.Bytes)
	}
	auth := tls.VerifyClientCertIfGiven
	if requireClient {
		auth = tls.RequireAndVerifyClientCert
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   auth,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// ClientConfig is the TLS config with which a node calls its peers: it shows
// its own certificate and trusts only the cluster CA.
func (m Material) ClientConfig() (*tls.Config, error) {
	cert, err := tls.X509KeyPair(m.CertPEM, m.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("load node key pair: %w", err)
	}
	pool, err := m.pool()
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// PeerName is a DNS name in every node certificate. Nodes calling each
// other's HTTPS API ask for it by SNI, so that a node whose API presents an
// operator's certificate (--tls-cert) to clients still shows peers its
// cluster certificate.
const PeerName = "peer.cnm.internal"

// PeerAPIClientConfig is ClientConfig for calls to peers' HTTPS APIs: it
// asks for PeerName by SNI and accepts any certificate the cluster CA
// signed for serving. The chain is checked without a host name, so that
// certificates issued before PeerName was added still work.
func (m Material) PeerAPIClientConfig() (*tls.Config, error) {
	c, err := m.ClientConfig()
	if err != nil {
		return nil, err
	}
	roots := c.RootCAs
	c.ServerName = PeerName
	c.InsecureSkipVerify = true //nolint:gosec // verified in VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("peer presented no certificate")
		}
		inter := x509.NewCertPool()
		for _, ic := range cs.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
		return nil
	}
	return c, nil
}

// WithAPICertificate makes an API server config present cert to clients
// and the node certificate to peers asking for PeerName.
func WithAPICertificate(c *tls.Config, cert tls.Certificate) *tls.Config {
	c = c.Clone()
	node := c.Certificates[0]
	c.Certificates = nil
	c.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if h.ServerName == PeerName {
			return &node, nil
		}
		return &cert, nil
	}
	return c
}

func (m Material) pool() (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(m.CAPEM) {
		return nil, fmt.Errorf("cluster ca: %w", ErrBadPEM)
	}
	return pool, nil
}

// HostsOf returns the distinct hosts of the given host:port addresses.
func HostsOf(addrs ...string) []string {
	seen := map[string]bool{}
	var hosts []string
	for _, a := range addrs {
		h, _, err := net.SplitHostPort(a)
		if err != nil {
			h = a
		}
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		hosts = append(hosts, h)
	}
	return hosts
}

func splitHosts(hosts []string) ([]net.IP, []string) {
	var ips []net.IP
	var names []string
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else if h != "" {
			names = append(names, h)
		}
	}
	return ips, names
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand does not fail on supported platforms.
		panic(fmt.Sprintf("pki: serial number: %v", err))
	}
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writeFileSync(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}

// Fingerprint is the SHA-256 of a PEM certificate's DER, in lower-case hex:
// what `openssl x509 -noout -fingerprint -sha256` prints, without colons.
// The cluster CA's fingerprint is the cluster's id.
func Fingerprint(certPEM []byte) (string, error) {
	c, err := ParseCert(certPEM)
	if err != nil {
		return "", err
	}
	return fingerprintOf(c), nil
}

func fingerprintOf(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// ErrBadFingerprint is returned for a fingerprint that is not 32 bytes of hex.
var ErrBadFingerprint = errors.New("want the SHA-256 fingerprint of a certificate: 64 hex digits, colons allowed")

// ParseFingerprint normalises a SHA-256 fingerprint as operators copy it:
// case and colons (openssl's "AB:CD:..."), and openssl's
// "sha256 Fingerprint=" prefix, are tolerated.
func ParseFingerprint(s string) (string, error) {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '='); i >= 0 {
		s = s[i+1:]
	}
	s = strings.ToLower(strings.ReplaceAll(s, ":", ""))
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("%q: %w", s, ErrBadFingerprint)
	}
	return s, nil
}

// NodeUIDOf reads the uid out of a node certificate's subject ("cnm node N").
func NodeUIDOf(certPEM []byte) (int, error) {
	c, err := ParseCert(certPEM)
	if err != nil {
		return 0, err
	}
	return UIDOf(c)
}

// ErrNotThisCluster is returned when a server's certificate does not chain
// to the cluster CA a client was told to expect.
var ErrNotThisCluster = errors.New("server is not a node of the expected cluster")

// PinnedClientConfig is the TLS config of a node that is not a member yet
// and calls a member (a join): it trusts exactly the CA with the given
// fingerprint, which the member sends along with its node certificate, and
// ca when the operator gave the CA file itself. It asks for PeerName, so
// that a member showing clients an operator certificate (--tls-cert) shows
// it its cluster certificate. It presents no client certificate.
func PinnedClientConfig(fingerprint string, ca *x509.Certificate) (*tls.Config, error) {
	fp, err := ParseFingerprint(fingerprint)
	if err != nil {
		return nil, err
	}
	if ca != nil && fingerprintOf(ca) != fp {
		return nil, fmt.Errorf("ca certificate has fingerprint %s, not %s", fingerprintOf(ca), fp)
	}
	return &tls.Config{
		ServerName:         PeerName,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection against the pinned CA
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: it presented no certificate", ErrNotThisCluster)
			}
			roots := x509.NewCertPool()
			if ca != nil {
				roots.AddCert(ca)
			}
			for _, c := range cs.PeerCertificates[1:] {
				if fingerprintOf(c) == fp {
					roots.AddCert(c)
				}
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if err != nil {
				return fmt.Errorf("%w (CA fingerprint %s): %w", ErrNotThisCluster, fp, err)
			}
			return nil
		},
	}, nil
}
