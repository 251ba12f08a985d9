package fsm

import (
	"encoding/json"
	"slices"
)

func (s *State) applySubmitAction(p *SubmitAction, admit Admission) (any, *Error) {
	a := p.Action
	if !slices.Contains(ActionNames, a.Action) {
		return nil, Errorf(ErrInvalidParameter, "unknown action %q", a.Action)
	}
	if a.TaskID == "" {
		return nil, Errorf(ErrInvalidParameter, "an action needs a task id")
	}
	// A submission retried after its answer was lost (a leader change)
	// carries the same task id: it gets the record it made, once.
	if prev := s.ActionByTask(a.TaskID); prev != nil {
		if prev.NodeUID == a.NodeUID && prev.Action == a.Action {
			return *prev, nil
		}
		return nil, Errorf(ErrInvalidParameter, "task id %s is taken", a.TaskID)
	}
	n, ok := s.Nodes[a.NodeUID]
	if !ok {
		return nil, NoSuchNode(a.NodeUID)
	}
	if cur := s.ActiveAction(a.NodeUID); cur != nil && !brokenNoConflictCheck {
		return nil, Errorf(ErrActionInProgress, "action %s (task %s) is %s on node %d", cur.Action, cur.TaskID, cur.Status, a.NodeUID)
	}
	if a.Action == ActionRemove && len(s.Nodes) == 1 {
		return nil, Errorf(ErrInvalidParameter, "node %d is the last node of the cluster and cannot be removed", a.NodeUID)
	}
	a.Reserved = nil
	if admit != nil && !brokenNoConflictCheck {
		// Decided here, against every other non-terminal action, so that
		// of two concurrent submissions through different nodes the one
		// committed second sees the first (SPEC §3.2).
		steps, err := admit(s, &a)
		if err != nil {
			return nil, err
		}
		a.Reserved = steps
	}
	if a.Action == ActionRemove {
		// From acceptance on, the node never takes shards again (SPEC §4.2).
		c := *n
		c.Removing, c.AcceptServers = true, false
		s.Nodes[c.UID] = &c
	}
	if len(a.Params) == 0 || string(a.Params) == "null" {
		a.Params = json.RawMessage("{}")
	}
	a.Status = StatusQueued
	a.Steps, a.Done, a.Term, a.StartTime, a.EndTime, a.UsedMS = nil, 0, 0, 0, 0, 0
	a.ErrorCode, a.ErrorMessage = "", ""
	a.Events = nil
	a.event(a.CreationTime, "submitted by %s", p.By)
	s.putAction(&a)
	return a, nil
}

// ownedAction finds the action a leader's write is about and checks that
// the writer is its owner (same term).
func (s *State) ownedAction(task string, term uint64) (*Action, *Error) {
	cur := s.ActionByTask(task)
	if cur == nil {
		return nil, Errorf(ErrActionNotFound, "no action with task id %s", task)
	}
	if cur.Term != term {
		return nil, Errorf(ErrStaleTerm, "action %s is owned by the leader of term %d, not %d", task, cur.Term, term)
	}
	if Terminal(cur.Status) {
		return nil, Errorf(ErrStaleTerm, "action %s is already %s", task, cur.Status)
	}
	return cloneAction(cur), nil
}

// The commands of the leader's executor (claim, plan, begin, step done,
// release, retarget, waiting, finish) answer no value: the executor reads
// the state, and encoding an action of thousands of steps at each of its
// commits, on every node, made a step's cost grow with the plan.

func (s *State) applyClaimAction(p *ClaimAction) (any, *Error) {
	cur := s.ActionByTask(p.TaskID)
	if cur == nil {
		return nil, Errorf(ErrActionNotFound, "no action with task id %s", p.TaskID)
	}
	if Terminal(cur.Status) || p.Term < cur.Term {
		return nil, Errorf(ErrStaleTerm, "action %s is %s and owned by term %d; claim of term %d refused", p.TaskID, cur.Status, cur.Term, p.Term)
	}
	if p.Term == cur.Term {
		return nil, nil
	}
	a := cloneAction(cur)
	resumed := a.Status != StatusQueued
	a.Term = p.Term
	if a.Status == StatusQueued {
		a.Status = StatusStarting
		a.StartTime, a.StartMS = p.Time, p.TimeMS
		a.event(p.Time, "starting on leader %d (term %d)", p.Leader, p.Term)
	}
	if resumed {
		a.event(p.Time, "resumed by leader %d (term %d) at step %d of %d", p.Leader, p.Term, a.Done+1, len(a.Steps))
	}
	s.putAction(a)
	return nil, nil
}

