package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"time"

	"github.com/anishathalye/porcupine"
)

// recorder keeps the history of client operations with invocation and
// return times.
type recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

func newRecorder() *recorder { return &recorder{start: time.Now()} }

func (r *recorder) now() int64 { return time.Since(r.start).Nanoseconds() }

func (r *recorder) add(client int, in Input, out Output, call, ret int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret})
}

func (r *recorder) acked() int {
	n := 0
	for _, op := range r.ops {
		if op.Input.(Input).Kind == "submit" && op.Output.(Output).Code == 200 {
			n++
		}
	}
	return n
}

func (r *recorder) unknown() int {
	n := 0
	for _, op := range r.ops {
		if op.Output.(Output).Unknown {
			n++
		}
	}
	return n
}

// workloadActions are what clients submit: they move shards and come back,
// so a long drill keeps the same cluster size.
var workloadActions = []string{"maintenance_on", "maintenance_off", "enslave_node"}

// workload runs clients that submit, cancel and read actions through
// random nodes until ctx ends.
func (r *recorder) workload(ctx context.Context, c *cluster, clients int, seed uint64) {
	var wg sync.WaitGroup
	for id := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(id)))
			for ctx.Err() == nil {
				r.one(ctx, c, id, rng)
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(50+rng.IntN(200)) * time.Millisecond):
				}
			}
		}()
	}
	wg.Wait()
}

func (r *recorder) one(ctx context.Context, c *cluster, id int, rng *rand.Rand) {
	target := 1 + rng.IntN(len(c.nodes))
	if rng.IntN(100) < 15 {
		r.burst(ctx, c, id, target)
		return
	}
	action := workloadActions[rng.IntN(len(workloadActions))]
	var in Input
	switch p := rng.IntN(100); {
	case p < 45:
		in = Input{Kind: "read", Node: target, Action: action}
	case p < 80:
		in = Input{Kind: "submit", Node: target, Action: action}
	default:
		in = Input{Kind: "cancel", Node: target, Action: action}
	}
	via := c.nodes[rng.IntN(len(c.nodes))]
	r.exec(context.WithoutCancel(ctx), c, id, via, in)
}

// burst submits every workload action on one node at once, each through
// another node, then reads them all: two of them running together is what
// the action table must never allow.
func (r *recorder) burst(ctx context.Context, c *cluster, id, target int) {
	ctx = context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for i, a := range workloadActions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.exec(ctx, c, 100*(id+1)+i, c.nodes[i%len(c.nodes)], Input{Kind: "submit", Node: target, Action: a})
		}()
	}
	wg.Wait()
	for i, a := range workloadActions {
		r.exec(ctx, c, 100*(id+1)+i, c.nodes[(i+1)%len(c.nodes)], Input{Kind: "read", Node: target, Action: a})
	}
}

// exec performs one operation and records it. An answer that leaves the
// outcome open (no answer, 503) is recorded as unknown.
func (r *recorder) exec(ctx context.Context, c *cluster, id int, via *proc, in Input) Output {
	method := map[string]string{"read": "GET", "submit": "POST", "cancel": "DELETE"}[in.Kind]
	path := fmt.Sprintf("/v1/nodes/%d/actions/%s", in.Node, in.Action)
	var body any
	if in.Kind == "submit" {
		body = map[string]any{}
	}
	call := r.now()
	st, b, err := c.do(ctx, via, method, path, body)
	ret := r.now()
	out := Output{Code: st}
	switch {
	case err != nil && errors.Is(err, syscall.ECONNREFUSED):
		// Nothing reached the node: no effect.
		out = Output{Code: -1}
		if in.Kind != "submit" {
			out.Unknown = true
		}
	case err != nil, st >= 500:
		out = Output{Unknown: true}
	case st == 200:
		var a struct {
			TaskID   string  `json:"task_id"`
			Status   string  `json:"status"`
			Progress float64 `json:"progress"`
		}
		_ = json.Unmarshal(b, &a)
		out.Task, out.Status, out.Progress = a.TaskID, a.Status, a.Progress
	}
	if out.Unknown {
		ret = -1 // fixed at the end of the history
	}
	r.add(id, in, out, call, ret)
	return out
}
