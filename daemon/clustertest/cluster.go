// Package clustertest starts real cnm clusters inside a test: N nodes built
// by daemon.Start, over real TCP on loopback (each node on its own 127.0.0.x
// address, ports chosen by the OS, data in temp dirs), which a test can kill,
// restart and partition.
package clustertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"cnm/daemon"
	"cnm/pki"
	"cnm/raftnode"
)

// Admin credentials of every test cluster.
const (
	AdminUser     = "admin@cnm.local"
	AdminPassword = "test-admin-password"
)

// Cluster is a running test cluster.
type Cluster struct {
	t      testing.TB
	Net    *FaultNet
	client *http.Client

	mu    sync.Mutex
	nodes map[int]*Member
	// setups receive what StartViaREST returned, for idle nodes.
	setups map[int]chan setupResult
}

type setupResult struct {
	node *daemon.Node
	err  error
}

// Member is one node of a Cluster; Node is nil while it is stopped.
type Member struct {
	UID  int
	Host string
	Cfg  daemon.Config
	Node *daemon.Node
}

// Options tune a test cluster.
type Options struct {
	// Raft overrides raft timeouts and snapshot settings.
	Raft raftnode.Config
	// Hold is the no-leader hold of the API (default 2 s, shorter than the
	// product's 5 s so that quorum-loss tests finish sooner).
	Hold time.Duration
	// DownAfter is how long the leader waits before marking a silent node
	// down (default 1 s here).
	DownAfter time.Duration
	// ShardFileScale (default 2^-20: 1 KiB of file per GiB) and
	// MigrationRate (default unlimited) make shard copies slow enough to
	// interrupt when a test needs it.
	ShardFileScale float64
	MigrationRate  int64
	// TLSCertFile and TLSKeyFile are every node's --tls-cert/--tls-key.
	TLSCertFile, TLSKeyFile string
	// CertLifetime, CheckpointInterval and ConsistencyInterval are the
	// nodes' (zero: the product's defaults).
	CertLifetime, CheckpointInterval, ConsistencyInterval time.Duration
	// MaxShards and Memory are every node's --max-shards and --memory
	// (zero: the product's defaults).
	MaxShards int
	Memory    int64
	// Idle starts every node with neither --bootstrap nor --join: each
	// serves the setup API until the test sets it up over REST, and
	// AwaitSetup then adopts it.
	Idle bool
}

// HostOf is the loopback address of node uid.
func HostOf(uid int) string { return fmt.Sprintf("127.0.0.%d", 10+uid) }

// Start boots an n-node cluster: node 1 bootstraps, the others join through
// it. It fails the test if the cluster is not formed in time.
func Start(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	opts.withDefaults()
	c := &Cluster{
		t:   t,
		Net: NewFaultNet(),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // test client, like curl -k
		}},
		nodes: map[int]*Member{}, setups: map[int]chan setupResult{},
	}
	// The temp dir first: cleanups run last-in first-out, so the nodes stop
	// before their data dirs are removed.
	base := t.TempDir()
	t.Cleanup(c.Stop)
	for uid := 1; uid <= n; uid++ {
		host := HostOf(uid)
		cfg := c.memberConfig(uid, host, base, opts)
		m := &Member{UID: uid, Host: host, Cfg: cfg}
		c.nodes[uid] = m
		if opts.Idle {
			c.startIdle(uid)
		} else {
			c.StartNode(uid)
		}
	}
	return c
}