func (s *State) applyPlanAction(p *PlanAction) (any, *Error) {
	a, err := s.ownedAction(p.TaskID, p.Term)
	if err != nil {
		return nil, err
	}
	if a.Status != StatusStarting {
		return nil, Errorf(ErrStaleTerm, "action %s is %s, not starting", p.TaskID, a.Status)
	}
	a.Steps = slices.Clone(p.Steps)
	a.Reserved = nil
	a.Status = StatusRunning
	if len(p.Steps) == 1 {
		a.event(p.Time, "planned 1 step")
	} else {
		a.event(p.Time, "planned %d steps", len(p.Steps))
	}
	s.putAction(a)
	return nil, nil
}

func (s *State) applyStepDone(p *StepDone) (any, *Error) {
	a, err := s.ownedAction(p.TaskID, p.Term)
	if err != nil {
		return nil, err
	}
	if a.Status != StatusRunning && a.Status != StatusCancelling {
		return nil, Errorf(ErrStaleTerm, "action %s is %s", p.TaskID, a.Status)
	}
	if p.Index != a.Done || p.Index >= len(a.Steps) {
		return nil, Errorf(ErrStaleTerm, "action %s is at step %d, not %d", p.TaskID, a.Done, p.Index)
	}
	if err := s.stepEffect(a, a.Steps[p.Index]); err != nil {
		return nil, err
	}
	a.Done++
	a.UsedMS += max(p.ElapsedMS, 0)
	a.Waiting = ""
	if p.Message != "" {
		a.event(p.Time, "step %d/%d: %s", a.Done, len(a.Steps), p.Message)
	}
	if p.BeginNext && a.Status == StatusRunning && a.Done < len(a.Steps) && HoldsSlots(a.Steps[a.Done].Kind) && s.slotsBusy(a) == nil {
		a.Begun = a.Done + 1
	}
	s.putAction(a)
	return nil, nil
}

func (s *State) applyBeginStep(p *BeginStep) (any, *Error) {
	a, err := s.ownedAction(p.TaskID, p.Term)
	if err != nil {
		return nil, err
	}
	if (a.Status != StatusRunning && a.Status != StatusCancelling) || p.Index != a.Done || p.Index >= len(a.Steps) {
		return nil, Errorf(ErrStaleTerm, "action %s (%s) is at step %d, not %d", p.TaskID, a.Status, a.Done, p.Index)
	}
	if a.Begun > a.Done {
		return nil, nil
	}
	if err := s.slotsBusy(a); err != nil {
		return nil, err
	}
	a.Begun = a.Done + 1
	s.putAction(a)
	return nil, nil
}

// slotsBusy is the refusal of a's next step when another action's step
// holds its slots, or nil.
func (s *State) slotsBusy(a *Action) *Error {
	slots, ok := s.stepSlots(a.Steps[a.Done])
	if !ok {
		return nil
	}
	for _, o := range s.AllActions() {
		if held, ok := s.heldSlots(o); ok && o.TaskID != a.TaskID && held == slots {
			return Errorf(ErrStepBusy, "shard %s's slots %s of database %d are being switched by step %d of %s %s on node %d",
				a.Steps[a.Done].Shard, slots.slots, slots.bdb, o.Done+1, o.Action, o.TaskID, o.NodeUID)
		}
	}
	return nil
}

// slotRange is one slot range of one database: a master and its replica.
type slotRange struct {
	bdb   int
	slots string
}

// stepSlots is the slot range a step switches, if its kind holds one and
// its shard still exists.
func (s *State) stepSlots(st Step) (slotRange, bool) {
	sh := s.Shards[st.Shard]
	if !HoldsSlots(st.Kind) || sh == nil {
		return slotRange{}, false
	}
	return slotRange{sh.BDBUID, sh.AssignedSlots}, true
}

// heldSlots is the slot range a's step holds, if it holds one.
func (s *State) heldSlots(a *Action) (slotRange, bool) {
	if !a.Holds() {
		return slotRange{}, false
	}
	return s.stepSlots(a.Steps[a.Done])
}

