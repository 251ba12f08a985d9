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

// Name implements Worker.
func (e *Executor) Name() string { return "executor" }

// errYielded: this leader handed leadership over; the next one resumes.
var errYielded = errors.New("leadership handed over")

// errCancelling: the action was cancelled while its step waited; the step
// is given up, and the action ends cancelled.
var errCancelling = errors.New("action cancelled while its step waited")

// Run starts a runner per unfinished action and waits for all of them when
// ctx ends.
func (e *Executor) Run(ctx context.Context, term uint64) {
	if e.Now == nil {
		e.Now = time.Now
	}
	running := map[string]bool{}
	done := make(chan string)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		changed := e.FSM.Changed()
		var todo []string
		e.FSM.Read(func(st *fsm.State, _ uint64) {
			for _, a := range st.AllActions() {
				if !fsm.Terminal(a.Status) && !running[a.TaskID] {
					todo = append(todo, a.TaskID)
				}
			}
		})
		for _, id := range todo {
			running[id] = true
			go func() {
				e.run(ctx, term, id)
				done <- id
			}()
		}
		select {
		case <-ctx.Done():
			for len(running) > 0 {
				delete(running, <-done)
			}
			return
		case id := <-done:
			delete(running, id)
		case <-changed:
		case <-tick.C:
		}
	}
}

func (e *Executor) apply(ctx context.Context, payload any) (*fsm.Result, error) {
	cmd, err := fsm.Encode(payload)
	if err != nil {
		return nil, err
	}
	return e.Raft.Apply(ctx, cmd)
}

func (e *Executor) action(id string) (a fsm.Action, ok bool) {
	e.FSM.Read(func(st *fsm.State, _ uint64) {
		if p := st.ActionByTask(id); p != nil {
			a, ok = *p, true
		}
	})
	return a, ok
}