// withDefaults fills in what a test left zero with values for tests: a
// shorter hold and down-after than the product's, and raft timing for a
// loaded 2-core machine running the race detector, where the LAN defaults
// make leaders step down under load.
func (opts *Options) withDefaults() {
	if opts.Hold == 0 {
		opts.Hold = 2 * time.Second
	}
	if opts.DownAfter == 0 {
		opts.DownAfter = time.Second
	}
	if opts.Raft.HeartbeatTimeout == 0 {
		opts.Raft.HeartbeatTimeout = 500 * time.Millisecond
	}
	if opts.Raft.ElectionTimeout == 0 {
		opts.Raft.ElectionTimeout = 500 * time.Millisecond
	}
	if opts.Raft.LeaderLeaseTimeout == 0 {
		opts.Raft.LeaderLeaseTimeout = 250 * time.Millisecond
	}
	// Checkpoints more often than in production, so that every test also
	// checks that healthy nodes never see a divergence.
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = 500 * time.Millisecond
	}
	if opts.ConsistencyInterval == 0 {
		opts.ConsistencyInterval = 500 * time.Millisecond
	}
	if opts.ShardFileScale == 0 {
		opts.ShardFileScale = 1.0 / (1 << 20)
	}
}

// memberConfig is node uid's daemon config, with two addresses reserved on
// host. A node that joins needs node 1 to be running already: it learns
// the cluster CA from node 1's data dir.
func (c *Cluster) memberConfig(uid int, host, base string, opts Options) daemon.Config {
	t := c.t
	t.Helper()
	apiAddr, err := c.Net.Reserve(host)
	if err != nil {
		t.Fatal(err)
	}
	raftAddr, err := c.Net.Reserve(host)
	if err != nil {
		t.Fatal(err)
	}
	cfg := daemon.Config{
		UID: uid, DataDir: filepath.Join(base, fmt.Sprintf("node-%d", uid)),
		APIAddr: apiAddr, RaftAddr: raftAddr,
		AdminUser: AdminUser, AdminPassword: AdminPassword,
		Raft: opts.Raft, Hold: opts.Hold, BcryptCost: bcrypt.MinCost, DownAfter: opts.DownAfter,
		ShardFileScale: opts.ShardFileScale, MigrationRate: opts.MigrationRate,
		MaxShards: opts.MaxShards, Memory: opts.Memory,
		Listen: c.Net.Listen, Dial: c.Net.Dial,
		TLSCertFile: opts.TLSCertFile, TLSKeyFile: opts.TLSKeyFile,
		CertLifetime: opts.CertLifetime, CheckpointInterval: opts.CheckpointInterval,
		ConsistencyInterval: opts.ConsistencyInterval,
		Logger:              testLogger(t, uid),
	}
	switch {
	case opts.Idle:
		cfg.AdminUser, cfg.AdminPassword = "", ""
	case uid == 1:
		cfg.Bootstrap = true
	default:
		cfg.Join = "https://" + c.nodes[1].Cfg.APIAddr
		cfg.JoinCAFingerprint = c.CAFingerprint()
	}
	return cfg
}

// CAFingerprint is the fingerprint of the cluster CA, read from node 1's
// data dir: what --join-ca-fingerprint takes.
func (c *Cluster) CAFingerprint() string {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.Member(1).Cfg.DataDir, "tls", pki.CAFile))
	if err != nil {
		c.t.Fatalf("cluster CA: %v", err)
	}
	fp, err := pki.Fingerprint(b)
	if err != nil {
		c.t.Fatalf("cluster CA: %v", err)
	}
	return fp
}

// startIdle runs daemon.StartViaREST for node uid in the background; it
// returns once the test has set the node up, or at cleanup.
func (c *Cluster) startIdle(uid int) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan setupResult, 1)
	c.setups[uid] = ch
	cfg := c.nodes[uid].Cfg
	go func() {
		n, err := daemon.StartViaREST(ctx, cfg)
		ch <- setupResult{n, err}
	}()
	c.t.Cleanup(func() {
		cancel()
		if r := <-ch; r.node != nil {
			r.node.Kill()
		}
	})
}

// AwaitSetup waits until idle node uid has been set up over REST and
// adopts it as a running member, from then on stopped like any other.
func (c *Cluster) AwaitSetup(uid int, timeout time.Duration) {
	c.t.Helper()
	c.mu.Lock()
	ch := c.setups[uid]
	c.mu.Unlock()
	select {
	case r := <-ch:
		ch <- setupResult{err: r.err} // for the cleanup: the node is adopted
		if r.err != nil {
			c.t.Fatalf("set up node %d over REST: %v", uid, r.err)
		}
		c.mu.Lock()
		c.nodes[uid].Node = r.node
		c.mu.Unlock()
	case <-time.After(timeout):
		c.t.Fatalf("node %d was not set up within %s", uid, timeout)
	}
}

