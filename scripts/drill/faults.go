package main

// Faults beyond kill and partition: pauses (SIGSTOP), graceful stops
// (SIGTERM), a full disk, a bit flip in a stopped node's log store.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// diskSize is the size of each node's tmpfs: room for its shard files
// (a few MB each at the drill's scale) and its raft log, small enough to
// fill in an instant.
const diskSize = "256m"

// mountDisks puts every node's data dir on a tmpfs of its own, so that the
// disk-full nemesis can fill one node's disk. Without mount rights (not
// root, or no tmpfs) the data dirs stay where they are and disk-full is
// skipped.
func (c *cluster) mountDisks() {
	var mounted []*proc
	for _, n := range c.nodes {
		disk := filepath.Join(c.dir, fmt.Sprintf("disk-%d", n.uid))
		if err := os.MkdirAll(disk, 0o700); err != nil {
			break
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+diskSize+",mode=0700", "tmpfs", disk).CombinedOutput(); err != nil {
			fmt.Printf("drill: no tmpfs for the data dirs (disk-full is skipped): %v: %s\n", err, bytes.TrimSpace(out))
			for _, m := range mounted {
				_ = exec.Command("umount", m.disk).Run()
				m.disk = ""
				m.dir = filepath.Join(c.dir, fmt.Sprintf("node-%d", m.uid))
			}
			return
		}
		n.disk = disk
		n.dir = filepath.Join(disk, fmt.Sprintf("node-%d", n.uid))
		mounted = append(mounted, n)
	}
}

