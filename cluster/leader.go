package cluster

import (
	"context"
	"log/slog"
	"sync"
)

// Leadership is what the leader loop needs of the raft member: the term in
// which this node is a ready leader (a barrier of that term is applied), and
// a channel closed at the next change.
type Leadership interface {
	Leadership() (term uint64, ready bool, changed <-chan struct{})
}

// Worker is leader-only work. Run is called once per leadership term and must
// return soon after ctx is cancelled; the loop waits for it before any worker
// of a later term starts, so two terms' workers never overlap on this node.
type Worker interface {
	Name() string
	Run(ctx context.Context, term uint64)
}

// LeaderLoop starts the workers when this node becomes a ready leader and
// stops them, waiting for each, when it is not.
type LeaderLoop struct {
	raft    Leadership
	workers []Worker
	log     *slog.Logger
}

// NewLeaderLoop makes a loop over the given workers.
func NewLeaderLoop(r Leadership, log *slog.Logger, workers ...Worker) *LeaderLoop {
	return &LeaderLoop{raft: r, workers: workers, log: log.With("component", "leader_loop")}
}

// Run drives the workers until ctx ends; it returns once every worker it
// started has returned.
func (l *LeaderLoop) Run(ctx context.Context) {
	var (
		running uint64 // term whose workers run; 0 when none
		cancel  = func() {}
		wg      sync.WaitGroup
	)
	stop := func() {
		if running == 0 {
			return
		}
		cancel()
		wg.Wait()
		l.log.Info("leader workers stopped", "term", running)
		running = 0
	}
	defer stop()
	for {
		term, ready, changed := l.raft.Leadership()
		if running != 0 && (!ready || term != running) {
			stop()
		}
		if ready && running == 0 {
			wctx, wcancel := context.WithCancel(ctx)
			cancel = wcancel
			running = term
			for _, w := range l.workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					w.Run(wctx, term)
				}()
			}
			l.log.Info("leader workers started", "term", term, "workers", len(l.workers))
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}
