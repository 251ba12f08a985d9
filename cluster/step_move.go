package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cnm/agent"
	"cnm/fsm"
)

// moveRunner copies a shard to its new node. A copy whose move is not
// committed is taken back, and a move that no longer fits where it was
// planned goes elsewhere.
var moveRunner = runner{
	run: (*Executor).move,
	describe: func(st fsm.Step) string {
		return fmt.Sprintf("move shard %s from node %d to node %d", st.Shard, st.From, st.To)
	},
	takeBack:  (*Executor).dropStray,
	committed: (*Executor).dropSource,
	conflict:  moveConflict,
	foresee: func(_ *fsm.State, sh *fsm.Shard, st fsm.Step) {
		if sh.NodeUID == st.From {
			sh.NodeUID = st.To
		}
	},
}

// moveSource is what a move needs of the shard it copies.
type moveSource struct {
	spec      agent.Spec
	exists    bool
	elsewhere int // the node an action on another node moved it to meanwhile
}

func moveSourceIn(s *fsm.State, st fsm.Step) moveSource {
	var m moveSource
	sh, ok := s.Shards[st.Shard]
	if !ok {
		return m
	}
	m.exists = true
	if sh.NodeUID != st.From && sh.NodeUID != st.To {
		m.elsewhere = sh.NodeUID
	}
	m.spec = agent.Spec{UID: sh.UID, BDB: sh.BDBUID, Slots: sh.AssignedSlots, Role: sh.Role, Persistence: fsm.PersistenceDisabled}
	if b := s.BDBs[sh.BDBUID]; b != nil {
		m.spec.Persistence = b.DataPersistence
	}
	return m
}

// move copies a shard to its new node unless an identical copy is there
// already (a step replayed by a new leader does not copy twice).
func (e *Executor) move(ctx context.Context, t *turn, st fsm.Step) (string, error) {
	a := &t.a
	m := moveSourceIn(t.view, st)
	if !m.exists {
		return fmt.Sprintf("shard %s is gone; nothing to move", st.Shard), nil
	}
	if m.elsewhere != 0 {
		// An action on another node moved it meanwhile.
		return fmt.Sprintf("shard %s was moved to node %d meanwhile; nothing to move", st.Shard, m.elsewhere), nil
	}
	src, dst := apiAddrIn(t.view, st.From), apiAddrIn(t.view, st.To)
	copied := false
	err := e.retry(ctx, a, fmt.Sprintf("copy shard %s from node %d", st.Shard, st.From), func(ctx context.Context) error {
		if to, ok := e.retarget(ctx, a, st, false); ok {
			st.To, dst = to, e.apiAddr(to)
		}
		if src == "" || dst == "" {
			return fsm.Errorf(fsm.ErrInternal, "node %d or %d left the cluster", st.From, st.To)
		}
		have, herr := e.info(ctx, dst, st.Shard)
		from, ferr := e.info(ctx, src, st.Shard)
		if herr == nil && (ferr != nil || have.Checksum == from.Checksum) && have.InSync {
			return nil // already there (a replayed step, or the source is gone after the copy)
		}
		if ferr != nil {
			return fmt.Errorf("node %d: %w", st.From, ferr)
		}
		info, err := e.Agents.Copy(ctx, dst, m.spec, src, agent.Op{TaskID: a.TaskID, Step: a.Done, Term: a.Term})
		if err != nil {
			return fmt.Errorf("node %d: %w", st.To, err)
		}
		e.Metrics.moved(info.Size)
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

// dropSource: the source's agent would drop the copy on its own once it
// sees the move; asking saves it the wait, so that the source's process is
// gone by the time the action ends. A source that has not applied the
// move yet refuses (its state still assigns it the shard) and is asked
// again for a few moments.
func (e *Executor) dropSource(ctx context.Context, st fsm.Step) {
	addr := e.apiAddr(st.From)
	if addr == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, sourceDropWait)
	defer cancel()
	t := time.NewTicker(sourceDropRetry)
	defer t.Stop()
	for {
		err := e.drop(ctx, addr, st.Shard)
		if err == nil || !errors.Is(err, fsm.ErrShardAssigned) {
			return
		}
		select {
		case <-ctx.Done():
			e.Log.Debug("source still holds the moved shard", "shard", st.Shard, "node", st.From, "error", err)
			return
		case <-t.C:
		}
	}
}

// How long and how often dropSource asks a source that lags behind.
const (
	sourceDropWait  = 5 * time.Second
	sourceDropRetry = 100 * time.Millisecond
)

// moveConflict: another action put the shard's pair on the target
// meanwhile, or the target filled up or stopped taking shards. The shard
// goes elsewhere, or waits for a target that is only down, or the action
// fails; a stray copy is taken back.
func moveConflict(r *actionRun, ctx context.Context, a *fsm.Action, st fsm.Step, err error) bool {
	e := r.e
	r.log.Info("move no longer fits; retargeting", "step", a.Done, "error", err)
	if _, ok := e.retarget(ctx, a, st, true); ok {
		// After the retarget, so that the old target sees no pending move
		// needing the copy.
		e.dropStray(ctx, st)
		return true
	}
	if !e.targetIsBack(st.To) {
		// Refused for a reason that does not pass by itself (the node
		// stopped accepting shards, or is full): fail as before, and take
		// the stray copy back.
		if r.finish(ctx, fsm.StatusFailed, fsm.ErrInsufficientResources.Code, fmt.Sprintf("shard %s has no home: %v", st.Shard, err)) {
			e.dropStray(ctx, st)
		}
		return false
	}
	// No other node takes it now, and the target is only down: a restarted
	// node that liveness has not yet marked active again. The step waits,
	// keeping its copy, until a node can take the shard or the action's
	// deadline passes.
	if a.Waiting == "" { // retarget says why when it can
		e.setWaiting(ctx, a, fmt.Sprintf("node %d cannot take shard %s yet (%v), and no other node can", st.To, st.Shard, err))
	}
	return e.pause(ctx, time.Second) == nil
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