// unmountDisks releases the tmpfs mounts once every node has stopped;
// with keep, each data dir is first copied out next to the logs, as
// evidence.
func (c *cluster) unmountDisks(keep bool) {
	for _, n := range c.nodes {
		if n.disk == "" {
			continue
		}
		if keep {
			_ = exec.Command("cp", "-a", n.dir, filepath.Join(c.dir, fmt.Sprintf("node-%d", n.uid))).Run()
		}
		if out, err := exec.Command("umount", n.disk).CombinedOutput(); err != nil {
			fmt.Printf("drill: umount %s: %v: %s\n", n.disk, err, bytes.TrimSpace(out))
		}
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

// pauseFor stops a node's process (SIGSTOP, as a frozen VM) for d, then
// lets it go on. With the leader paused longer than an election takes,
// the others must elect a new one meanwhile.
func (c *cluster) pauseFor(ctx context.Context, n *proc, d time.Duration, wasLeader bool) error {
	if err := c.signal(n, syscall.SIGSTOP); err != nil {
		return err
	}
	resumed := false
	resume := func() {
		if !resumed {
			_ = c.signal(n, syscall.SIGCONT)
			resumed = true
		}
	}
	defer resume()
	start := time.Now()
	if wasLeader && d > 5*time.Second {
		if _, err := c.leaderAmong(ctx, othersThan(c.running(), n), 10*time.Second); err != nil {
			return fmt.Errorf("no new leader while leader %d was paused: %w", n.uid, err)
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(start.Add(d))):
	}
	resume()
	if err := c.waitUp(ctx, n); err != nil {
		return err
	}
	_, err := c.leader(ctx, 15*time.Second)
	return err
}

func othersThan(nodes []*proc, x *proc) []*proc {
	var out []*proc
	for _, n := range nodes {
		if n != x {
			out = append(out, n)
		}
	}
	return out
}

// leaderAmong waits until the given nodes agree on a leader among them.
func (c *cluster) leaderAmong(ctx context.Context, nodes []*proc, timeout time.Duration) (*proc, error) {
	var leader *proc
	err := poll(ctx, timeout, func() error {
		leader = nil
		for _, n := range nodes {
			uid, err := c.leaderSeenBy(ctx, n)
			if err != nil {
				return err
			}
			if leader != nil && leader.uid != uid {
				return errors.New("nodes disagree on the leader")
			}
			leader = c.node(uid)
		}
		for _, n := range nodes {
			if n == leader {
				return nil
			}
		}
		return fmt.Errorf("the leader is node %d, not one of these", leader.uid)
	})
	return leader, err
}

func (c *cluster) leaderSeenBy(ctx context.Context, n *proc) (int, error) {
	st, b, err := c.do(ctx, n, "GET", "/v1/cluster?stale=true", nil)
	if err != nil || st != 200 {
		return 0, fmt.Errorf("node %d: %v %d", n.uid, err, st)
	}
	var v struct {
		Leader int `json:"leader"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.Leader == 0 {
		return 0, fmt.Errorf("node %d knows no leader", n.uid)
	}
	return v.Leader, nil
}

// moveTarget is the node a running action is copying a shard to, if one
// does within timeout.
var moveStep = regexp.MustCompile(`^move shard \S+ from node \d+ to node (\d+)`)

func (c *cluster) moveTarget(ctx context.Context, timeout time.Duration) *proc {
	var target *proc
	_ = poll(ctx, timeout, func() error {
		run := c.running()
		if len(run) == 0 {
			return errors.New("nothing runs")
		}
		st, b, err := c.do(ctx, run[0], "GET", "/v1/nodes/actions?stale=true", nil)
		if err != nil || st != 200 {
			return fmt.Errorf("actions: %v %d", err, st)
		}
		var v struct {
			Actions []struct {
				Status     string `json:"status"`
				Additional struct {
					DoneOps int      `json:"done_ops"`
					Steps   []string `json:"steps"`
				} `json:"additional_info"`
			} `json:"actions"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		for _, a := range v.Actions {
			if terminal(a.Status) || a.Additional.DoneOps >= len(a.Additional.Steps) {
				continue
			}
			if m := moveStep.FindStringSubmatch(a.Additional.Steps[a.Additional.DoneOps]); m != nil {
				uid, _ := strconv.Atoi(m[1])
				if uid >= 1 && uid <= len(c.nodes) && c.node(uid).cmd != nil {
					target = c.node(uid)
					return nil
				}
			}
		}
		return errors.New("no move running")
	})
	return target
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

// errNoDisks: the data dirs are not on tmpfs mounts of their own.
var errNoDisks = fmt.Errorf("the data dirs are not on a tmpfs of their own (needs root): %w", errSkipped)

// diskFull fills the victim's disk for a while. A node that cannot write
// must not lead: after a grace period, the cluster keeps a leader other
// than the victim for as long as the disk stays full. Once space is free
// again, the victim comes back by itself.
func (c *cluster) diskFull(ctx context.Context, victim *proc, hold time.Duration) error {
	if victim.disk == "" {
		return errNoDisks
	}
	fill := filepath.Join(victim.disk, "fill")
	defer os.Remove(fill)
	if err := fillDisk(fill); err != nil {
		return err
	}
	// The victim notices on its next write; give it that write.
	if st, b, err := c.do(ctx, victim, "PUT", "/v1/cluster/policy", map[string]string{"default_shards_placement": "sparse"}); err == nil && st == 200 {
		// Through a follower, the write lands on the leader's disk: fine.
		_ = b
	}
	// A node that cannot write says so, on every request. (One that
	// still finds room, in pages its log store already holds, goes on.)
	var last string
	faulted := poll(ctx, 5*time.Second, func() error {
		st, b, err := c.do(ctx, victim, "GET", "/v1/ping", nil)
		if err != nil {
			return err
		}
		last = fmt.Sprintf("%d %s", st, bytes.TrimSpace(b))
		if st != 507 || !bytes.Contains(b, []byte(`"insufficient_storage"`)) {
			return fmt.Errorf("node %d with a full disk answers ping with %s", victim.uid, last)
		}
		return nil
	}) == nil
	if !faulted && !strings.HasPrefix(last, "200 ") {
		return fmt.Errorf("node %d with a full disk answers ping with %s, neither healthy nor 507 insufficient_storage", victim.uid, last)
	}
	fmt.Printf("drill:   node %d with a full disk: faulted=%v\n", victim.uid, faulted)
	deadline := time.Now().Add(hold)
	grace := time.Now().Add(5 * time.Second)
	for faulted && time.Now().Before(deadline) {
		if time.Now().After(grace) {
			leader, err := c.leaderAmong(ctx, othersThan(c.running(), victim), 10*time.Second)
			if err != nil {
				return fmt.Errorf("no leader among the others while node %d's disk is full: %w", victim.uid, err)
			}
			if leader == victim {
				return fmt.Errorf("node %d leads with a full disk", victim.uid)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if err := os.Remove(fill); err != nil {
		return err
	}
	if c.exitedByItself(victim) {
		// A node may stop on a storage fault it cannot ride out; its
		// supervisor (here, the drill) starts it again.
		if err := c.start(victim); err != nil {
			return err
		}
	}
	if err := c.waitUp(ctx, victim); err != nil {
		return err
	}
	return c.allActive(ctx, 60*time.Second)
}

// fillDisk writes zeros to path until the disk is full.
func fillDisk(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// Big writes first, then page-sized ones for the last bytes.
	for _, size := range []int{1 << 20, 4 << 10} {
		buf := make([]byte, size)
		for {
			if _, err := f.Write(buf); err != nil {
				if errors.Is(err, syscall.ENOSPC) {
					break
				}
				return fmt.Errorf("fill %s: %w", path, err)
			}
		}
	}
	return nil
}

// allActive waits until every node is a live member again: active, or
// decommissioning (a node whose remove failed stays out of placement for
// good, as the API promises, but lives on).
func (c *cluster) allActive(ctx context.Context, timeout time.Duration) error {
	return poll(ctx, timeout, func() error {
		run := c.running()
		if len(run) == 0 {
			return errors.New("nothing runs")
		}
		st, b, err := c.do(ctx, run[0], "GET", "/v1/nodes", nil)
		if err != nil || st != 200 {
			return fmt.Errorf("nodes: %v %d", err, st)
		}
		var nodes []struct {
			UID    int    `json:"uid"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal(b, &nodes); err != nil {
			return err
		}
		for _, n := range nodes {
			if n.Status != "active" && n.Status != "decommissioning" {
				return fmt.Errorf("node %d is %s", n.UID, n.Status)
			}
		}
		return nil
	})
}

// bitFlip stops a follower, flips one bit in every copy of a marker it
// wrote to its log store (a user created for the purpose), and starts it
// again. The node must not serve the flipped data: it refuses to start,
// or it reports a storage fault and refuses reads, or — when the flip
// only hit stale pages — it serves exactly what the others do. Then its
// log store is put back and it rejoins.
func (c *cluster) bitFlip(ctx context.Context, rng *rand.Rand, victim *proc) error {
	marker := fmt.Sprintf("bitflip-%08x@cnm.local", rng.Uint32())
	// A write may meet an election (another nemesis's aftermath): retry;
	// 409 means an earlier try was applied.
	err := poll(ctx, 20*time.Second, func() error {
		st, b, err := c.do(ctx, victim, "POST", "/v1/users", map[string]string{"email": marker, "password": "bit-flip-password", "role": "db_viewer", "name": "bit flip"})
		if err != nil || (st != 200 && st != 409) {
			return fmt.Errorf("create the marker user: %v %d %s", err, st, b)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The follower must hold the entry before it stops.
	if err := poll(ctx, 10*time.Second, func() error { return c.sees(ctx, victim, marker) }); err != nil {
		return err
	}
	c.kill(victim, false)
	db := filepath.Join(victim.dir, "raft", "raft.db")
	orig, err := os.ReadFile(db)
	if err != nil {
		return err
	}
	flipped := bytes.Clone(orig)
	hits := 0
	for i := 0; ; {
		j := bytes.Index(flipped[i:], []byte(marker))
		if j < 0 {
			break
		}
		// 'b' of "bitflip" becomes 'c': still a valid email.
		flipped[i+j] ^= 0x01
		hits++
		i += j + len(marker)
	}
	if hits == 0 {
		return fmt.Errorf("the marker is not in node %d's raft.db", victim.uid)
	}
	if err := os.WriteFile(db, flipped, 0o600); err != nil {
		return err
	}
	restore := func() error {
		c.kill(victim, false)
		if err := os.WriteFile(db, orig, 0o600); err != nil {
			return err
		}
		if err := c.start(victim); err != nil {
			return err
		}
		return c.waitUp(ctx, victim)
	}
	if err := c.start(victim); err != nil {
		return err
	}
	// Watch for 10 s: whatever it answers must not be the flipped user.
	flippedMarker := "c" + marker[1:]
	end := time.Now().Add(10 * time.Second)
	outcome := "served the same state as the others"
	for time.Now().Before(end) {
		if c.exitedByItself(victim) {
			outcome = "refused to start"
			break
		}
		st, b, err := c.do(ctx, victim, "GET", "/v1/users", nil)
		if err == nil && st == 200 && bytes.Contains(b, []byte(flippedMarker)) {
			_ = restore()
			return fmt.Errorf("node %d serves the bit-flipped user %s", victim.uid, flippedMarker)
		}
		if err == nil && st >= 500 && strings.Contains(string(b), "storage") {
			outcome = "reported a storage fault"
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	fmt.Printf("drill:   node %d with a flipped bit in %d copies of a log entry %s\n", victim.uid, hits, outcome)
	if err := restore(); err != nil {
		return err
	}
	return c.sees(ctx, victim, marker)
}

// sees reports whether a linearizable read of the users through n lists
// email.
func (c *cluster) sees(ctx context.Context, n *proc, email string) error {
	st, b, err := c.do(ctx, n, "GET", "/v1/users", nil)
	if err != nil || st != 200 {
		return fmt.Errorf("users through node %d: %v %d", n.uid, err, st)
	}
	if !bytes.Contains(b, []byte(`"`+email+`"`)) {
		return fmt.Errorf("node %d does not list %s", n.uid, email)
	}
	return nil
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

// oldCert is a removed node's TLS material, kept before its data dir is
// wiped to see that it opens no node-to-node door afterwards.
type oldCert struct {
	cert tls.Certificate
}

func readOldCert(dir string) (*oldCert, error) {
	tlsDir := filepath.Join(dir, "tls")
	cert, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, "node.crt"), filepath.Join(tlsDir, "node.key"))
	if err != nil {
		return nil, fmt.Errorf("read the removed node's certificate: %w", err)
	}
	return &oldCert{cert: cert}, nil
}

// oldCertRefused tries a removed node's certificate on every running node:
// the API's node-to-node endpoints (the members question, the agent's
// shard list) must refuse it, and the raft port must not keep a connection
// made with it.
func (c *cluster) oldCertRefused(ctx context.Context, old *oldCert) error {
	cfg := &tls.Config{Certificates: []tls.Certificate{old.cert}, InsecureSkipVerify: true, //nolint:gosec // the drill only probes
		ServerName: "peer.cnm.internal", MinVersion: tls.VersionTLS12}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	defer client.CloseIdleConnections()
	for _, n := range c.running() {
		// A node refuses the certificate once it has applied the removal:
		// give a lagging one a moment.
		err := poll(ctx, 10*time.Second, func() error {
			for _, path := range []string{"/v1/internal/members", "/v1/internal/agent/shards"} {
				req, err := http.NewRequestWithContext(ctx, "GET", "https://"+n.api+path, nil)
				if err != nil {
					return err
				}
				resp, err := client.Do(req)
				if err != nil {
					continue // refused at the handshake: refused
				}
				resp.Body.Close()
				if resp.StatusCode < 400 {
					return fmt.Errorf("node %d answered %s with %d to a removed node's certificate", n.uid, path, resp.StatusCode)
				}
			}
			// Raft: the handshake may complete (TLS 1.3 checks the
			// client's certificate after), but the connection must not
			// stay open.
			conn, err := tls.Dial("tcp", n.host+":9444", cfg)
			if err != nil {
				return nil
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
			if isTimeout(err) {
				return fmt.Errorf("node %d's raft port kept a connection made with a removed node's certificate", n.uid)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
