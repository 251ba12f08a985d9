package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	nodes    []*proc
	client   *http.Client
	mu       sync.Mutex
	rules    [][2]string // iptables DROP rules in place (source, destination)
	rec      *recorder   // where nemeses record the client operations they make
}

func newCluster(bin, dir string, n, base int) *cluster {
	c := &cluster{bin: bin, dir: dir, client: &http.Client{Timeout: 8 * time.Second, Transport: &http.Transport{
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
	args := []string{"--uid", fmt.Sprint(n.uid), "--data-dir", n.dir, "--api-addr", n.api, "--raft-addr", n.host + ":9444",
		"--admin-user", adminUser,
		"--shard-file-scale", "0.00390625", "--migration-rate", "8388608"}
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

// poll runs cond until it returns nil or timeout passes.
func poll(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *cluster) do(ctx context.Context, n *proc, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+n.api+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.SetBasicAuth(adminUser, adminPassword)
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (c *cluster) waitUp(ctx context.Context, n *proc) error {
	return poll(ctx, 30*time.Second, func() error {
		st, _, err := c.do(ctx, n, "GET", "/v1/ping", nil)
		if err != nil || st != 200 {
			return fmt.Errorf("node %d does not answer: %v %d", n.uid, err, st)
		}
		return nil
	})
}

// leader waits until every running node names the same running leader.
func (c *cluster) leader(ctx context.Context, timeout time.Duration) (*proc, error) {
	var leader *proc
	err := poll(ctx, timeout, func() error {
		leader = nil
		run := c.running()
		for _, n := range run {
			st, b, err := c.do(ctx, n, "GET", "/v1/cluster?stale=true", nil)
			if err != nil || st != 200 {
				return fmt.Errorf("node %d: %v %d", n.uid, err, st)
			}
			var v struct {
				Leader int `json:"leader"`
			}
			if err := json.Unmarshal(b, &v); err != nil || v.Leader == 0 {
				return fmt.Errorf("node %d knows no leader", n.uid)
			}
			if leader != nil && leader.uid != v.Leader {
				return errors.New("nodes disagree on the leader")
			}
			leader = c.node(v.Leader)
		}
		for _, n := range run {
			if n == leader {
				return nil
			}
		}
		return errors.New("the leader is not running")
	})
	return leader, err
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
		var nodes []struct {
			UID    int    `json:"uid"`
			Status string `json:"status"`
		}
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

func (c *cluster) createDemo(ctx context.Context) error {
	if st, b, err := c.do(ctx, c.node(1), "PUT", "/v1/cluster/policy", map[string]string{"default_shards_placement": "sparse"}); err != nil || st != 200 {
		return fmt.Errorf("policy: %v %d %s", err, st, b)
	}
	st, b, err := c.do(ctx, c.node(1), "POST", "/v1/bdbs", map[string]any{"name": "demo", "memory_size": 6 << 30,
		"shards_count": 6, "replication": true, "data_persistence": "snapshot"})
	if err != nil || st != 200 {
		return fmt.Errorf("create: %v %d %s", err, st, b)
	}
	return nil
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

// iptables partitions: traffic between the two sides is dropped. Every
// node-to-node connection leaves from the node's own address, so rules on
// source and destination separate nodes on loopback.
func (c *cluster) partition(a, b []*proc) error {
	for _, x := range a {
		for _, y := range b {
			for _, r := range [][2]string{{x.host, y.host}, {y.host, x.host}} {
				if out, err := exec.Command("iptables", "-I", "INPUT", "-s", r[0], "-d", r[1], "-j", "DROP").CombinedOutput(); err != nil {
					return fmt.Errorf("iptables: %v: %s", err, out)
				}
				c.rules = append(c.rules, r)
			}
		}
	}
	return nil
}

func (c *cluster) heal() {
	for _, r := range c.rules {
		_ = exec.Command("iptables", "-D", "INPUT", "-s", r[0], "-d", r[1], "-j", "DROP").Run()
	}
	c.rules = nil
}

// errNoPartitions: this machine cannot make partitions (iptables missing or
// not root); the nemesis is skipped, not failed.
var errNoPartitions = fmt.Errorf("iptables is not usable here (needs root): %w", errSkipped)

// errSkipped marks a nemesis that did not run its fault: the iteration is
// reported as skipped, neither ok nor a violation.
var errSkipped = errors.New("skipped")

func havePartitions() bool {
	return exec.Command("iptables", "-L", "INPUT", "-n").Run() == nil
}

// nemesis applies one fault and repairs it; an error is a violation of the
// cluster's promises (no new leader in time, a node that does not recover).
func (c *cluster) nemesis(ctx context.Context, name string, rng *rand.Rand) error {
	pause := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d + time.Duration(rng.Int64N(int64(d)))):
		}
	}
	others := func(x *proc) []*proc {
		var out []*proc
		for _, n := range c.nodes {
			if n != x {
				out = append(out, n)
			}
		}
		return out
	}
	leader, err := c.leader(ctx, 15*time.Second)
	if err != nil {
		return fmt.Errorf("no leader before the fault: %w", err)
	}
	switch name {
	case "kill-leader", "kill-random":
		victim := leader
		if name == "kill-random" {
			victim = c.nodes[rng.IntN(len(c.nodes))]
		}
		c.kill(victim, false)
		if _, err := c.leader(ctx, 10*time.Second); err != nil {
			return fmt.Errorf("no leader among the survivors of node %d: %w", victim.uid, err)
		}
		pause(time.Second)
		if err := c.start(victim); err != nil {
			return err
		}
		return c.waitUp(ctx, victim)
	case "partition-leader", "partition-minority":
		if !havePartitions() {
			return errNoPartitions
		}
		victim := leader
		if name == "partition-minority" {
			victim = c.nodes[rng.IntN(len(c.nodes))]
		}
		if err := c.partition([]*proc{victim}, others(victim)); err != nil {
			return err
		}
		pause(2 * time.Second)
		c.heal()
		_, err := c.leader(ctx, 15*time.Second)
		return err
	case "remove-rejoin":
		return c.removeRejoin(ctx, rng, pause)
	case "remove-fail":
		return c.removeFail(ctx, rng, pause)
	case "rolling-restart":
		for _, n := range c.nodes {
			c.kill(n, true)
			if err := c.start(n); err != nil {
				return err
			}
			if err := c.waitUp(ctx, n); err != nil {
				return err
			}
			if _, err := c.leader(ctx, 15*time.Second); err != nil {
				return err
			}
		}
		return nil
	case "pause-leader", "pause-target":
		d := 3 * time.Second
		if rng.IntN(2) == 0 {
			d = 15 * time.Second
		}
		victim, what := leader, "leader"
		if name == "pause-target" {
			if victim = c.moveTarget(ctx, 10*time.Second); victim != nil {
				what = "copy target"
			} else {
				victim, what = othersThan(c.running(), leader)[rng.IntN(len(c.running())-1)], "follower (no copy ran)"
			}
		}
		fmt.Printf("drill:   pausing %s node %d for %s\n", what, victim.uid, d)
		return c.pauseFor(ctx, victim, d, victim == leader)
	case "term-restart":
		var storm []*proc
		for range 3 {
			storm = append(storm, c.nodes[rng.IntN(len(c.nodes))])
		}
		return c.termRestart(ctx, storm)
	case "term-all":
		return c.restartAll(ctx, true)
	case "disk-full":
		victim := leader
		if rng.IntN(2) == 0 {
			victim = othersThan(c.running(), leader)[rng.IntN(len(c.running())-1)]
		}
		return c.diskFull(ctx, victim, 8*time.Second)
	case "bitflip":
		return c.bitFlip(ctx, rng, othersThan(c.running(), leader)[rng.IntN(len(c.running())-1)])
	case "full-restart":
		return c.restartAll(ctx, false)
	}
	return fmt.Errorf("unknown nemesis %q (know %s)", name, strings.Join(allNemeses, ", "))
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

// submitRemove submits a remove of a random node through another running
// node, recorded in the history like any client operation. The workload
// keeps nodes busy or in maintenance, so it tries a few victims; when none
// was accepted it returns an error wrapping errSkipped.
func (c *cluster) submitRemove(ctx context.Context, rng *rand.Rand, pause func(time.Duration)) (victim, via *proc, err error) {
	var out Output
	for attempt := 0; attempt < 30; attempt++ {
		victim = c.nodes[rng.IntN(len(c.nodes))]
		via = nil
		for _, n := range c.running() {
			if n != victim {
				via = n
				break
			}
		}
		out = c.rec.exec(ctx, c, 999, via, Input{Kind: "submit", Node: victim.uid, Action: "remove"})
		if out.Code == 200 || out.Unknown {
			return victim, via, nil
		}
		pause(250 * time.Millisecond)
	}
	return nil, nil, fmt.Errorf("no remove accepted (last answer %d): %w", out.Code, errSkipped)
}

// removeStatus waits up to timeout until the remove of victim ends and
// returns its status.
func (c *cluster) removeStatus(ctx context.Context, victim *proc, timeout time.Duration) (string, error) {
	var status string
	err := poll(ctx, timeout, func() error {
		for _, n := range c.running() {
			if n == victim {
				continue
			}
			st, b, err := c.do(ctx, n, "GET", fmt.Sprintf("/v1/nodes/%d/actions/remove", victim.uid), nil)
			if err != nil || st != 200 {
				continue
			}
			var a struct {
				Status string `json:"status"`
			}
			_ = json.Unmarshal(b, &a)
			if terminal(a.Status) {
				status = a.Status
				return nil
			}
			return fmt.Errorf("remove of node %d is %s", victim.uid, a.Status)
		}
		return errors.New("no survivor answers")
	})
	if err != nil {
		return "", fmt.Errorf("the remove of node %d did not finish: %w", victim.uid, err)
	}
	return status, nil
}

// removeRejoin removes a node through the API while killing a node at a
// random moment (the leader, the node being removed, or another), waits for
// the action to end, then brings the removed node back as a new member
// under the same uid.
func (c *cluster) removeRejoin(ctx context.Context, rng *rand.Rand, pause func(time.Duration)) error {
	victim, via, err := c.submitRemove(ctx, rng, pause)
	if err != nil {
		return err
	}
	// A crash somewhere while the membership changes.
	time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
	// A crashed node comes back (the node being removed too: its shards
	// can only be copied from it).
	crashed := c.nodes[rng.IntN(len(c.nodes))]
	c.kill(crashed, false)
	pause(500 * time.Millisecond)
	if err := c.start(crashed); err != nil {
		return err
	}
	if err := c.waitUp(ctx, crashed); err != nil && crashed != victim {
		return err
	}
	status, err := c.removeStatus(ctx, victim, 3*time.Minute)
	if err != nil {
		return err
	}
	fmt.Printf("drill:   remove of node %d %s (node %d crashed meanwhile)\n", victim.uid, status, crashed.uid)
	return c.afterRemove(ctx, victim, via, status)
}

// removeFail makes a removal fail: right after the remove of one node is
// accepted, every other node stops accepting shards, so the shards of the
// node being removed have nowhere to go; on half the runs another node is
// also killed for a while. Once the removal has ended the nodes accept
// shards again and, as in the one leaderless window a drill once saw, the
// leader is killed: the others must elect a leader as after any crash.
func (c *cluster) removeFail(ctx context.Context, rng *rand.Rand, pause func(time.Duration)) error {
	victim, via, err := c.submitRemove(ctx, rng, pause)
	if err != nil {
		return err
	}
	setAccept := func(on bool) error {
		for _, n := range c.nodes {
			if n == victim {
				continue
			}
			err := poll(ctx, 30*time.Second, func() error {
				st, b, err := c.do(ctx, via, "PUT", fmt.Sprintf("/v1/nodes/%d", n.uid), map[string]bool{"accept_servers": on})
				if err == nil && st != 200 {
					err = fmt.Errorf("PUT /v1/nodes/%d: %d %s", n.uid, st, b)
				}
				return err
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := setAccept(false); err != nil {
		return err
	}
	var down *proc
	if rng.IntN(2) == 0 {
		for _, n := range c.nodes {
			if n != victim && n != via {
				down = n
			}
		}
		c.kill(down, false)
	}
	// An error here only means the removal is still running.
	status, _ := c.removeStatus(ctx, victim, 8*time.Second)
	if down != nil {
		if err := c.start(down); err != nil {
			return err
		}
		if err := c.waitUp(ctx, down); err != nil {
			return err
		}
	}
	if status == "" {
		var err error
		if status, err = c.removeStatus(ctx, victim, 3*time.Minute); err != nil {
			return err
		}
	}
	if err := setAccept(true); err != nil {
		return err
	}
	crash := "no node"
	if down != nil {
		crash = fmt.Sprintf("node %d", down.uid)
	}
	fmt.Printf("drill:   remove of node %d %s (no node accepting its shards; %s killed meanwhile)\n", victim.uid, status, crash)
	if status == "completed" {
		return c.afterRemove(ctx, victim, via, status)
	}
	leader, err := c.leader(ctx, 15*time.Second)
	if err != nil {
		return fmt.Errorf("no leader after the failed remove of node %d: %w", victim.uid, err)
	}
	c.kill(leader, false)
	if _, err := c.leader(ctx, 10*time.Second); err != nil {
		return fmt.Errorf("no leader within 10 s of killing leader %d after the failed remove of node %d: %w", leader.uid, victim.uid, err)
	}
	pause(time.Second)
	if err := c.start(leader); err != nil {
		return err
	}
	return c.waitUp(ctx, leader)
}

// afterRemove brings the cluster back to full size once a remove ended:
// a removed node's cnmd leaves by itself and then joins again, afresh,
// under the same uid; a node whose removal did not complete is restarted
// if it is down.
func (c *cluster) afterRemove(ctx context.Context, victim, via *proc, status string) error {
	if status != "completed" {
		if victim.cmd == nil {
			if err := c.start(victim); err != nil {
				return err
			}
			return c.waitUp(ctx, victim)
		}
		return nil
	}
	if victim.cmd != nil {
		select {
		case <-victim.exited:
		case <-time.After(30 * time.Second):
			return fmt.Errorf("removed node %d did not exit", victim.uid)
		}
		c.mu.Lock()
		victim.cmd = nil
		c.mu.Unlock()
	}
	old, err := readOldCert(victim.dir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(victim.dir); err != nil {
		return err
	}
	// A refused old certificate is checked before the node rejoins; the
	// node rejoins either way, so that a violation here does not leave
	// the next iterations a node short.
	certErr := c.oldCertRefused(ctx, old)
	if err := c.start(victim); err != nil {
		return errors.Join(certErr, err)
	}
	if err := c.waitUp(ctx, victim); err != nil {
		return errors.Join(certErr, err)
	}
	// Joined means a voter again (the node is active once it votes), not
	// only admitted: until then the cluster has one voter fewer.
	joined := poll(ctx, 30*time.Second, func() error {
		st, b, err := c.do(ctx, via, "GET", "/v1/nodes", nil)
		var nodes []struct {
			UID    int    `json:"uid"`
			Status string `json:"status"`
		}
		if err != nil || st != 200 || json.Unmarshal(b, &nodes) != nil || len(nodes) != len(c.nodes) {
			return fmt.Errorf("node %d has not joined again", victim.uid)
		}
		for _, n := range nodes {
			if n.UID == victim.uid && n.Status != "active" {
				return fmt.Errorf("node %d is %s, not yet a voter", victim.uid, n.Status)
			}
		}
		return nil
	})
	return errors.Join(certErr, joined)
}