func (e *Executor) run(ctx context.Context, term uint64, id string) {
	log := e.Log.With("task_id", id, "term", term)
	if _, err := e.apply(ctx, &fsm.ClaimAction{TaskID: id, Term: term, Leader: e.Raft.ID(), Time: e.Now().Unix(), TimeMS: e.Now().UnixMilli()}); err != nil {
		log.Debug("claim refused", "error", err)
		return
	}
	// The step in flight is measured from here, on this process's
	// monotonic clock: the time a deposed leader spent on it is not known,
	// and a new leader only delays the action, never fails it at once.
	stepStart := time.Now()
	left := func(a *fsm.Action) time.Duration {
		return a.TimeBudget() - a.Used() - time.Since(stepStart)
	}
	// finish ends the action and reports whether that was committed. Only
	// then may a stray copy be taken back: if it was not (leadership lost),
	// the next leader resumes the step and uses the copy.
	finish := func(status, code, msg string) bool {
		if _, err := e.apply(ctx, &fsm.FinishAction{TaskID: id, Term: term, Status: status, ErrorCode: code, ErrorMessage: msg, Time: e.Now().Unix(), TimeMS: e.Now().UnixMilli()}); err != nil {
			log.Warn("finish action", "status", status, "error", err)
			return false
		}
		log.Info("action finished", "status", status, "error_code", code, "error_message", msg)
		return true
	}
	deadlinePassed := func(a *fsm.Action, why error) {
		st := a.Steps[a.Done]
		msg := fmt.Sprintf("deadline passed at step %d of %d (%s)", a.Done+1, len(a.Steps), describe(st))
		if why != nil {
			msg += ": " + why.Error()
		}
		// A copy made meanwhile is taken back once the end is committed.
		if finish(fsm.StatusFailed, "internal_error", msg) && st.Kind == fsm.StepMove {
			e.dropStray(ctx, st)
		}
	}
	for ctx.Err() == nil {
		a, ok := e.action(id)
		if !ok || fsm.Terminal(a.Status) || a.Term != term {
			return
		}
		switch {
		case a.Status == fsm.StatusCancelling:
			// A move whose copy was made but whose commit was refused (a
			// leadership transfer, say) leaves the copy on its target: once
			// the cancel is committed nobody resumes the move, so take it
			// back.
			if finish(fsm.StatusCancelled, "", "") && a.Done < len(a.Steps) && a.Steps[a.Done].Kind == fsm.StepMove {
				e.dropStray(ctx, a.Steps[a.Done])
			}
			return
		case a.Status == fsm.StatusStarting:
			var steps []fsm.Step
			var perr error
			e.FSM.Read(func(st *fsm.State, _ uint64) { steps, perr = PlanAction(st, &a, e.Now()) })
			steps = ForLeader(steps, a.Action, e.Raft.ID())
			if perr != nil {
				code, msg := "internal_error", perr.Error()
				var pe *PlanError
				if errors.As(perr, &pe) {
					code, msg = pe.Code, pe.Message
				}
				finish(fsm.StatusFailed, code, msg)
				return
			}
			if _, err := e.apply(ctx, &fsm.PlanAction{TaskID: id, Term: term, Steps: steps, Time: e.Now().Unix()}); err != nil {
				log.Warn("store plan", "error", err)
				return
			}
			continue
		case a.Done >= len(a.Steps):
			finish(fsm.StatusCompleted, "", "")
			return
		case left(&a) <= 0 && !e.leftRaft(a.Steps[a.Done]):
			// A node already out of raft is past the point of no return:
			// its removal is committed however late, or it would stay in
			// the node table, neither member nor removed.
			deadlinePassed(&a, nil)
			return
		}
		st := a.Steps[a.Done]
		if st.Kind == fsm.StepFail {
			finish(fsm.StatusFailed, st.Code, st.Message)
			return
		}
		// Every call the step makes ends when the budget does.
		stepCtx, cancel := ctx, context.CancelFunc(func() {})
		if d := left(&a); d > 0 {
			stepCtx, cancel = context.WithTimeout(ctx, d)
		}
		msg, err := e.execute(stepCtx, &a, st)
		timedOut := stepCtx.Err() != nil && ctx.Err() == nil
		cancel()
		if errors.Is(err, errCancelling) {
			// Nothing of the step was committed; a copy it made is
			// taken back, and the next turn ends the action cancelled.
			if st.Kind == fsm.StepMove {
				e.dropStray(ctx, st)
			}
			continue
		}
		if errors.Is(err, errYielded) || errors.Is(err, agent.ErrStaleTerm) || ctx.Err() != nil {
			// Handed over, or an agent already heard from a newer leader:
			// this executor is deposed and stops here.
			return
		}
		if err != nil && (timedOut || errors.Is(err, errDeadline)) {
			// Named after the step that was running, with what it waited
			// for (the node that did not answer).
			deadlinePassed(&a, err)
			return
		}
		if err != nil {
			code, msg := "internal_error", err.Error()
			var pe *PlanError
			if errors.As(err, &pe) {
				code, msg = pe.Code, pe.Message
			}
			if finish(fsm.StatusFailed, code, msg) && st.Kind == fsm.StepMove {
				e.dropStray(ctx, st)
			}
			return
		}
		elapsed := time.Since(stepStart)
		if _, err := e.apply(ctx, &fsm.StepDone{TaskID: id, Term: term, Index: a.Done, Time: e.Now().Unix(), Message: msg, ElapsedMS: elapsed.Milliseconds()}); err != nil {
			if errors.Is(err, fsm.ErrPlacementConflict) && st.Kind == fsm.StepMove {
				// Another action put the shard's pair there meanwhile: send
				// the shard elsewhere and take the stray copy back.
				log.Info("move no longer fits; retargeting", "step", a.Done, "error", err)
				if _, ok := e.retarget(ctx, &a, st, true); ok {
					// After the retarget, so that the old target sees no
					// pending move needing the copy.
					e.dropStray(ctx, st)
					continue
				}
				if !e.targetIsBack(st.To) {
					// Refused for a reason that does not pass by itself (the
					// node stopped accepting shards, or is full): fail as
					// before, and take the stray copy back.
					if finish(fsm.StatusFailed, "insufficient_resources", fmt.Sprintf("shard %s has no home: %v", st.Shard, err)) {
						e.dropStray(ctx, st)
					}
					return
				}
				// No other node takes it now, and the target is only down:
				// a restarted node that liveness has not yet marked active
				// again. The step waits, keeping its copy, until a node can
				// take the shard or the action's deadline passes.
				if a.Waiting == "" { // retarget says why when it can
					e.setWaiting(ctx, &a, fmt.Sprintf("node %d cannot take shard %s yet (%v), and no other node can", st.To, st.Shard, err))
				}
				if e.pause(ctx, time.Second) != nil {
					return
				}
				continue
			}
			if errors.Is(err, fsm.ErrPlacementConflict) && st.Kind == fsm.StepFailover {
				finish(fsm.StatusFailed, "insufficient_resources", fmt.Sprintf("step %d of %d (%s): %v", a.Done+1, len(a.Steps), describe(st), err))
				return
			}
			if errors.Is(err, fsm.ErrInvalidParameter) {
				// The state refuses this step and will refuse it again:
				// fail the action rather than leave it running forever.
				finish(fsm.StatusFailed, "internal_error", fmt.Sprintf("step %d of %d (%s) was refused: %v", a.Done+1, len(a.Steps), describe(st), err))
				return
			}
			log.Warn("commit step", "step", a.Done, "error", err)
			return
		}
		// The next step is measured from here; what is left of this one's
		// measure below a millisecond stays with the next.
		stepStart = stepStart.Add(time.Duration(elapsed.Milliseconds()) * time.Millisecond)
		if st.Kind == fsm.StepMove {
			// The source's agent would drop the copy on its own once it sees
			// the move; asking saves it the wait.
			if addr := e.apiAddr(st.From); addr != "" {
				_ = e.drop(ctx, addr, st.Shard)
			}
		}
	}
}

