package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// waitTerminal waits up to 3 minutes until every action has reached a
// terminal status.
func waitTerminal(ctx context.Context, c *cluster) error {
	return poll(ctx, 3*time.Minute, func() error {
		st, b, err := c.do(ctx, c.running()[0], "GET", "/v1/nodes/actions", nil)
		if err != nil || st != 200 {
			return fmt.Errorf("list actions: %v %d", err, st)
		}
		var v struct {
			Actions []struct {
				NodeUID string `json:"node_uid"`
				Action  string `json:"action"`
				Status  string `json:"status"`
			} `json:"actions"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		for _, a := range v.Actions {
			if !terminal(a.Status) {
				return fmt.Errorf("%s on node %s is still %s", a.Action, a.NodeUID, a.Status)
			}
		}
		return nil
	})
}

// check reads every action record, once waitTerminal has returned
// settled, and checks the history and the final state. It returns the
// violations.
func check(ctx context.Context, c *cluster, rec *recorder, settled error) []string {
	var problems []string
	if settled != nil {
		problems = append(problems, "actions did not finish: "+settled.Error())
	}
	// Final reads join the history: an acknowledged action that vanished
	// makes it unexplainable.
	for _, n := range c.nodes {
		for _, a := range workloadActions {
			rec.exec(ctx, c, 1000, c.nodes[0], Input{Kind: "read", Node: n.uid, Action: a})
		}
	}
	end := rec.now() + 1
	history := make([]porcupine.Operation, len(rec.ops))
	for i, op := range rec.ops {
		if op.Return < 0 {
			op.Return = end
		}
		history[i] = op
	}
	res, info := porcupine.CheckOperationsVerbose(actionModel, history, 2*time.Minute)
	switch res {
	case porcupine.Illegal:
		path := filepath.Join(c.dir, "history.html")
		if f, err := os.Create(path); err == nil {
			_ = porcupine.Visualize(actionModel, info, f)
			f.Close()
		}
		problems = append(problems, "the history is not linearizable (see "+path+")")
	case porcupine.Unknown:
		problems = append(problems, "the linearizability check timed out")
	}
	problems = append(problems, progressMonotone(history)...)
	problems = append(problems, c.checkShards(ctx)...)
	problems = append(problems, c.checkOps()...)
	return problems
}

// progressMonotone: a read that began after another read of the same task
// returned never shows less progress.
func progressMonotone(h []porcupine.Operation) []string {
	type read struct {
		call, ret int64
		p         float64
	}
	by := map[string][]read{}
	for _, op := range h {
		in, out := op.Input.(Input), op.Output.(Output)
		if in.Kind == "read" && out.Code == 200 {
			by[out.Task] = append(by[out.Task], read{op.Call, op.Return, out.Progress})
		}
	}
	var problems []string
	for task, rs := range by {
		for _, a := range rs {
			for _, b := range rs {
				if a.ret < b.call && b.p < a.p {
					problems = append(problems, fmt.Sprintf("progress of task %s went down from %.1f to %.1f", task, a.p, b.p))
				}
			}
		}
	}
	return problems
}

type shardView struct {
	UID     string `json:"uid"`
	BDB     int    `json:"bdb_uid"`
	NodeUID string `json:"node_uid"`
	Role    string `json:"role"`
	Slots   string `json:"assigned_slots"`
}

// checkShards: no shard lost or duplicated, one master per slot range of
// each database, a replica of each replicated database's master on
// another node, and each node's shard files (file backend) or shard
// directories (redis backend, each with its process serving) exactly its
// shards.
func (c *cluster) checkShards(ctx context.Context) []string {
	var problems []string
	var shards []shardView
	st, b, err := c.do(ctx, c.nodes[0], "GET", "/v1/shards", nil)
	if err != nil || st != 200 || json.Unmarshal(b, &shards) != nil {
		return []string{fmt.Sprintf("read shards: %v %d", err, st)}
	}
	want := 0
	for _, d := range c.dbs {
		want += d.spec.shards * copiesOf(d.spec)
	}
	if len(shards) != want {
		problems = append(problems, fmt.Sprintf("%d shards, want %d (the masters and replicas of %d databases)", len(shards), want, len(c.dbs)))
	}
	for _, d := range c.dbs {
		pairs := map[string][]shardView{}
		for _, s := range shards {
			if s.BDB == d.uid {
				pairs[s.Slots] = append(pairs[s.Slots], s)
			}
		}
		if len(pairs) != d.spec.shards {
			problems = append(problems, fmt.Sprintf("db %s: %d slot ranges, want %d", d.spec.name, len(pairs), d.spec.shards))
		}
		for slots, p := range pairs {
			masters := 0
			for _, s := range p {
				if s.Role == "master" {
					masters++
				}
			}
			if len(p) != copiesOf(d.spec) || masters != 1 || (len(p) == 2 && p[0].NodeUID == p[1].NodeUID) {
				problems = append(problems, fmt.Sprintf("db %s slots %s: %+v", d.spec.name, slots, p))
			}
		}
	}
	err = poll(ctx, 30*time.Second, func() error {
		for _, n := range c.nodes {
			var want, got []string
			for _, s := range shards {
				if s.NodeUID == strconv.Itoa(n.uid) {
					want = append(want, s.UID)
				}
			}
			if c.backend == backendRedis {
				for _, p := range shardProcs(n.dir) {
					got = append(got, filepath.Base(p.dir))
					if !isRedisServer(p.pid) {
						return fmt.Errorf("node %d: shard %s's process %d does not run", n.uid, p.uid, p.pid)
					}
					if err := serves(n.host, p.port); err != nil {
						return fmt.Errorf("node %d: shard %s does not serve on port %d: %v", n.uid, p.uid, p.port, err)
					}
				}
			} else {
				entries, _ := os.ReadDir(filepath.Join(n.dir, "shards"))
				for _, e := range entries {
					if id, ok := strings.CutSuffix(e.Name(), ".data"); ok {
						got = append(got, id)
					}
				}
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(want, got) {
				return fmt.Errorf("node %d holds shards %v, the state assigns %v", n.uid, got, want)
			}
		}
		return nil
	})
	if err != nil {
		problems = append(problems, err.Error())
	}
	return problems
}

// copiesOf is how many shards each slot range of a database has.
func copiesOf(s dbSpec) int {
	if s.replication {
		return 2
	}
	return 1
}

// checkOps reads every agent's op log: once an agent has carried out an
// action's step for one leader's term, it must never carry out a step of
// that action for an older term (a deposed leader acting after its
// successor did). A new leader may copy again what the old one copied —
// each term's copy is its own — but only after, never interleaved.
func (c *cluster) checkOps() []string {
	var problems []string
	for _, n := range c.nodes {
		f, err := os.Open(filepath.Join(n.dir, "agent-ops.jsonl"))
		if err != nil {
			continue
		}
		newest := map[string]uint64{} // task → newest term seen so far
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var op struct {
				TaskID string `json:"task_id"`
				Step   int    `json:"step"`
				Term   uint64 `json:"term"`
			}
			if json.Unmarshal(sc.Bytes(), &op) != nil || op.TaskID == "" {
				continue
			}
			if op.Term < newest[op.TaskID] {
				problems = append(problems, fmt.Sprintf("task %s step %d on node %d was carried out under term %d after term %d had acted",
					op.TaskID, op.Step+1, n.uid, op.Term, newest[op.TaskID]))
			}
			newest[op.TaskID] = max(newest[op.TaskID], op.Term)
		}
		f.Close()
	}
	return problems
}