func testLogger(t testing.TB, uid int) *slog.Logger {
	if os.Getenv("CNM_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test_node", uid)
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// StartNode starts (or restarts, from its data dir) node uid.
func (c *Cluster) StartNode(uid int) {
	c.t.Helper()
	m := c.Member(uid)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := daemon.Start(ctx, m.Cfg)
	if err != nil {
		c.t.Fatalf("start node %d: %v", uid, err)
	}
	c.mu.Lock()
	m.Node = n
	c.mu.Unlock()
}

// Member returns node uid's record.
func (c *Cluster) Member(uid int) *Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.nodes[uid]
	if !ok {
		c.t.Fatalf("no node %d", uid)
	}
	return m
}

// UIDs lists the nodes in uid order, running or not.
func (c *Cluster) UIDs() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]int, 0, len(c.nodes))
	for uid := 1; len(out) < len(c.nodes); uid++ {
		if _, ok := c.nodes[uid]; ok {
			out = append(out, uid)
		}
	}
	return out
}

// Running lists the uids of running nodes.
func (c *Cluster) Running() []int {
	var out []int
	for _, uid := range c.UIDs() {
		if c.Member(uid).Node != nil {
			out = append(out, uid)
		}
	}
	return out
}

// Kill stops node uid as a crash would (no leadership transfer).
func (c *Cluster) Kill(uid int) {
	m := c.Member(uid)
	c.mu.Lock()
	n := m.Node
	m.Node = nil
	c.mu.Unlock()
	if n != nil {
		n.Kill()
	}
}

// Close stops node uid gracefully, as SIGTERM does.
func (c *Cluster) Close(uid int) {
	c.t.Helper()
	m := c.Member(uid)
	c.mu.Lock()
	n := m.Node
	m.Node = nil
	c.mu.Unlock()
	if n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		c.t.Errorf("close node %d: %v", uid, err)
	}
}

// Stop kills every node; it runs at test cleanup.
func (c *Cluster) Stop() {
	for _, uid := range c.UIDs() {
		c.Kill(uid)
	}
	c.client.CloseIdleConnections()
	c.Net.Close()
}

// Partition cuts the nodes of side a off from those of side b.
func (c *Cluster) Partition(a, b []int) {
	c.Net.Partition(hosts(a), hosts(b))
}

// Heal removes every partition.
func (c *Cluster) Heal() { c.Net.Heal() }

func hosts(uids []int) []string {
	out := make([]string, len(uids))
	for i, u := range uids {
		out[i] = HostOf(u)
	}
	return out
}

// Eventually polls cond every 10 ms until it returns nil or timeout passes,
// then fails the test with cond's last error.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		<-tick.C
	}
}

// Leader waits until the running nodes among among (all running nodes when
// empty) agree on one leader that is one of them, and returns it.
func (c *Cluster) Leader(timeout time.Duration, among ...int) int {
	c.t.Helper()
	if len(among) == 0 {
		among = c.Running()
	}
	var leader int
	Eventually(c.t, timeout, func() error {
		leader = 0
		for _, uid := range among {
			m := c.Member(uid)
			if m.Node == nil {
				continue
			}
			l, _ := m.Node.Raft().Leader()
			if l == 0 {
				return fmt.Errorf("node %d knows no leader", uid)
			}
			if leader != 0 && l != leader {
				return fmt.Errorf("nodes disagree on the leader: %d and %d", leader, l)
			}
			leader = l
		}
		for _, uid := range among {
			if uid == leader {
				if _, ready, _ := c.Member(uid).Node.Raft().Leadership(); !ready {
					return fmt.Errorf("leader %d has not committed its first barrier", uid)
				}
				return nil
			}
		}
		return fmt.Errorf("leader %d is not among %v", leader, among)
	})
	return leader
}