// leftRaft reports whether st takes a node out of raft that is already out.
func (e *Executor) leftRaft(st fsm.Step) bool {
	if st.Kind != fsm.StepRemoveMember {
		return false
	}
	member, err := e.Raft.IsMember(st.From)
	return err == nil && !member
}

// successor picks the member to hand leadership to among the nodes other
// than from that accept shards and are raft members, by uid, a different
// one at each attempt (the last may have been unreachable); 0 when there is
// none, and raft chooses.
func (e *Executor) successor(from, attempt int) (uid int, raftAddr string) {
	type cand struct {
		uid  int
		addr string
	}
	var cands []cand
	e.FSM.Read(func(s *fsm.State, _ uint64) {
		for _, id := range s.NodeUIDs() {
			if id != from && s.Takes(id) {
				cands = append(cands, cand{id, s.Nodes[id].RaftAddr})
			}
		}
	})
	var members []cand
	for _, c := range cands {
		if m, err := e.Raft.IsMember(c.uid); err == nil && m {
			members = append(members, c)
		}
	}
	if len(members) == 0 {
		return 0, ""
	}
	c := members[attempt%len(members)]
	return c.uid, c.addr
}

// dropStray asks the target of a move that was not committed to drop the
// copy it received. Best effort: if the target does not answer, its agent
// drops the copy itself once no running action needs it.
func (e *Executor) dropStray(ctx context.Context, st fsm.Step) {
	if addr := e.apiAddr(st.To); addr != "" {
		if err := e.drop(ctx, addr, st.Shard); err != nil {
			e.Log.Debug("drop stray copy", "shard", st.Shard, "node", st.To, "error", err)
		}
	}
}

func describe(st fsm.Step) string {
	switch st.Kind {
	case fsm.StepMove:
		return fmt.Sprintf("move shard %s from node %d to node %d", st.Shard, st.From, st.To)
	case fsm.StepFailover:
		return fmt.Sprintf("fail shard %s over to its replica", st.Shard)
	case fsm.StepRebind:
		return fmt.Sprintf("rebind endpoint %s to node %d", st.Endpoint, st.To)
	case fsm.StepWaitPersistence:
		return fmt.Sprintf("wait for shard %s to persist on node %d", st.Shard, st.To)
	case fsm.StepTransferLeader:
		return fmt.Sprintf("move raft leadership off node %d", st.From)
	case fsm.StepRemoveMember:
		return fmt.Sprintf("remove node %d from the cluster", st.From)
	case fsm.StepSnapshot:
		return "record snapshot " + st.Snapshot
	case fsm.StepMaintenance:
		return "stop accepting shards"
	case fsm.StepEndMaintenance:
		return "accept shards again"
	case fsm.StepDeleteSnapshot:
		return "delete snapshot " + st.Snapshot
	}
	return st.Kind
}

