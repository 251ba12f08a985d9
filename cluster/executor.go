package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"cnm/agent"
	"cnm/fsm"
	"cnm/raftnode"
)

// ActionRaft is what executors need of the raft member.
type ActionRaft interface {
	Applier
	ID() int
	TransferLeadership(ctx context.Context) error
	TransferLeadershipTo(ctx context.Context, uid int, raftAddr string) error
	RemoveServer(ctx context.Context, uid int) error
	IsMember(uid int) (bool, error)
	Servers() ([]raftnode.Server, error)
}

// Agents moves shards between nodes (agent.Client).
type Agents interface {
	Copy(ctx context.Context, target string, spec agent.Spec, source string, op agent.Op) (agent.Info, error)
	Info(ctx context.Context, addr, uid string) (agent.Info, error)
	Drop(ctx context.Context, addr, uid string) error
	// Promote makes the replica uid at addr the master in place of the old
	// master req names, holding the old master's writes back meanwhile.
	Promote(ctx context.Context, addr, uid string, req agent.PromoteRequest) (agent.Info, error)
}

// Executor runs the node actions while this node leads: it claims each
// unfinished action for its term, plans it if new, and runs its steps one
// by one, committing each step's effect before the next. A new leader
// resumes every action at its first unfinished step.
type Executor struct {
	FSM    *fsm.FSM
	Raft   ActionRaft
	Agents Agents
	Log    *slog.Logger
	// Now is the wall clock that stamps times into the record (tests may
	// fix it). Deadlines never depend on it: they are measured with
	// time.Since on this process's monotonic clock.
	Now func() time.Time
	// CallTimeout caps each small agent call (Info, Drop); zero means
	// DefaultCallTimeout. Copies are bounded by the action's budget only.
	CallTimeout time.Duration
	// Metrics, if set, record each committed step's time and the bytes
	// each move copied.
	Metrics *StepMetrics
}

// DefaultCallTimeout caps an agent call that moves no shard data.
const DefaultCallTimeout = 5 * time.Second

// errDeadline: the action's time budget ran out during a step.
var errDeadline = errors.New("deadline passed")

// small bounds ctx for one small agent call.
func (e *Executor) small(ctx context.Context) (context.Context, context.CancelFunc) {
	d := e.CallTimeout
	if d <= 0 {
		d = DefaultCallTimeout
	}
	return context.WithTimeout(ctx, d)
}

func (e *Executor) info(ctx context.Context, addr, uid string) (agent.Info, error) {
	ctx, cancel := e.small(ctx)
	defer cancel()
	return e.Agents.Info(ctx, addr, uid)
}

func (e *Executor) drop(ctx context.Context, addr, uid string) error {
	ctx, cancel := e.small(ctx)
	defer cancel()
	return e.Agents.Drop(ctx, addr, uid)
}

func (e *Executor) apply(ctx context.Context, payload any) (*fsm.Result, error) {
	cmd, err := fsm.Encode(payload)
	if err != nil {
		return nil, err
	}
	return e.Raft.Apply(ctx, cmd)
}

// apiAddr is node's API address as the state says now: calls made after a
// step ran, or by a retried attempt, must see a node that left meanwhile.
func (e *Executor) apiAddr(node int) string {
	var addr string
	e.FSM.Read(func(st *fsm.State, _ uint64) { addr = apiAddrIn(st, node) })
	return addr
}

// apiAddrIn is node's API address in st, empty once it left the cluster.
func apiAddrIn(st *fsm.State, node int) string {
	if n, ok := st.Nodes[node]; ok {
		return n.APIAddr
	}
	return ""
}

// cancelling reports whether the action was asked to cancel.
func (e *Executor) cancelling(task string) bool {
	var yes bool
	e.FSM.Read(func(s *fsm.State, _ uint64) {
		if a := s.ActionByTask(task); a != nil {
			yes = a.Status == fsm.StatusCancelling
		}
	})
	return yes
}

// targetIsBack reports whether node would take shards again once the
// leader hears from it: it is only marked down (or not yet active), and
// accepts shards otherwise.
func (e *Executor) targetIsBack(node int) bool {
	var ok bool
	e.FSM.Read(func(s *fsm.State, _ uint64) {
		n, exists := s.Nodes[node]
		ok = exists && n.Status != fsm.NodeActive && n.AcceptServers && !n.Maintenance && !n.Removing && !s.Emptying(node)
	})
	return ok
}

// setWaiting records in the action why its step cannot go on yet (SPEC
// §4.6). The state records a reason only when it changes, so a long wait
// writes one event; a failed write is only logged, as the wait goes on.
func (e *Executor) setWaiting(ctx context.Context, a *fsm.Action, reason string) {
	if a.Waiting == reason {
		return
	}
	if _, err := e.apply(ctx, &fsm.SetWaiting{TaskID: a.TaskID, Term: a.Term, Index: a.Done, Reason: reason, Time: e.Now().Unix()}); err != nil {
		e.Log.Debug("record waiting", "task_id", a.TaskID, "error", err)
		return
	}
	a.Waiting = reason
	e.Log.Info("action waits", "task_id", a.TaskID, "step", a.Done+1, "reason", reason)
}

// pause waits d or until ctx ends.
func (e *Executor) pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retry runs fn until it succeeds, ctx ends, or the action's deadline
// passes; nodes that do not answer are retried with backoff (SPEC §4.6).
// From the second failure on, the action records what it waits for.
func (e *Executor) retry(ctx context.Context, a *fsm.Action, what string, fn func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	for failures := 0; ; failures++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if failures == 1 {
			e.setWaiting(ctx, a, fmt.Sprintf("%s: %v", what, err))
		}
		if e.cancelling(a.TaskID) && (a.Done >= len(a.Steps) || !runnerOf(a.Steps[a.Done].Kind).holdsCancel) {
			// A step that waits (a node down) would hold a cancel until
			// the node came back or the deadline passed.
			return errCancelling
		}
		// A domain error will not pass by retrying.
		var fe *fsm.Error
		if errors.As(err, &fe) || errors.Is(err, agent.ErrStaleTerm) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, errors.Join(ctx.Err(), err))
		}
		// ctx ends with the action's budget (measured on the monotonic
		// clock): a retry that cannot fit in it fails now.
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < backoff {
			return fmt.Errorf("%s: %w: %w", what, errDeadline, err)
		}
		e.Log.Debug("step retry", "task_id", a.TaskID, "what", what, "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, errors.Join(ctx.Err(), err))
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}
