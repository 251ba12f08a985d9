package daemon

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"

	"cnm/fsm"
)

// agentGate stands in front of the agent's node-to-node API during a
// graceful stop. While the node drains, calls already running (a shard
// copy onto this node) finish and reads still answer, but new work is
// refused with a retryable 503, so that the drain ends; executors retry
// such calls, after the node is back or on another node.
type agentGate struct {
	mu       sync.Mutex
	draining bool
	running  int           // mutating calls in flight
	idle     chan struct{} // closed when draining and running is 0
}

func newAgentGate() *agentGate { return &agentGate{idle: make(chan struct{})} }

func (g *agentGate) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			h.ServeHTTP(w, r)
			return
		}
		if !g.enter() {
			e := fsm.ErrShuttingDown.With("this node is shutting down; retry once it is back")
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(e.Status())
			_ = json.NewEncoder(w).Encode(e)
			return
		}
		defer g.leave()
		h.ServeHTTP(w, r)
	})
}

func (g *agentGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.draining {
		return false
	}
	g.running++
	return true
}

func (g *agentGate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running--
	if g.draining && g.running == 0 {
		close(g.idle)
	}
}

// drain refuses new work and waits until the work in flight is done or
// ctx ends; false when it ended first.
func (g *agentGate) drain(ctx context.Context) bool {
	g.mu.Lock()
	if !g.draining {
		g.draining = true
		if g.running == 0 {
			close(g.idle)
		}
	}
	g.mu.Unlock()
	select {
	case <-g.idle:
		return true
	case <-ctx.Done():
		return false
	}
}
