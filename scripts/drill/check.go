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

// check waits for the cluster to settle, reads every action record, and
// checks the history and the final state. It returns the violations.
func check(ctx context.Context, c *cluster, rec *recorder) []string {
	var problems []string
	// Every action must reach a terminal status.
	err := poll(ctx, 3*time.Minute, func() error {
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
	if err != nil {
		problems = append(problems, "actions did not finish: "+err.Error())
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

// checkShards: no shard lost or duplicated, one master per slot range,
// never a master with its own replica, and each node's files are exactly
// its shards.
func (c *cluster) checkShards(ctx context.Context) []string {
	var problems []string
	var shards []shardView
	st, b, err := c.do(ctx, c.nodes[0], "GET", "/v1/shards", nil)
	if err != nil || st != 200 || json.Unmarshal(b, &shards) != nil {
		return []string{fmt.Sprintf("read shards: %v %d", err, st)}
	}
	if len(shards) != 12 {
		problems = append(problems, fmt.Sprintf("%d shards, want 12 (6 masters, 6 replicas)", len(shards)))
	}
	pairs := map[string][]shardView{}
	for _, s := range shards {
		pairs[s.Slots] = append(pairs[s.Slots], s)
	}
	for slots, p := range pairs {
		masters := 0
		for _, s := range p {
			if s.Role == "master" {
				masters++
			}
		}
		if len(p) != 2 || masters != 1 || p[0].NodeUID == p[1].NodeUID {
			problems = append(problems, fmt.Sprintf("slots %s: %+v", slots, p))
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
			entries, _ := os.ReadDir(filepath.Join(n.dir, "shards"))
			for _, e := range entries {
				if id, ok := strings.CutSuffix(e.Name(), ".data"); ok {
					got = append(got, id)
				}
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(want, got) {
				return fmt.Errorf("node %d holds shard files %v, the state assigns %v", n.uid, got, want)
			}
		}
		return nil
	})
	if err != nil {
		problems = append(problems, err.Error())
	}
	return problems
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
