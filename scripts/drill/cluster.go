package main

// The drill's cluster: one cnmd process per node, started, stopped and
// restarted by the drill, which plays the nodes' supervisor.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

const (
	adminUser     = "admin@cnm.local"
	adminPassword = "drill-admin-password"
)

type proc struct {
	uid  int
	host string
	api  string
	dir  string
	log  string // the node's log file, outside its data dir
	// disk is the mount point of the small tmpfs holding dir, when the
	// machine lets the drill mount one (the disk-full nemesis needs it).
	disk   string
	cmd    *exec.Cmd
	exited chan struct{}
}

type cluster struct {
	bin, dir string
	backend  string // --shard-backend of every node: redis or file
	nodes    []*proc
	client   *http.Client
	mu       sync.Mutex
	rules    [][2]string // iptables DROP rules in place (source, destination)
	rec      *recorder   // where nemeses record the client operations they make
	dbs      []*dbState  // the drill's databases
	data     *dataRun    // the writers, with -backend redis
	// nemesisRuns is when each nemesis iteration ran.
	nemesisRuns []window
	// removes counts the removes submitted, so that they alternate
	// between the leader and a follower.
	removes int
	notes   []string // said at the end of the summary
}

func newCluster(bin, dir, backend string, n, base int) *cluster {
	c := &cluster{bin: bin, dir: dir, backend: backend, client: &http.Client{Timeout: 8 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // like curl -k
	}}}
	for i := 1; i <= n; i++ {
		host := fmt.Sprintf("127.0.0.%d", base+i)
		c.nodes = append(c.nodes, &proc{uid: i, host: host, api: host + ":9443",
			dir: filepath.Join(dir, fmt.Sprintf("node-%d", i)), log: filepath.Join(dir, fmt.Sprintf("node-%d.log", i))})
	}
	return c
}

func (c *cluster) node(uid int) *proc { return c.nodes[uid-1] }

func (c *cluster) running() []*proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*proc
	for _, n := range c.nodes {
		if n.cmd != nil {
			out = append(out, n)
		}
	}
	return out
}

func (c *cluster) start(n *proc) error {
	args := c.startArgs(n)
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bin, args...)
	// The password goes in the environment: a command line is readable by
	// every local user (ps).
	cmd.Env = append(os.Environ(), "CNM_ADMIN_PASSWORD="+adminPassword)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start node %d: %w", n.uid, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	c.mu.Lock()
	n.cmd, n.exited = cmd, exited
	c.mu.Unlock()
	return nil
}

// startArgs is node n's command line, which depends on what runs now.
func (c *cluster) startArgs(n *proc) []string {
	args := []string{"--uid", fmt.Sprint(n.uid), "--data-dir", n.dir, "--api-addr", n.api, "--raft-addr", n.host + ":9444",
		"--admin-user", adminUser}
	args = append(args, c.backendArgs()...)
	// Node 1 creates the cluster when nothing runs yet; any other start
	// joins through a running member (node 1 too, after it was removed).
	// A node whose data dir holds state ignores both flags.
	var via *proc
	for _, o := range c.running() {
		if o != n {
			via = o
			break
		}
	}
	// A joining node checks the member against the cluster CA in the
	// member's data dir before it sends the credentials.
	switch {
	case via != nil:
		args = append(args, "--join", "https://"+via.api, "--join-ca-file", filepath.Join(via.dir, "tls", "ca.crt"))
	case n.uid == 1:
		args = append(args, "--bootstrap")
	default:
		args = append(args, "--join", "https://"+c.node(1).api, "--join-ca-file", filepath.Join(c.node(1).dir, "tls", "ca.crt"))
	}
	return args
}

// shardPorts is where the nodes' redis shards listen. Each node binds its
// own 127.0.0.x, so all share the range; it lies below the ephemeral
// ports (32768 and up on Linux), where no outgoing connection of a node
// can hold a port a shard is about to bind.
const shardPorts = "23000-23999"

// backendArgs are the shard flags. The backend is always named: the
// product's default is not the drill's to rely on. File shards are a few
// MiB, copied at 8 MiB/s, so that faults land mid-copy; redis shards are
// real processes, copied by replication at whatever speed it has.
func (c *cluster) backendArgs() []string {
	if c.backend == backendRedis {
		return []string{"--shard-backend", backendRedis, "--shard-ports", shardPorts}
	}
	return []string{"--shard-backend", backendFile, "--shard-file-scale", "0.00390625", "--migration-rate", "8388608"}
}

// kill sends SIGKILL (or SIGTERM when graceful) and waits for the exit.
func (c *cluster) kill(n *proc, graceful bool) {
	c.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	sig := syscall.SIGKILL
	if graceful {
		sig = syscall.SIGTERM
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

func (c *cluster) stopAll() {
	for _, n := range c.nodes {
		c.kill(n, false)
	}
}

// exitedByItself reports whether a node the drill started has exited
// without being told to, and then counts it as stopped.
func (c *cluster) exitedByItself(n *proc) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.cmd == nil {
		return true
	}
	select {
	case <-n.exited:
		n.cmd = nil
		return true
	default:
		return false
	}
}

// signal sends sig to a running node's process.
func (c *cluster) signal(n *proc, sig syscall.Signal) error {
	c.mu.Lock()
	cmd := n.cmd
	c.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("node %d is not running", n.uid)
	}
	return cmd.Process.Signal(sig)
}

func (c *cluster) up(ctx context.Context) error {
	for _, n := range c.nodes {
		if err := c.start(n); err != nil {
			return err
		}
		if err := c.waitUp(ctx, n); err != nil {
			return err
		}
	}
	return poll(ctx, 30*time.Second, func() error {
		st, b, err := c.do(ctx, c.node(1), "GET", "/v1/nodes", nil)
		if err != nil || st != 200 {
			return fmt.Errorf("nodes: %v %d", err, st)
		}
		var nodes []nodeRecord
		_ = json.Unmarshal(b, &nodes)
		if len(nodes) != len(c.nodes) {
			return fmt.Errorf("%d of %d nodes joined", len(nodes), len(c.nodes))
		}
		for _, n := range nodes {
			if n.Status != "active" {
				return fmt.Errorf("node %d is %s, not yet a voter", n.UID, n.Status)
			}
		}
		return nil
	})
}

func (c *cluster) restartDead(ctx context.Context) error {
	for _, n := range c.nodes {
		if n.cmd == nil {
			if err := c.start(n); err != nil {
				return err
			}
			if err := c.waitUp(ctx, n); err != nil {
				return err
			}
		}
	}
	_, err := c.leader(ctx, 30*time.Second)
	return err
}

// restartAll stops every node (SIGTERM when graceful, else SIGKILL), starts
// them all, and waits for a leader.
func (c *cluster) restartAll(ctx context.Context, graceful bool) error {
	for _, n := range c.nodes {
		c.kill(n, graceful)
	}
	for _, n := range c.nodes {
		if err := c.start(n); err != nil {
			return err
		}
	}
	for _, n := range c.nodes {
		if err := c.waitUp(ctx, n); err != nil {
			return err
		}
	}
	_, err := c.leader(ctx, 30*time.Second)
	return err
}

// termRestart stops nodes gracefully (SIGTERM) and starts them again at
// once, one after another in quick succession.
func (c *cluster) termRestart(ctx context.Context, nodes []*proc) error {
	for _, n := range nodes {
		c.kill(n, true)
		if err := c.start(n); err != nil {
			return err
		}
	}
	for _, n := range nodes {
		if err := c.waitUp(ctx, n); err != nil {
			return err
		}
	}
	_, err := c.leader(ctx, 30*time.Second)
	return err
}
