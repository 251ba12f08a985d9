package main

// The remove nemeses: a node removed through the API while other faults
// strike, then brought back as a new member under the same uid, whose old
// certificate must open no door.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// submitRemove submits a remove through another running node, recorded
// in the history like any client operation: of the leader and of a
// random follower in turn (counted over both remove nemeses), since
// removing the leader also hands leadership over. The workload keeps
// nodes busy or in maintenance, so it tries a few times; when none was
// accepted it returns an error wrapping errSkipped.
func (c *cluster) submitRemove(ctx context.Context, rng *rand.Rand, pause func(time.Duration)) (victim, via *proc, err error) {
	var out Output
	wantLeader := c.removes%2 == 0
	what := "a follower"
	if wantLeader {
		what = "the leader"
	}
	for attempt := 0; attempt < 30; attempt++ {
		victim = c.nodes[rng.IntN(len(c.nodes))]
		leader, lerr := c.leader(ctx, 10*time.Second)
		switch {
		case lerr != nil:
			pause(250 * time.Millisecond)
			continue
		case wantLeader:
			victim = leader
		case victim == leader:
			victim = othersThan(c.nodes, leader)[rng.IntN(len(c.nodes)-1)]
		}
		via = nil
		for _, n := range c.running() {
			if n != victim {
				via = n
				break
			}
		}
		out = c.rec.exec(ctx, c, 999, via, Input{Kind: "submit", Node: victim.uid, Action: "remove"})
		if out.Code == 200 || out.Unknown {
			c.removes++
			fmt.Printf("drill:   remove of %s, node %d, submitted\n", what, victim.uid)
			c.note(fmt.Sprintf("remove of %s (node %d) submitted", what, victim.uid))
			return victim, via, nil
		}
		pause(250 * time.Millisecond)
	}
	return nil, nil, fmt.Errorf("no remove of %s accepted (last answer %d): %w", what, out.Code, errSkipped)
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
	if err := c.setAccept(ctx, via, victim, false); err != nil {
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
	if err := c.setAccept(ctx, via, victim, true); err != nil {
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

// setAccept sets accept_servers on every node but victim, through via.
func (c *cluster) setAccept(ctx context.Context, via, victim *proc, on bool) error {
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
	// Shard processes outlive their cnmd: any the removed node left would
	// run on, unowned, in a dir about to go.
	if left := strayRedis([]string{victim.dir}, victim.dir); len(left) > 0 {
		c.note(fmt.Sprintf("removed node %d left %d shard processes running (pids %v); the drill killed them", victim.uid, len(left), left))
		if err := killRedis(left); err != nil {
			return err
		}
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
	return errors.Join(certErr, c.waitVoter(ctx, via, victim))
}

// waitVoter waits until via lists victim as active. Joined means a voter
// again (the node is active once it votes), not only admitted: until then
// the cluster has one voter fewer.
func (c *cluster) waitVoter(ctx context.Context, via, victim *proc) error {
	return poll(ctx, 30*time.Second, func() error {
		st, b, err := c.do(ctx, via, "GET", "/v1/nodes", nil)
		var nodes []nodeRecord
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
