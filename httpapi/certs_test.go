package httpapi_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cnm/fsm"
	"cnm/httpapi"
	"cnm/peer"
	"cnm/pki"
)

// nodeCert is a certificate of the test cluster's CA for node uid.
func nodeCert(t *testing.T, uid int) *x509.Certificate {
	t.Helper()
	ca, err := testCA()
	if err != nil {
		t.Fatal(err)
	}
	_, csr, err := pki.NewKeyAndCSR(uid, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Sign(csr, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// asNode marks r as sent by node uid with cert.
func asNode(r *http.Request, cert *x509.Certificate) *http.Request {
	r.TLS = &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{cert},
		VerifiedChains: [][]*x509.Certificate{{cert}}}
	return r
}

func csrFor(t *testing.T, uid int) string {
	t.Helper()
	_, csr, err := pki.NewKeyAndCSR(uid, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return string(csr)
}

func certsOf(e *env, uid int) []fsm.CertRef {
	var out []fsm.CertRef
	if n, ok := e.state().Nodes[uid]; ok {
		out = n.Certs
	}
	return out
}

func TestRenewCert_IssuesToTheCallerAndRevokesItsOldOnes(t *testing.T) {
	e := newEnv(t, withoutRoleUsers())
	me := nodeCert(t, 1)
	body := string(mustMarshal(t, peer.CertRequest{CSR: csrFor(t, 1)}))
	w := e.serve(asNode(e.request("", "POST", "/v1/internal/certificate", body), me))
	mustStatus(t, w, http.StatusOK)
	var got peer.CertResponse
	decodeInto(t, w, &got)
	leaf, err := pki.ParseCert([]byte(got.CertPEM))
	if err != nil {
		t.Fatal(err)
	}
	if uid, err := pki.UIDOf(leaf); err != nil || uid != 1 {
		t.Errorf("issued to node %d (%v), want 1", uid, err)
	}
	if life := time.Until(leaf.NotAfter); life < pki.DefaultNodeLifetime-time.Hour || life > pki.DefaultNodeLifetime {
		t.Errorf("certificate valid for %s more, want about %s", life, pki.DefaultNodeLifetime)
	}
	certs := certsOf(e, 1)
	if len(certs) != 1 || certs[0].Serial != pki.Serial(leaf) {
		t.Fatalf("node 1's certificates on record: %+v, want the new one", certs)
	}
	// The node switched: it revokes the new one's predecessor — here the
	// new one itself, to see the revocation land.
	body = string(mustMarshal(t, peer.CertRequest{Revoke: []string{pki.Serial(leaf)}}))
	mustStatus(t, e.serve(asNode(e.request("", "POST", "/v1/internal/certificate", body), me)), http.StatusOK)
	if !e.state().CertRevoked(pki.Serial(leaf)) {
		t.Error("the revoked certificate is not on the revoked list")
	}
}

func TestRenewCert_Refusals(t *testing.T) {
	e := newEnv(t, withoutRoleUsers())
	before := e.applied()
	for _, tc := range []struct {
		name   string
		cert   *x509.Certificate
		body   string
		status int
		code   string
	}{
		{"no node certificate", nil, `{"csr":"x"}`, http.StatusForbidden, "forbidden"},
		{"a request for another node's key", nodeCert(t, 1), string(mustMarshal(t, peer.CertRequest{CSR: csrFor(t, 2)})), http.StatusBadRequest, "invalid_parameter"},
		{"revoking another node's certificate", nodeCert(t, 1), `{"revoke":["abcd"]}`, http.StatusBadRequest, "invalid_parameter"},
		{"nothing asked", nodeCert(t, 1), `{}`, http.StatusBadRequest, "invalid_parameter"},
		{"a garbled csr", nodeCert(t, 1), `{"csr":"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}`, http.StatusBadRequest, "invalid_parameter"},
		{"an unknown field", nodeCert(t, 1), `{"cert":"x"}`, http.StatusBadRequest, ""},
		{"a node not in the cluster", nodeCert(t, 7), string(mustMarshal(t, peer.CertRequest{CSR: csrFor(t, 7)})), http.StatusNotFound, "node_not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.request("", "POST", "/v1/internal/certificate", tc.body)
			if tc.cert != nil {
				asNode(r, tc.cert)
			}
			w := e.serve(r)
			if tc.code == "" {
				mustStatus(t, w, tc.status)
				return
			}
			assertError(t, e, w, tc.status, tc.code)
		})
	}
	if e.applied() != before {
		t.Errorf("a refused request changed the state (applied %d, was %d)", e.applied(), before)
	}
}

// TestPeerCheck_RevokedCertificateIsNoPeer: with a peer check, a node
// certificate it refuses opens no node-to-node endpoint, on a connection
// that passed its handshake before.
func TestPeerCheck_RevokedCertificateIsNoPeer(t *testing.T) {
	e := newEnv(t, withoutRoleUsers())
	revoked := nodeCert(t, 2)
	cfg := e.cfg
	cfg.Raft = e.raft
	cfg.PeerCheck = func(certs []*x509.Certificate) error {
		if pki.Serial(certs[0]) == pki.Serial(revoked) {
			return errors.New("revoked")
		}
		return nil
	}
	h := httpapi.New(cfg)
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want int
	}{
		{"a member", nodeCert(t, 1), http.StatusOK},
		{"a revoked certificate", revoked, http.StatusForbidden},
	} {
		r := asNode(e.request("", "GET", "/v1/internal/read-index", ""), tc.cert)
		w := serveWith(h, r)
		if w.Code != tc.want {
			t.Errorf("%s: status %d, want %d: %s", tc.name, w.Code, tc.want, w.Body)
		}
	}
}

func TestRotateCert_AdminAsksANodeToRenew(t *testing.T) {
	e := newEnv(t)
	w := e.call("admin", "POST", "/v1/nodes/1/certificate/rotate", "")
	mustStatus(t, w, http.StatusOK)
	if !strings.Contains(w.Body.String(), `"cert_rotation":1`) {
		t.Errorf("answer %s does not count the rotation", w.Body)
	}
	w = e.call("cluster_viewer", "GET", "/v1/nodes/1/certificate", "")
	mustStatus(t, w, http.StatusOK)
	if !strings.Contains(w.Body.String(), `"cert_rotation":1`) {
		t.Errorf("GET shows %s", w.Body)
	}
	assertError(t, e, e.call("cluster_member", "POST", "/v1/nodes/1/certificate/rotate", ""), http.StatusForbidden, "forbidden")
	assertError(t, e, e.call("admin", "POST", "/v1/nodes/9/certificate/rotate", ""), http.StatusNotFound, "node_not_found")
	assertError(t, e, e.call("admin", "POST", "/v1/nodes/1/certificate/rotate", `{"now":true}`), http.StatusBadRequest, "invalid_parameter")
}

func serveWith(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}
