package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// span is when an action ran, as its record says.
type span struct {
	node        string
	action      string
	start, end  int64 // ms, from the record; end 0 while running
	seenRunning int64 // ms, when a poll last saw it not finished
	status      string
	failure     string // error_code: error_message of a failed action
}

// monitor keeps every action record it sees, polling the action list
// through a random node, so that records later replaced by new
// submissions are still checked. Its reads are linearizable: a stale read
// from a lagging node would show an action still running after it ended.
type monitor struct {
	mu    sync.Mutex
	tasks map[string]span
	steps map[string]*stepTrack
}

func newMonitor() *monitor { return &monitor{tasks: map[string]span{}, steps: map[string]*stepTrack{}} }

// stepTrack is what the polls saw of one action's steps. The API times
// steps only in whole seconds (the events "step i/n: what it did"), so
// the polls time them: a step ran after the last poll that showed it not
// begun and before the first that showed it done (ms), which holds its
// run to within a poll (200 ms); the events say what each step did.
type stepTrack struct {
	before, after []int64
	message       map[int]string // by step index
}

type actionEvent struct {
	Time    int64  `json:"time"` // s
	Message string `json:"message"`
}

var stepDone = regexp.MustCompile(`^step (\d+)/\d+: (.*)$`)

// see records one poll at now (ms) of an action of n steps, done of them
// done; ended is when it ended (0 while it runs), started when it began
// (0 before).
func (t *stepTrack) see(n, done int, now, started, ended int64, events []actionEvent) {
	if started == 0 {
		started = now // not begun: no step has
	}
	for len(t.before) < n {
		t.before = append(t.before, started)
		t.after = append(t.after, 0)
	}
	for i := range t.before {
		switch {
		case i > done:
			t.before[i] = now
		case i < done && t.after[i] == 0:
			t.after[i] = now
		case i == done && ended > 0 && t.after[i] == 0:
			t.after[i] = ended
		}
	}
	if t.message == nil {
		t.message = map[int]string{}
	}
	for _, e := range events {
		if g := stepDone.FindStringSubmatch(e.Message); g != nil {
			if i, err := strconv.Atoi(g[1]); err == nil {
				t.message[i-1] = g[2]
			}
		}
	}
}

// stepRun is one step an action carried out: what its commit said, and
// when it ran (ms).
type stepRun struct {
	message  string
	from, to int64
}

// steps are the steps seen done, with what they did, in order.
func (t *stepTrack) steps() []stepRun {
	var out []stepRun
	for i := range t.before {
		if msg, ok := t.message[i]; ok && t.after[i] != 0 {
			out = append(out, stepRun{message: msg, from: t.before[i], to: t.after[i]})
		}
	}
	return out
}

