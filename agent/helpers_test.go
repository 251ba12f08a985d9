package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"cnm/agent"
	"cnm/fsm"
	"cnm/pki"
)

// ---------------------------------------------------------------------------
// Files.

// newBackend returns a FileBackend on a fresh directory.
func newBackend(t *testing.T, lim *agent.Limiter) (*agent.FileBackend, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "shards")
	b, err := agent.NewFileBackend(dir, lim)
	if err != nil {
		t.Fatalf("NewFileBackend(%s): %v", dir, err)
	}
	return b, dir
}

func materialise(t *testing.T, b *agent.FileBackend, s agent.Spec) {
	t.Helper()
	if err := b.Materialise(t.Context(), s); err != nil {
		t.Fatalf("Materialise(%+v): %v", s, err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return data
}

func sha(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	return sha(readFile(t, path))
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err == nil {
		return true
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat %s: %v", path, err)
	}
	return false
}

// dirNames returns the names of the entries of dir, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read dir %s: %v", dir, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// shardFiles returns every file in dir that belongs to shard uid (any
// extension, temporary files included).
func shardFiles(t *testing.T, dir, uid string) []string {
	t.Helper()
	var out []string
	for _, n := range dirNames(t, dir) {
		if strings.HasPrefix(n, uid+".") {
			out = append(out, n)
		}
	}
	return out
}

// tmpFiles returns the temporary files in dir.
func tmpFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, n := range dirNames(t, dir) {
		if strings.HasSuffix(n, ".tmp") {
			out = append(out, n)
		}
	}
	return out
}

func listShards(t *testing.T, b *agent.FileBackend) []string {
	t.Helper()
	uids, err := b.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	slices.Sort(uids)
	return uids
}

// shardData returns the bytes a shard of the given uid and size holds when
// materialised, made in a scratch directory.
func shardData(t *testing.T, uid string, size int64) []byte {
	t.Helper()
	b, dir := newBackend(t, nil)
	materialise(t, b, agent.Spec{UID: uid, Role: fsm.RoleMaster, Size: size})
	return readFile(t, filepath.Join(dir, uid+".data"))
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Fake sources for FileBackend.CopyFrom.

// bytesSource serves fixed data with the given advertised size and checksum.
type bytesSource struct {
	data     []byte
	size     int64
	checksum string
	fetchErr error
	readErr  error // returned after all of data was read, instead of EOF
}

func (s *bytesSource) Fetch(context.Context, string) (io.ReadCloser, int64, string, error) {
	if s.fetchErr != nil {
		return nil, 0, "", s.fetchErr
	}
	var r io.Reader = bytes.NewReader(s.data)
	if s.readErr != nil {
		r = io.MultiReader(r, errReader{s.readErr})
	}
	return io.NopCloser(r), s.size, s.checksum, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// ---------------------------------------------------------------------------
// PKI and peers talking mutual TLS over loopback.

func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA("agent-test", time.Now())
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

// nodeMaterial issues a node certificate for host from ca.
func nodeMaterial(t *testing.T, ca *pki.CA, uid int, host string) pki.Material {
	t.Helper()
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(uid, []string{host})
	if err != nil {
		t.Fatalf("NewKeyAndCSR: %v", err)
	}
	certPEM, err := ca.Sign(csrPEM, time.Now())
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return pki.Material{CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: ca.CertPEM}
}

// httpClient returns an HTTP client using the given TLS config.
func httpClient(t *testing.T, cfg *tls.Config) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// nodeHTTPClient is the client a node uses to call its peers.
func nodeHTTPClient(t *testing.T, m pki.Material) *http.Client {
	t.Helper()
	cfg, err := m.ClientConfig()
	if err != nil {
		t.Fatalf("ClientConfig: %v", err)
	}
	return httpClient(t, cfg)
}

type peerOpts struct {
	fsm         *fsm.FSM
	recvLimiter *agent.Limiter                  // on the FileBackend
	sendLimiter *agent.Limiter                  // Config.Limiter
	wrap        func(http.Handler) http.Handler // around Handler()
	backend     agent.Backend                   // instead of a FileBackend
}

// peer is one node: an agent on a FileBackend, serving its API over mutual
// TLS on a loopback address.
type peer struct {
	uid     int
	addr    string // host:port of its agent API
	dir     string
	backend *agent.FileBackend
	agent   *agent.Agent
	client  *agent.Client // this node's client to other agents
	http    *http.Client  // the HTTP client under it
	srv     *httptest.Server
}

func startPeer(t *testing.T, ca *pki.CA, uid int, host string, o peerOpts) *peer {
	t.Helper()
	m := nodeMaterial(t, ca, uid, host)
	var b *agent.FileBackend
	var dir string
	backend := o.backend
	if backend == nil {
		b, dir = newBackend(t, o.recvLimiter)
		backend = b
	}
	if o.fsm == nil {
		o.fsm = fsm.New()
	}
	hc := nodeHTTPClient(t, m)
	a := agent.New(agent.Config{NodeUID: uid, FSM: o.fsm, Backend: backend, Client: hc, Limiter: o.sendLimiter})

	var h = a.Handler()
	if o.wrap != nil {
		h = o.wrap(h)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", host, err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	if srv.TLS, err = m.ServerConfig(true); err != nil {
		t.Fatalf("ServerConfig: %v", err)
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &peer{uid: uid, addr: ln.Addr().String(), dir: dir, backend: b, agent: a,
		client: agent.NewClient(hc), http: hc, srv: srv}
}

func (p *peer) dataPath(uid string) string { return filepath.Join(p.dir, uid+".data") }

// ---------------------------------------------------------------------------
// Replicated state.

// stateLog applies commands to an FSM the way raft would, one index at a time.
type stateLog struct {
	f     *fsm.FSM
	index uint64
}

func testNode(uid int) fsm.Node {
	host := fmt.Sprintf("127.0.0.%d", 20+uid)
	return fsm.Node{UID: uid, Addr: host, APIAddr: host + ":9443", RaftAddr: host + ":9444",
		Status: fsm.NodeActive, AcceptServers: true, MaxRedisServers: 100, TotalMemory: 16 << 30,
		SoftwareVersion: "test"}
}

// newClusterState returns a bootstrapped state with nodes 1 and 2.
func newClusterState(t *testing.T) *stateLog {
	t.Helper()
	l := &stateLog{f: fsm.New()}
	l.apply(t, &fsm.Bootstrap{
		Cluster: fsm.ClusterInfo{Name: "agent-test", CreatedAt: 1700000000},
		Node:    testNode(1),
		Admin:   fsm.User{Email: "admin@cnm.local", Name: "Admin", PasswordHash: "$2a$10$x"},
	})
	l.apply(t, &fsm.AddNode{Node: testNode(2)})
	return l
}

func (l *stateLog) apply(t *testing.T, payload any) *fsm.Result {
	t.Helper()
	data, err := fsm.Encode(payload)
	if err != nil {
		t.Fatalf("encode %T: %v", payload, err)
	}
	l.index++
	out := l.f.Apply(&raft.Log{Index: l.index, Term: 1, Type: raft.LogCommand, Data: data})
	res, ok := out.(*fsm.Result)
	if !ok {
		t.Fatalf("Apply(%T) returned %T", payload, out)
	}
	if res.Err != nil {
		t.Fatalf("Apply(%T): %v", payload, res.Err)
	}
	return res
}

// createBDB creates a database placed as given and returns its uid.
func (l *stateLog) createBDB(t *testing.T, b fsm.BDB, placement []int) int {
	t.Helper()
	res := l.apply(t, &fsm.CreateBDB{BDB: b, Placement: placement, EndpointNode: placement[0]})
	var got fsm.BDB
	if err := json.Unmarshal(res.Value, &got); err != nil {
		t.Fatalf("decode created bdb: %v", err)
	}
	return got.UID
}

// shardsOn returns the shards the state assigns to node, with the
// persistence of their database.
func (l *stateLog) shardsOn(node int) map[string]stateShard {
	out := map[string]stateShard{}
	l.f.Read(func(st *fsm.State, _ uint64) {
		for _, sh := range st.ShardsOn(node) {
			out[sh.UID] = stateShard{Shard: *sh, Persistence: st.BDBs[sh.BDBUID].DataPersistence}
		}
	})
	return out
}

type stateShard struct {
	fsm.Shard
	Persistence string
}

func sortedUIDs(m map[string]stateShard) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