func (s *State) applyReleaseStep(p *ReleaseStep) (any, *Error) {
	cur := s.ActionByTask(p.TaskID)
	if cur == nil {
		return nil, Errorf(ErrActionNotFound, "no action with task id %s", p.TaskID)
	}
	if !Terminal(cur.Status) || p.Term < cur.Term {
		return nil, Errorf(ErrStaleTerm, "action %s is %s, ended by term %d; release of term %d refused", p.TaskID, cur.Status, cur.Term, p.Term)
	}
	if !cur.Holds() {
		return nil, nil
	}
	a := cloneAction(cur)
	a.Begun = 0
	s.putAction(a)
	return nil, nil
}

func (s *State) applyRetargetStep(p *RetargetStep) (any, *Error) {
	a, err := s.ownedAction(p.TaskID, p.Term)
	if err != nil {
		return nil, err
	}
	if p.Index != a.Done || p.Index >= len(a.Steps) || !stepKinds[a.Steps[p.Index].Kind].retargetable {
		return nil, Errorf(ErrStaleTerm, "action %s: step %d is not the next move", p.TaskID, p.Index)
	}
	if !s.Takes(p.To) {
		return nil, Errorf(ErrPlacementConflict, "node %d does not accept shards", p.To)
	}
	old := a.Steps[p.Index]
	a.Steps = slices.Clone(a.Steps) // shared with the stored action
	for i := p.Index; i < len(a.Steps); i++ {
		if st := &a.Steps[i]; st.Shard == old.Shard && st.To == old.To {
			st.To = p.To
		}
	}
	a.event(p.Time, "step %d: node %d cannot take shard %s; moving it to node %d instead", p.Index+1, old.To, old.Shard, p.To)
	s.putAction(a)
	return nil, nil
}

func (s *State) applySetWaiting(p *SetWaiting) (any, *Error) {
	a, err := s.ownedAction(p.TaskID, p.Term)
	if err != nil {
		return nil, err
	}
	if p.Index != a.Done {
		return nil, Errorf(ErrStaleTerm, "action %s is at step %d, not %d", p.TaskID, a.Done, p.Index)
	}
	if a.Waiting == p.Reason {
		return nil, nil
	}
	if p.Reason == "" {
		a.event(p.Time, "step %d/%d goes on", a.Done+1, len(a.Steps))
	} else {
		a.event(p.Time, "step %d/%d waits: %s", a.Done+1, len(a.Steps), p.Reason)
	}
	a.Waiting = p.Reason
	s.putAction(a)
	return nil, nil
}

func (s *State) applyFinishAction(p *FinishAction) (any, *Error) {
	a, err := s.ownedAction(p.TaskID, p.Term)
	if err != nil {
		return nil, err
	}
	if !CanMove(a.Status, p.Status) {
		return nil, Errorf(ErrInvalidParameter, "action %s cannot go from %s to %s", p.TaskID, a.Status, p.Status)
	}
	if p.Status == StatusCompleted && a.Done != len(a.Steps) {
		return nil, Errorf(ErrInvalidParameter, "action %s has done %d of %d steps", p.TaskID, a.Done, len(a.Steps))
	}
	a.Status = p.Status
	a.Waiting, a.Reserved = "", nil
	a.EndTime, a.EndMS = p.Time, p.TimeMS
	if p.Status == StatusFailed || p.Status == StatusAborted {
		a.ErrorCode, a.ErrorMessage = p.ErrorCode, p.ErrorMessage
		a.event(p.Time, "%s: %s: %s", p.Status, p.ErrorCode, p.ErrorMessage)
	} else {
		a.event(p.Time, "%s", p.Status)
	}
	s.putAction(a)
	return nil, nil
}

func (s *State) applyCancelAction(p *CancelAction) (any, *Error) {
	cur := s.ActionOf(p.Node, p.Action)
	if cur == nil {
		return nil, Errorf(ErrActionNotFound, "no %s action on node %d", p.Action, p.Node)
	}
	a := cloneAction(cur)
	switch a.Status {
	case StatusQueued:
		a.Status = StatusCancelled
		a.EndTime = p.Time
		a.event(p.Time, "cancelled by %s before it started", p.By)
	case StatusStarting, StatusRunning:
		a.Status = StatusCancelling
		a.event(p.Time, "cancel requested by %s; stopping after the step in flight", p.By)
	case StatusCancelling:
		return *a, nil
	default:
		// A finished action's record is forgotten.
		delete(s.Actions[p.Node], p.Action)
		if len(s.Actions[p.Node]) == 0 {
			delete(s.Actions, p.Node)
		}
		return *a, nil
	}
	s.putAction(a)
	return *a, nil
}
