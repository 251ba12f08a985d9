package raftnode

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"cnm/fsm"
	"cnm/pki"
)

// testCA signs the certificates of every node of one test.
func testCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// logTo sends logs to t until the test's cleanups end; raft goroutines that
// outlive Shutdown by a moment then write nowhere instead of panicking.
func logTo(t *testing.T, uid int) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop) // registered first, so it runs last
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test_node", uid)
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done && os.Getenv("CNM_TEST_LOG") != "" {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func (w *testWriter) stop() { w.mu.Lock(); w.done = true; w.mu.Unlock() }

// startNode opens node uid on host (a 127.0.0.x address) with a port the OS
// chooses, with a certificate from ca; mod adjusts its Config.
func startNode(t *testing.T, ca *pki.CA, uid int, host string, mod func(*Config)) *Node {
	t.Helper()
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(uid, []string{host})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Sign(csrPEM, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	mat := pki.Material{CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: ca.CertPEM}
	serverTLS, err := mat.ServerConfig(true)
	if err != nil {
		t.Fatal(err)
	}
	clientTLS, err := mat.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		ID: uid, RaftAddr: ln.Addr().String(), Dir: t.TempDir(),
		ServerTLS: serverTLS, ClientTLS: clientTLS,
		Listen: func(string, string) (net.Listener, error) { return ln, nil },
		Logger: logTo(t, uid),
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := Open(cfg, fsm.New())
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Shutdown() })
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

func waitReady(t *testing.T, n *Node, timeout time.Duration) {
	t.Helper()
	waitFor(t, fmt.Sprintf("node %d to be a ready leader", n.ID()), timeout, func() bool {
		_, ready, _ := n.Leadership()
		return ready
	})
}

// applyOne proposes a command on n and returns the index it was applied at.
// Every test command is a Bootstrap: the first creates the cluster, the
// next are refused by the FSM as a value, which still makes a log entry.
func applyOne(t *testing.T, n *Node) uint64 {
	t.Helper()
	cmd, err := fsm.Encode(&fsm.Bootstrap{
		Cluster: fsm.ClusterInfo{Name: "test"},
		Node:    fsm.Node{UID: n.ID(), Status: fsm.NodeActive, RaftAddr: n.cfg.RaftAddr},
		Admin:   fsm.User{Email: "admin@test", Name: "admin", PasswordHash: "unused"},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := n.Apply(t.Context(), cmd)
	if err != nil && !errors.Is(err, fsm.ErrAlreadyBootstrapped) {
		t.Fatalf("apply on node %d: %v", n.ID(), err)
	}
	return res.Index
}

func TestNode_SingleBootstrapBecomesReadyLeader(t *testing.T) {
	n := startNode(t, testCA(t), 1, "127.0.0.1", nil)
	if err := n.BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, n, 10*time.Second)
	if uid, _ := n.Leader(); uid != 1 || n.Role() != "leader" {
		t.Fatalf("leader %d, role %s", uid, n.Role())
	}
	idx := applyOne(t, n)
	read, err := n.ReadIndex(t.Context())
	if err != nil {
		t.Fatalf("read index on a ready leader: %v", err)
	}
	if read < idx {
		t.Fatalf("read index %d is before the acknowledged write at %d", read, idx)
	}
	if err := n.WaitApplied(t.Context(), read); err != nil {
		t.Fatal(err)
	}
}

// formCluster bootstraps nodes[0] and adds the others as voters.
func formCluster(t *testing.T, nodes ...*Node) {
	t.Helper()
	if err := nodes[0].BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, nodes[0], 10*time.Second)
	for _, n := range nodes[1:] {
		if err := nodes[0].AddVoter(t.Context(), n.ID(), n.cfg.RaftAddr); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCluster_ThreeNodesElectAndReplicate(t *testing.T) {
	ca := testCA(t)
	var nodes []*Node
	for uid := 1; uid <= 3; uid++ {
		nodes = append(nodes, startNode(t, ca, uid, fmt.Sprintf("127.0.0.%d", 10+uid), nil))
	}
	formCluster(t, nodes...)
	idx := applyOne(t, nodes[0])
	for _, n := range nodes {
		waitFor(t, fmt.Sprintf("node %d to apply index %d", n.ID(), idx), 10*time.Second, func() bool {
			return n.FSM().Applied() >= idx
		})
	}

	// The leader goes; the other two elect one of themselves and go on.
	if err := nodes[0].Shutdown(); err != nil {
		t.Fatal(err)
	}
	var leader *Node
	waitFor(t, "a new ready leader", 10*time.Second, func() bool {
		for _, n := range nodes[1:] {
			if _, ready, _ := n.Leadership(); ready {
				leader = n
				return true
			}
		}
		return false
	})
	idx = applyOne(t, leader)
	for _, n := range nodes[1:] {
		waitFor(t, fmt.Sprintf("node %d to apply index %d", n.ID(), idx), 10*time.Second, func() bool {
			return n.FSM().Applied() >= idx
		})
	}
}

// A leader whose post-election barrier fails must keep trying while it
// leads: otherwise it leads a whole term without executors or reads.
func TestNode_RetriesFailedPostElectionBarrier(t *testing.T) {
	var calls atomic.Int32
	n := startNode(t, testCA(t), 1, "127.0.0.1", func(c *Config) {
		c.barrier = func(r *raft.Raft, timeout time.Duration) error {
			if calls.Add(1) <= 3 {
				return errors.New("injected barrier failure")
			}
			return raftBarrier(r, timeout)
		}
	})
	if err := n.BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, n, 10*time.Second)
	if got := calls.Load(); got != 4 {
		t.Fatalf("barrier called %d times, want 3 failures and 1 success", got)
	}
	if _, err := n.ReadIndex(t.Context()); err != nil {
		t.Fatalf("read index after the retried barrier: %v", err)
	}
}

// A barrier that never succeeds is retried until Shutdown, which must not
// wait for the retries.
func TestNode_BarrierRetryEndsAtShutdown(t *testing.T) {
	var calls atomic.Int32
	n := startNode(t, testCA(t), 1, "127.0.0.1", func(c *Config) {
		c.barrier = func(*raft.Raft, time.Duration) error {
			calls.Add(1)
			return errors.New("injected barrier failure")
		}
	})
	if err := n.BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a second barrier attempt", 10*time.Second, func() bool { return calls.Load() >= 2 })
	if _, ready, _ := n.Leadership(); ready {
		t.Fatal("ready although no barrier succeeded")
	}
	done := make(chan error, 1)
	go func() { done <- n.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown hangs on the barrier retries")
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(ents)
}

// idleConns opens count TCP connections to addr from 127.0.0.1 that never
// send a byte, and reports how many of them the far side has closed.
func idleConns(t *testing.T, addr string, count int) (closed func() int) {
	t.Helper()
	var n atomic.Int32
	for range count {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("open idle connection: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		go func() {
			// Returns when the node closes the connection (EOF or reset),
			// or when the test's cleanup does.
			if _, err := c.Read(make([]byte, 1)); err == io.EOF || !errors.Is(err, net.ErrClosed) {
				n.Add(1)
			}
		}()
	}
	return func() int { return int(n.Load()) }
}

func TestTransport_ClosesConnectionsThatNeverHandshake(t *testing.T) {
	n := startNode(t, testCA(t), 1, "127.0.0.1", func(c *Config) {
		c.HandshakeTimeout = 200 * time.Millisecond
		c.MaxHandshakes = 1000 // the deadline alone must close them
	})
	const count = 50
	closed := idleConns(t, n.cfg.RaftAddr, count)
	waitFor(t, "the node to close every idle connection", 10*time.Second, func() bool { return closed() == count })
}

// Hundreds of idle connections to a node's raft port hold at most
// MaxHandshakes of its file descriptors, and a member's connection still
// gets through while they are held: the node joins and replicates.
func TestTransport_CapsIdleConnectionsAndRaftStillWorks(t *testing.T) {
	ca := testCA(t)
	const idle, max = 300, 16
	leader := startNode(t, ca, 1, "127.0.0.21", nil)
	follower := startNode(t, ca, 2, "127.0.0.22", func(c *Config) {
		c.HandshakeTimeout = time.Minute // so that only the cap can explain what follows
		c.MaxHandshakes = max
	})
	before := openFDs(t)
	closed := idleConns(t, follower.cfg.RaftAddr, idle)
	waitFor(t, "the follower to close idle connections beyond its cap", 10*time.Second, func() bool {
		return closed() >= idle-max
	})
	// The test process holds both ends: the idle clients, and what the
	// node still has open of them.
	if got, limit := openFDs(t)-before, idle+max+10; got > limit {
		t.Fatalf("%d idle connections added %d file descriptors, want at most %d", idle, got, limit)
	}

	if err := leader.BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, leader, 10*time.Second)
	if err := leader.AddVoter(t.Context(), follower.ID(), follower.cfg.RaftAddr); err != nil {
		t.Fatal(err)
	}
	idx := applyOne(t, leader)
	waitFor(t, "the follower to apply the write", 20*time.Second, func() bool { return follower.FSM().Applied() >= idx })
}

// A leader that loses leadership while its barrier keeps failing stops
// retrying: the retries belong to the term it led.
func TestNode_BarrierRetryStopsOnLeadershipLoss(t *testing.T) {
	ca := testCA(t)
	var calls, asFollower atomic.Int32
	first := startNode(t, ca, 1, "127.0.0.31", func(c *Config) {
		c.barrier = func(r *raft.Raft, _ time.Duration) error {
			calls.Add(1)
			if r.State() != raft.Leader {
				asFollower.Add(1)
			}
			return errors.New("injected barrier failure")
		}
	})
	others := []*Node{startNode(t, ca, 2, "127.0.0.32", nil), startNode(t, ca, 3, "127.0.0.33", nil)}
	if err := first.BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node 1 to lead", 10*time.Second, first.IsLeader)
	for _, n := range others {
		if err := first.AddVoter(t.Context(), n.ID(), n.cfg.RaftAddr); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.TransferLeadershipTo(t.Context(), 2, others[0].cfg.RaftAddr); err != nil {
		t.Fatal(err)
	}
	waitReady(t, others[0], 10*time.Second)
	if first.IsLeader() {
		t.Fatal("node 1 still leads")
	}
	// Watch for longer than the longest backoff: no attempt may follow.
	before := calls.Load()
	deadline := time.Now().Add(barrierRetryMax + time.Second)
	for time.Now().Before(deadline) {
		if got := calls.Load(); got != before || asFollower.Load() != 0 {
			t.Fatalf("barrier retried after leadership moved: %d calls, then %d (%d as follower)", before, got, asFollower.Load())
		}
		time.Sleep(10 * time.Millisecond) // observation interval
	}
	if before < 1 {
		t.Fatal("the failing barrier was never tried")
	}
}

// Authenticated connections beyond MaxConns are closed; those within it
// stay with raft.
func TestTransport_CapsAuthenticatedConnections(t *testing.T) {
	ca := testCA(t)
	const max, extra = 4, 6
	n := startNode(t, ca, 1, "127.0.0.1", func(c *Config) { c.MaxConns = max })
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(2, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Sign(csrPEM, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	clientTLS, err := pki.Material{CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: ca.CertPEM}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	clientTLS.ServerName = "127.0.0.1"
	var closed atomic.Int32
	for range max + extra {
		c, err := tls.Dial("tcp", n.cfg.RaftAddr, clientTLS)
		if err != nil {
			t.Fatalf("member connection: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		go func() {
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
				closed.Add(1)
			}
		}()
	}
	waitFor(t, "the node to close the connections beyond its cap", 10*time.Second, func() bool { return closed.Load() >= extra })
	if got := closed.Load(); got != extra {
		t.Fatalf("%d of %d member connections closed, want %d", got, max+extra, extra)
	}
}

// TestTransport_ClosesConnectionsOfRevokedPeers: a connection that passed
// its handshake is closed once its peer's certificate is revoked (the
// node was removed); the other peers' connections stay.
func TestTransport_ClosesConnectionsOfRevokedPeers(t *testing.T) {
	ca := testCA(t)
	var revoked sync.Map // serial → true
	check := func(c *x509.Certificate) error {
		if _, ok := revoked.Load(pki.Serial(c)); ok {
			return errors.New("revoked")
		}
		return nil
	}
	n := startNode(t, ca, 1, "127.0.0.1", func(c *Config) {
		id, err := pki.NewIdentity(tlsMaterial(t, ca, 1), check)
		if err != nil {
			t.Fatal(err)
		}
		c.ServerTLS, c.ClientTLS = id.ServerConfig(true), id.ClientConfig()
	})
	dial := func(m pki.Material) (*tls.Conn, string) {
		cfg, err := m.ClientConfig()
		if err != nil {
			t.Fatal(err)
		}
		cfg.ServerName = "127.0.0.1"
		c, err := tls.Dial("tcp", n.cfg.RaftAddr, cfg)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		leaf, _ := m.Leaf()
		return c, pki.Serial(leaf)
	}
	removedMat := tlsMaterial(t, ca, 2)
	removed, serial := dial(removedMat)
	kept, _ := dial(tlsMaterial(t, ca, 3))
	// Both are served: a write and a read do not fail at once.
	for _, c := range []*tls.Conn{removed, kept} {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
			t.Fatalf("a member's connection failed before any revocation: %v", err)
		}
	}
	revoked.Store(serial, true)
	_ = removed.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := removed.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("the revoked peer's connection is still open: %v", err)
	}
	_ = kept.SetReadDeadline(time.Now().Add(3 * recheckEvery))
	if _, err := kept.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("a member's connection was closed: %v", err)
	}
	// A new connection with the revoked certificate is refused at once.
	again, _ := dial(removedMat)
	_ = again.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := again.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("a new connection with the revoked certificate was accepted: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// tlsMaterial is a certificate from ca for node uid on 127.0.0.1.
func tlsMaterial(t *testing.T, ca *pki.CA, uid int) pki.Material {
	t.Helper()
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(uid, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Sign(csrPEM, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return pki.Material{CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: ca.CertPEM}
}
