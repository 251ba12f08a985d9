package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"
)

// The drill's model of the action table: for each node, one slot per action
// name holding the task id and status a client last could have seen.
// Executors move statuses on their own, so every operation first lets the
// hidden progress happen (any path of executor transitions), then applies
// the operation's effect; the model is nondeterministic where a client
// cannot tell what happened.

var actionNames = []string{"maintenance_on", "maintenance_off", "enslave_node", "remove"}

// Wildcards in model state.
const (
	anyTask     = "*"  // a task whose id the client never learnt
	anyTerminal = "T?" // some terminal status, not yet observed
)

// Executor-driven transitions (a client's cancel makes the others).
var hidden = map[string][]string{
	"queued":     {"starting"},
	"starting":   {"running", "aborted", "failed"},
	"running":    {"completed", "failed", "aborted"},
	"cancelling": {"cancelled"},
}

func terminal(s string) bool {
	return s == "completed" || s == "failed" || s == "cancelled" || s == "aborted" || s == anyTerminal
}

// reachable lists every status the executor can move from to, from included.
func reachable(from string) []string {
	if from == "" {
		return []string{""}
	}
	if from == anyTerminal {
		return []string{"completed", "failed", "cancelled", "aborted"}
	}
	out := []string{from}
	for i := 0; i < len(out); i++ {
		for _, n := range hidden[out[i]] {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

type slot struct {
	Task   string
	Status string
}

// nodeState is the table of one node, indexed like actionNames.
type nodeState [4]slot

// Input is a client operation.
type Input struct {
	Kind   string // submit, cancel, read
	Node   int
	Action string
}

// Output is what the client saw. Unknown: no answer (timeout, connection
// lost, 503): the operation may or may not have taken effect.
type Output struct {
	Unknown  bool
	Code     int
	Task     string
	Status   string
	Progress float64
}

func slotOf(action string) int { return slices.Index(actionNames, action) }

func matches(s slot, task string) bool { return s.Task == anyTask || s.Task == task }

// step returns every state the operation can lead to; none means the
// history cannot be explained.
func step(st nodeState, in Input, out Output) []nodeState {
	i := slotOf(in.Action)
	if i < 0 {
		return nil
	}
	switch in.Kind {
	case "read":
		return stepRead(st, i, out)
	case "submit":
		return stepSubmit(st, i, out)
	case "cancel":
		return stepCancel(st, i, out)
	}
	return nil
}

// stepRead is step for a read of slot i.
func stepRead(st nodeState, i int, out Output) []nodeState {
	cur := st[i]
	if out.Unknown {
		return []nodeState{st}
	}
	if out.Code == 404 {
		if cur.Status == "" {
			return []nodeState{st}
		}
		return nil
	}
	if out.Code != 200 || cur.Status == "" || !matches(cur, out.Task) || !slices.Contains(reachable(cur.Status), out.Status) {
		return nil
	}
	next := st
	next[i] = slot{Task: out.Task, Status: out.Status}
	return []nodeState{next}
}

// stepSubmit is step for a submit into slot i.
func stepSubmit(st nodeState, i int, out Output) []nodeState {
	var res []nodeState
	switch {
	case out.Unknown:
		res = append(res, st)
		if canSubmit(st) {
			res = append(res, submitted(st, i, anyTask))
		}
	case out.Code == 200:
		if canSubmit(st) {
			res = append(res, submitted(st, i, out.Task))
		}
	case out.Code == 409:
		// Some action on the node is still running: it can stay so.
		for _, s := range st {
			if s.Status != "" && !terminal(s.Status) {
				res = append(res, st)
				break
			}
		}
	default:
		res = append(res, st) // refused before anything was stored
	}
	return res
}

// canSubmit reports whether, after hidden progress, every slot can be
// empty or terminal.
func canSubmit(st nodeState) bool {
	for _, s := range st {
		if s.Status != "" && !slices.ContainsFunc(reachable(s.Status), terminal) {
			return false
		}
	}
	return true
}

// submitted is st once task is queued in slot i: every other action has
// ended by then, in a status the client has not seen.
func submitted(st nodeState, i int, task string) nodeState {
	next := st
	for j, s := range next {
		if s.Status != "" && !terminal(s.Status) {
			next[j].Status = anyTerminal
		}
	}
	next[i] = slot{Task: task, Status: "queued"}
	return next
}

// stepCancel is step for a cancel of slot i.
func stepCancel(st nodeState, i int, out Output) []nodeState {
	cur := st[i]
	if out.Unknown {
		res := []nodeState{st}
		for _, h := range reachable(cur.Status) {
			if h == "" {
				continue
			}
			res = append(res, cancelled(st, i, h))
		}
		return res
	}
	if out.Code == 404 {
		if cur.Status == "" {
			return []nodeState{st}
		}
		return nil
	}
	if out.Code != 200 || cur.Status == "" || !matches(cur, out.Task) {
		return nil
	}
	var res []nodeState
	for _, h := range reachable(cur.Status) {
		if after := cancelAnswer(h); after == out.Status || (terminal(h) && h == out.Status) {
			next := cancelled(st, i, h)
			if !terminal(h) {
				next[i].Task = out.Task
			}
			res = append(res, next)
		}
	}
	return res
}

// cancelAnswer is the status a cancel answers with for an action in h.
func cancelAnswer(h string) string {
	switch h {
	case "queued":
		return "cancelled"
	case "starting", "running", "cancelling":
		return "cancelling"
	}
	return h // terminal: the record is forgotten and shown as it was
}

func cancelled(st nodeState, i int, h string) nodeState {
	next := st
	if terminal(h) {
		next[i] = slot{}
	} else {
		next[i] = slot{Task: st[i].Task, Status: cancelAnswer(h)}
	}
	return next
}

// actionModel is the porcupine model, partitioned by node.
var actionModel = (&porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[int][]porcupine.Operation{}
		var keys []int
		for _, op := range h {
			n := op.Input.(Input).Node
			if _, ok := by[n]; !ok {
				keys = append(keys, n)
			}
			by[n] = append(by[n], op)
		}
		slices.Sort(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() []interface{} { return []interface{}{nodeState{}} },
	Step: func(state, input, output interface{}) []interface{} {
		next := step(state.(nodeState), input.(Input), output.(Output))
		out := make([]interface{}, len(next))
		for i, n := range next {
			out[i] = n
		}
		return out
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(Input), output.(Output)
		if out.Unknown {
			return fmt.Sprintf("%s %s@%d -> ?", in.Kind, in.Action, in.Node)
		}
		return fmt.Sprintf("%s %s@%d -> %d %s %s", in.Kind, in.Action, in.Node, out.Code, shortTask(out.Task), out.Status)
	},
	DescribeState: func(state interface{}) string {
		var b strings.Builder
		for i, s := range state.(nodeState) {
			if s.Status != "" {
				fmt.Fprintf(&b, "%s=%s:%s ", actionNames[i], shortTask(s.Task), s.Status)
			}
		}
		return b.String()
	},
}).ToModel()

func shortTask(t string) string {
	if len(t) > 8 {
		return t[:8]
	}
	return t
}
