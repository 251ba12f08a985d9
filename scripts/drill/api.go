package main

// What the drill asks the nodes over their API, and the waits built on it.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// nodeRecord is a node as GET /v1/nodes lists it.
type nodeRecord struct {
	UID    int    `json:"uid"`
	Status string `json:"status"`
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
		run := c.running()
		var err error
		if leader, err = c.agreedLeader(ctx, run); err != nil {
			return err
		}
		if !slices.Contains(run, leader) {
			return errors.New("the leader is not running")
		}
		return nil
	})
	return leader, err
}

// leaderAmong waits until the given nodes agree on a leader among them.
func (c *cluster) leaderAmong(ctx context.Context, nodes []*proc, timeout time.Duration) (*proc, error) {
	var leader *proc
	err := poll(ctx, timeout, func() error {
		var err error
		if leader, err = c.agreedLeader(ctx, nodes); err != nil {
			return err
		}
		if !slices.Contains(nodes, leader) {
			return fmt.Errorf("the leader is node %d, not one of these", leader.uid)
		}
		return nil
	})
	return leader, err
}

// agreedLeader is the leader every one of nodes names (nil for no nodes),
// or an error saying why they name none.
func (c *cluster) agreedLeader(ctx context.Context, nodes []*proc) (*proc, error) {
	var leader *proc
	for _, n := range nodes {
		uid, err := c.leaderSeenBy(ctx, n)
		if err != nil {
			return nil, err
		}
		if leader != nil && leader.uid != uid {
			return nil, errors.New("nodes disagree on the leader")
		}
		leader = c.node(uid)
	}
	return leader, nil
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
		var nodes []nodeRecord
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