func (m *monitor) run(ctx context.Context, c *cluster) {
	for i := 0; ctx.Err() == nil; i++ {
		run := c.running()
		if len(run) > 0 {
			m.poll(ctx, c, run[i%len(run)])
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (m *monitor) poll(ctx context.Context, c *cluster, via *proc) {
	st, b, err := c.do(ctx, via, "GET", "/v1/nodes/actions", nil)
	if err != nil || st != 200 {
		return
	}
	var v struct {
		Actions []struct {
			TaskID     string `json:"task_id"`
			NodeUID    string `json:"node_uid"`
			Action     string `json:"action"`
			Status     string `json:"status"`
			ErrorCode  string `json:"error_code"`
			ErrorMsg   string `json:"error_message"`
			Additional struct {
				StartMS int64         `json:"start_time_ms"`
				EndMS   int64         `json:"end_time_ms"`
				DoneOps int           `json:"done_ops"`
				Steps   []string      `json:"steps"`
				Events  []actionEvent `json:"events"`
			} `json:"additional_info"`
		} `json:"actions"`
	}
	if json.Unmarshal(b, &v) != nil {
		return
	}
	now := time.Now().UnixMilli()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range v.Actions {
		s := m.tasks[a.TaskID]
		s.node, s.action, s.status = a.NodeUID, a.Action, a.Status
		s.start = max(s.start, a.Additional.StartMS)
		s.end = max(s.end, a.Additional.EndMS)
		if !terminal(a.Status) {
			s.seenRunning = now
		}
		if a.Status == "failed" {
			s.failure = a.ErrorCode + ": " + a.ErrorMsg
		}
		m.tasks[a.TaskID] = s
		t := m.steps[a.TaskID]
		if t == nil {
			t = &stepTrack{}
			m.steps[a.TaskID] = t
		}
		ended := int64(0)
		if terminal(a.Status) {
			ended = max(a.Additional.EndMS, s.start)
		}
		t.see(len(a.Additional.Steps), a.Additional.DoneOps, now, s.start, ended, a.Additional.Events)
	}
}

// overlaps reports pairs of actions of one node that ran at the same time.
func (m *monitor) overlaps() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	by := map[string][]string{}
	for id, s := range m.tasks {
		if s.start > 0 {
			by[s.node] = append(by[s.node], id)
		}
	}
	var problems []string
	for node, ids := range by {
		slices.Sort(ids)
		for i, a := range ids {
			for _, b := range ids[i+1:] {
				x, y := m.tasks[a], m.tasks[b]
				// A record replaced before a poll saw it end (only after it
				// ended, in a correct cluster) is known to have run until it
				// was last seen running.
				xe, ye := endOr(x), endOr(y)
				if x.start < ye && y.start < xe {
					problems = append(problems, fmt.Sprintf("node %s ran %s (task %s, %d-%d ms) and %s (task %s, %d-%d ms) at once",
						node, x.action, shortTask(a), x.start, x.end, y.action, shortTask(b), y.start, y.end))
				}
			}
		}
	}
	return problems
}

// actionWindows are the runs of every action seen, from its start to its
// terminal status, in ns.
func (m *monitor) actionWindows() []window {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []window
	for id, s := range m.tasks {
		if s.start == 0 {
			continue
		}
		out = append(out, window{kind: s.action, label: fmt.Sprintf("%s of node %s (task %s)", s.action, s.node, shortTask(id)),
			from: s.start * 1e6, to: endOr(s) * 1e6})
	}
	return out
}

var (
	failoverDone = regexp.MustCompile(`^shard (\S+) failed over to its replica`)
	moveDone     = regexp.MustCompile(`^shard (\S+) moved from node`)
	rebindDone   = regexp.MustCompile(`^endpoint (\d+):\S+ rebound to node`)
)

// stepWindows are the steps that switched a database's masters over
// (failovers), moved one of its shards (a moved master is switched over
// at the end of its copy), or rebound its endpoint, each for the one
// database it concerns (a failover or a move, only the writes to the
// shard's slots); shards are the shards by uid.
func (m *monitor) stepWindows(shards map[string]shardView) []window {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []window
	for id, t := range m.steps {
		for _, st := range t.steps() {
			w := window{label: fmt.Sprintf("%s (task %s)", st.message, shortTask(id)), from: st.from * 1e6, to: st.to * 1e6}
			if g := failoverDone.FindStringSubmatch(st.message); g != nil {
				w.kind, w.db, w.slots = "failover step", shards[g[1]].BDB, shards[g[1]].Slots
			} else if g := moveDone.FindStringSubmatch(st.message); g != nil {
				w.kind, w.db, w.slots = "move step", shards[g[1]].BDB, shards[g[1]].Slots
			} else if g := rebindDone.FindStringSubmatch(st.message); g != nil {
				w.kind = "endpoint rebind step"
				w.db, _ = strconv.Atoi(g[1])
			}
			if w.kind != "" && w.db != 0 {
				out = append(out, w)
			}
		}
	}
	return out
}

func endOr(s span) int64 {
	if s.end != 0 {
		return s.end
	}
	return s.seenRunning
}

// delayWords mark a failure whose cause was only a delay: a node that did
// not answer for a while, a deadline that ran out while waiting, a disk
// that was full. The faults the drill makes pass; an action must wait them
// out, never fail for them (SPEC §6).
var delayWords = []string{"does not answer", "did not answer", "i/o timeout", "connection refused", "context deadline exceeded",
	"deadline passed", "insufficient_storage", "storage_fault", "EOF", "no_quorum", "leadership lost"}

// delayFailures reports the actions that failed for a delay.
func (m *monitor) delayFailures() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var problems []string
	for id, s := range m.tasks {
		if s.failure == "" {
			continue
		}
		for _, w := range delayWords {
			if strings.Contains(s.failure, w) {
				problems = append(problems, fmt.Sprintf("%s of node %s (task %s) failed for a delay: %s", s.action, s.node, shortTask(id), s.failure))
				break
			}
		}
	}
	slices.Sort(problems)
	return problems
}