func (e *Executor) apiAddr(node int) string {
	var addr string
	e.FSM.Read(func(st *fsm.State, _ uint64) {
		if n, ok := st.Nodes[node]; ok {
			addr = n.APIAddr
		}
	})
	return addr
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
		if e.cancelling(a.TaskID) && (a.Done >= len(a.Steps) || a.Steps[a.Done].Kind != fsm.StepRemoveMember) {
			// A step that waits (a node down) would hold a cancel until
			// the node came back or the deadline passed. Not the removal
			// from raft: an attempt that failed to answer may have done it.
			return errCancelling
		}
		var pe *PlanError
		if errors.As(err, &pe) || errors.Is(err, agent.ErrStaleTerm) {
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

// execute does the work a step needs before its effect can be committed,
// and returns the event message.
func (e *Executor) execute(ctx context.Context, a *fsm.Action, st fsm.Step) (string, error) {
	switch st.Kind {
	case fsm.StepMove:
		return e.move(ctx, a, st)
	case fsm.StepFailover:
		var pairNode int
		var pairUID string
		e.FSM.Read(func(s *fsm.State, _ uint64) {
			if sh, ok := s.Shards[st.Shard]; ok {
				if p := s.PairOf(sh); p != nil {
					pairNode, pairUID = p.NodeUID, p.UID
				}
			}
		})
		if pairUID == "" {
			return fmt.Sprintf("shard %s is gone; nothing to fail over", st.Shard), nil
		}
		var emptying bool
		e.FSM.Read(func(s *fsm.State, _ uint64) { emptying = pairNode != a.NodeUID && s.Emptying(pairNode) })
		if emptying {
			// Another action is emptying the replica's node since this
			// action was planned: never fail a master over onto it.
			return "", &PlanError{Code: "insufficient_resources", Message: fmt.Sprintf("shard %s cannot fail over: its replica %s is on node %d, which another action is emptying", st.Shard, pairUID, pairNode)}
		}
		// The replica must be there and in sync before it takes over.
		err := e.retry(ctx, a, fmt.Sprintf("replica %s on node %d", pairUID, pairNode), func(ctx context.Context) error {
			info, err := e.info(ctx, e.apiAddr(pairNode), pairUID)
			if err != nil {
				return err
			}
			if !info.InSync {
				return fmt.Errorf("replica %s is not in sync", pairUID)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("shard %s failed over to its replica %s on node %d", st.Shard, pairUID, pairNode), nil
	case fsm.StepWaitPersistence:
		err := e.retry(ctx, a, fmt.Sprintf("persistence of shard %s on node %d", st.Shard, st.To), func(ctx context.Context) error {
			info, err := e.info(ctx, e.apiAddr(st.To), st.Shard)
			if err != nil {
				return err
			}
			if !info.Persisted {
				return fmt.Errorf("shard %s has not persisted yet", st.Shard)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("shard %s persisted on node %d", st.Shard, st.To), nil
	case fsm.StepTransferLeader:
		if st.From != e.Raft.ID() {
			return fmt.Sprintf("node %d does not lead", st.From), nil
		}
		// Hand over to a node that takes part fully (active, accepting, not
		// being removed); raft's own choice could be such a node. A failed
		// hand-over (the chosen node slow or just gone) is tried again, with
		// a fresh choice, until the action's deadline.
		attempt := 0
		err := e.retry(ctx, a, "hand raft leadership over", func(ctx context.Context) error {
			to, addr := e.successor(st.From, attempt)
			attempt++
			e.Log.Info("handing leadership over", "task_id", a.TaskID, "to", to)
			if to != 0 {
				return e.Raft.TransferLeadershipTo(ctx, to, addr)
			}
			return e.Raft.TransferLeadership(ctx)
		})
		if err != nil {
			return "", fmt.Errorf("transfer leadership: %w", err)
		}
		return "", errYielded
	case fsm.StepRemoveMember:
		err := e.retry(ctx, a, fmt.Sprintf("remove node %d from raft", st.From), func(ctx context.Context) error {
			member, err := e.Raft.IsMember(st.From)
			if err != nil || !member {
				return err
			}
			// A node that went down during the action would leave the
			// remaining voters without a majority, and the configuration
			// change would block every write until it came back: wait.
			servers, err := e.Raft.Servers()
			if err != nil {
				return err
			}
			var voters []int
			for _, sv := range servers {
				if sv.Voter {
					voters = append(voters, sv.UID)
				}
			}
			var live error
			e.FSM.Read(func(s *fsm.State, _ uint64) { live = LiveMajorityWithout(s, voters, st.From) })
			if live != nil {
				return live
			}
			return e.Raft.RemoveServer(ctx, st.From)
		})
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("node %d left the cluster", st.From), nil
	case fsm.StepRebind:
		return fmt.Sprintf("endpoint %s rebound to node %d", st.Endpoint, st.To), nil
	}
	return describe(st), nil
}

// retarget picks another node for a move whose target went down or stopped
// accepting shards, and records the change (a compare-and-set on the step).
func (e *Executor) retarget(ctx context.Context, a *fsm.Action, st fsm.Step, force bool) (int, bool) {
	var to int
	var perr error
	e.FSM.Read(func(s *fsm.State, _ uint64) {
		if s.Takes(st.To) && !force {
			return
		}
		sh, ok := s.Shards[st.Shard]
		if !ok {
			return
		}
		need := Need{ID: sh.UID, Memory: sh.Memory, Pair: -1, Avoid: []int{st.From, st.To}}
		if p := s.PairOf(sh); p != nil {
			need.PairNode = p.NodeUID
		}
		var plan []int
		if plan, perr = Plan(Candidates(s), []Need{need}, PolicyOf(s)); perr == nil {
			to = plan[0]
		}
	})
	if to == 0 {
		if perr != nil {
			// Said once in the action's record; the log stays quiet.
			e.setWaiting(ctx, a, fmt.Sprintf("node %d cannot take shard %s and no other node can: %v", st.To, st.Shard, perr))
		}
		return 0, false
	}
	if _, err := e.apply(ctx, &fsm.RetargetStep{TaskID: a.TaskID, Term: a.Term, Index: a.Done, To: to, Time: e.Now().Unix()}); err != nil {
		e.Log.Warn("retarget move", "task_id", a.TaskID, "shard", st.Shard, "error", err)
		return 0, false
	}
	e.Log.Info("move retargeted", "task_id", a.TaskID, "shard", st.Shard, "from_target", st.To, "to", to)
	return to, true
}

// move copies a shard to its new node unless an identical copy is there
// already (a step replayed by a new leader does not copy twice).
func (e *Executor) move(ctx context.Context, a *fsm.Action, st fsm.Step) (string, error) {
	var spec agent.Spec
	var exists bool
	elsewhere := 0
	e.FSM.Read(func(s *fsm.State, _ uint64) {
		sh, ok := s.Shards[st.Shard]
		if !ok {
			return
		}
		exists = true
		if sh.NodeUID != st.From && sh.NodeUID != st.To {
			elsewhere = sh.NodeUID
		}
		spec = agent.Spec{UID: sh.UID, BDB: sh.BDBUID, Role: sh.Role, Persistence: fsm.PersistenceDisabled}
		if b := s.BDBs[sh.BDBUID]; b != nil {
			spec.Persistence = b.DataPersistence
		}
	})
	if !exists {
		return fmt.Sprintf("shard %s is gone; nothing to move", st.Shard), nil
	}
	if elsewhere != 0 {
		// An action on another node moved it meanwhile.
		return fmt.Sprintf("shard %s was moved to node %d meanwhile; nothing to move", st.Shard, elsewhere), nil
	}
	src, dst := e.apiAddr(st.From), e.apiAddr(st.To)
	copied := false
	err := e.retry(ctx, a, fmt.Sprintf("copy shard %s from node %d", st.Shard, st.From), func(ctx context.Context) error {
		if to, ok := e.retarget(ctx, a, st, false); ok {
			st.To, dst = to, e.apiAddr(to)
		}
		if src == "" || dst == "" {
			return &PlanError{Code: "internal_error", Message: fmt.Sprintf("node %d or %d left the cluster", st.From, st.To)}
		}
		have, herr := e.info(ctx, dst, st.Shard)
		from, ferr := e.info(ctx, src, st.Shard)
		if herr == nil && (ferr != nil || have.Checksum == from.Checksum) && have.InSync {
			return nil // already there (a replayed step, or the source is gone after the copy)
		}
		if ferr != nil {
			return fmt.Errorf("node %d: %w", st.From, ferr)
		}
		if _, err := e.Agents.Copy(ctx, dst, spec, src, agent.Op{TaskID: a.TaskID, Step: a.Done, Term: a.Term}); err != nil {
			return fmt.Errorf("node %d: %w", st.To, err)
		}
		copied = true
		return nil
	})
	if err != nil {
		return "", err
	}
	if !copied {
		return fmt.Sprintf("shard %s already on node %d", st.Shard, st.To), nil
	}
	return fmt.Sprintf("shard %s moved from node %d to node %d", st.Shard, st.From, st.To), nil
}
