package fsm

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Action names as they appear in URLs (SPEC §3).
const (
	ActionRemove         = "remove"
	ActionMaintenanceOn  = "maintenance_on"
	ActionMaintenanceOff = "maintenance_off"
	ActionEnslaveNode    = "enslave_node"
)

// ActionNames lists the actions in the order the API documents them.
var ActionNames = []string{ActionRemove, ActionMaintenanceOn, ActionMaintenanceOff, ActionEnslaveNode}

// Action statuses (SPEC §3.1).
const (
	StatusQueued     = "queued"
	StatusStarting   = "starting"
	StatusRunning    = "running"
	StatusCompleted  = "completed"
	StatusFailed     = "failed"
	StatusCancelling = "cancelling"
	StatusCancelled  = "cancelled"
	StatusAborted    = "aborted"
)

// legal lists, for each status, the statuses it may move to.
var legal = map[string][]string{
	StatusQueued:     {StatusStarting, StatusCancelled},
	StatusStarting:   {StatusRunning, StatusCancelling, StatusAborted, StatusFailed},
	StatusRunning:    {StatusCompleted, StatusCancelling, StatusFailed, StatusAborted},
	StatusCancelling: {StatusCancelled},
}

// Terminal reports whether an action in this status is over.
func Terminal(status string) bool {
	return status == StatusCompleted || status == StatusFailed || status == StatusCancelled || status == StatusAborted
}

// CanMove reports whether the status transition from → to is legal.
func CanMove(from, to string) bool { return slices.Contains(legal[from], to) }

// MaxEvents bounds an action's event list; the oldest events after the
// first (the submission) are dropped.
const MaxEvents = 200

// Action is one node action and everything it did (SPEC §3.1).
type Action struct {
	TaskID       string `json:"task_id"`
	Action       string `json:"action"`
	NodeUID      int    `json:"node_uid"`
	Status       string `json:"status"`
	CreationTime int64  `json:"creation_time"`
	StartTime    int64  `json:"start_time,omitempty"`
	EndTime      int64  `json:"end_time,omitempty"`
	// Deadline is the absolute end (unix seconds, the submitter's clock)
	// that older builds checked against the executing leader's clock; it
	// is still stamped for them, but TimeoutMS and UsedMS rule (TimeBudget).
	Deadline int64           `json:"deadline"`
	Params   json.RawMessage `json:"params,omitempty"`
	// TimeoutMS is how long the action's steps may take in all (SPEC
	// §4.6), and UsedMS how much of it the committed steps took, each as
	// the leader that ran it measured on its own monotonic clock: clocks
	// of different nodes need not agree.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
	UsedMS    int64 `json:"used_ms,omitempty"`
	// Steps are planned when the action starts; Done counts those whose
	// effect is committed.
	Steps []Step `json:"steps,omitempty"`
	Done  int    `json:"done"`
	// Reserved are the steps admission planned for a queued action: until
	// the action plans its own, they are what it will move, and other
	// actions' admission counts them against the nodes' capacity.
	Reserved []Step `json:"reserved,omitempty"`
	// Waiting says why the step in flight cannot go on yet; empty while
	// the action makes progress.
	Waiting string `json:"waiting,omitempty"`
	// Term is the raft term of the leader whose executor owns the action;
	// writes of any other term are refused.
	Term         uint64  `json:"term"`
	ErrorCode    string  `json:"error_code,omitempty"`
	ErrorMessage string  `json:"error_message,omitempty"`
	Events       []Event `json:"events"`
	// StartMS and EndMS are the leader's clock, in milliseconds, when the
	// action was claimed to start and when it ended: drills check with them
	// that no two actions of one node ever ran at once.
	StartMS int64 `json:"start_ms,omitempty"`
	EndMS   int64 `json:"end_ms,omitempty"`
}

// DefaultTimeout is the time budget of an action that states none.
const DefaultTimeout = 10 * time.Minute

// TimeBudget is how long the action's steps may take in all. An action
// submitted by an older build has only the absolute Deadline; both it and
// CreationTime come from the submitter's clock, so their difference is
// the budget the submitter meant, whatever the executing leader's clock
// says.
func (a *Action) TimeBudget() time.Duration {
	switch {
	case a.TimeoutMS > 0:
		return time.Duration(a.TimeoutMS) * time.Millisecond
	case a.Deadline > a.CreationTime && a.CreationTime > 0:
		return time.Duration(a.Deadline-a.CreationTime) * time.Second
	}
	return DefaultTimeout
}

// Used is how much of TimeBudget the committed steps took.
func (a *Action) Used() time.Duration { return time.Duration(a.UsedMS) * time.Millisecond }

// Progress is the share of planned steps done, 0 to 100.
func (a *Action) Progress() float64 {
	switch {
	case a.Status == StatusCompleted:
		return 100
	case len(a.Steps) == 0:
		return 0
	}
	return float64(a.Done) * 100 / float64(len(a.Steps))
}

// Event is a line of an action's history.
type Event struct {
	Time    int64  `json:"time"`
	Message string `json:"message"`
}

// SubmitAction records a new action (status queued).
type SubmitAction struct {
	Actor  Actor  `json:"actor"`
	Action Action `json:"action"`
	// By says who submitted it, for the event list.
	By string `json:"by"`
}

// ClaimAction makes the leader of Term the owner of an action; a queued
// action becomes starting. A claim of an older term than the owner's is
// refused, so a deposed leader can never take an action back.
type ClaimAction struct {
	TaskID string `json:"task_id"`
	Term   uint64 `json:"term"`
	Leader int    `json:"leader"`
	Time   int64  `json:"time"`
	TimeMS int64  `json:"time_ms,omitempty"`
}

// PlanAction stores the steps of a starting action and runs it.
type PlanAction struct {
	TaskID string `json:"task_id"`
	Term   uint64 `json:"term"`
	Steps  []Step `json:"steps"`
	Time   int64  `json:"time"`
}

// StepDone commits step Index of an action and its effect on the state.
// ElapsedMS is how long the step took, measured by the committing leader
// on its monotonic clock from when it took the step up; it is added to the
// action's UsedMS.
type StepDone struct {
	TaskID    string `json:"task_id"`
	Term      uint64 `json:"term"`
	Index     int    `json:"index"`
	Time      int64  `json:"time"`
	Message   string `json:"message"`
	ElapsedMS int64  `json:"elapsed_ms,omitempty"`
}

// RetargetStep sends the move at step Index (not yet done) to another
// node, because the planned one can no longer take it; later steps about
// the same shard on the old target follow.
type RetargetStep struct {
	TaskID string `json:"task_id"`
	Term   uint64 `json:"term"`
	Index  int    `json:"index"`
	To     int    `json:"to"`
	Time   int64  `json:"time"`
}

// SetWaiting records why an action's step cannot go on (a node down, no
// node able to take a shard), or with an empty Reason that it goes on. Only
// a change is recorded, so a step that waits long writes one event.
type SetWaiting struct {
	TaskID string `json:"task_id"`
	Term   uint64 `json:"term"`
	Index  int    `json:"index"`
	Reason string `json:"reason"`
	Time   int64  `json:"time"`
}

// FinishAction ends an action with Status (completed, failed, aborted, or
// cancelled for one that was cancelling).
type FinishAction struct {
	TaskID       string `json:"task_id"`
	Term         uint64 `json:"term"`
	Status       string `json:"status"`
	ErrorCode    string `json:"error_code,omitempty"`
	ErrorMessage string `json:"error_message,omitempty"`
	Time         int64  `json:"time"`
	TimeMS       int64  `json:"time_ms,omitempty"`
}

// CancelAction cancels an action, or forgets a finished one (SPEC §3.2).
type CancelAction struct {
	Actor  Actor  `json:"actor"`
	Node   int    `json:"node"`
	Action string `json:"action"`
	By     string `json:"by"`
	Time   int64  `json:"time"`
}

// ActionOf returns the record of action name on node, or nil.
func (s *State) ActionOf(node int, name string) *Action {
	return s.Actions[node][name]
}

// ActiveAction returns the non-terminal action on node, or nil.
func (s *State) ActiveAction(node int) *Action {
	for _, a := range s.Actions[node] {
		if !Terminal(a.Status) {
			return a
		}
	}
	return nil
}

// ActionByTask finds an action by task id.
func (s *State) ActionByTask(id string) *Action {
	for _, byName := range s.Actions {
		for _, a := range byName {
			if a.TaskID == id {
				return a
			}
		}
	}
	return nil
}

// AllActions returns every action record, by node uid then action name.
func (s *State) AllActions() []*Action {
	var out []*Action
	for _, node := range slices.Sorted(maps.Keys(s.Actions)) {
		for _, name := range slices.Sorted(maps.Keys(s.Actions[node])) {
			out = append(out, s.Actions[node][name])
		}
	}
	return out
}

func (a *Action) event(t int64, format string, args ...any) {
	a.Events = append(a.Events, Event{Time: t, Message: fmt.Sprintf(format, args...)})
	if len(a.Events) > MaxEvents {
		a.Events = append(a.Events[:1], a.Events[len(a.Events)-MaxEvents+1:]...)
	}
}

func cloneAction(a *Action) *Action {
	c := *a
	c.Params = slices.Clone(a.Params)
	c.Steps = slices.Clone(a.Steps)
	c.Reserved = slices.Clone(a.Reserved)
	c.Events = slices.Clone(a.Events)
	return &c
}

func (s *State) putAction(a *Action) {
	if s.Actions == nil {
		s.Actions = map[int]map[string]*Action{}
	}
	if s.Actions[a.NodeUID] == nil {
		s.Actions[a.NodeUID] = map[string]*Action{}
	}
	s.Actions[a.NodeUID][a.Action] = a
}

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
		return nil, Errorf(ErrNodeNotFound, "node %d does not exist", a.NodeUID)
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

func (s *State) applyClaimAction(p *ClaimAction) (any, *Error) {
	cur := s.ActionByTask(p.TaskID)
	if cur == nil {
		return nil, Errorf(ErrActionNotFound, "no action with task id %s", p.TaskID)
	}
	if Terminal(cur.Status) || p.Term < cur.Term {
		return nil, Errorf(ErrStaleTerm, "action %s is %s and owned by term %d; claim of term %d refused", p.TaskID, cur.Status, cur.Term, p.Term)
	}
	if p.Term == cur.Term {
		return *cur, nil
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
	return *a, nil
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
	return *a, nil
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
	s.putAction(a)
	return *a, nil
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
	for i := p.Index; i < len(a.Steps); i++ {
		if st := &a.Steps[i]; st.Shard == old.Shard && st.To == old.To {
			st.To = p.To
		}
	}
	a.event(p.Time, "step %d: node %d cannot take shard %s; moving it to node %d instead", p.Index+1, old.To, old.Shard, p.To)
	s.putAction(a)
	return *a, nil
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
		return *a, nil
	}
	if p.Reason == "" {
		a.event(p.Time, "step %d/%d goes on", a.Done+1, len(a.Steps))
	} else {
		a.event(p.Time, "step %d/%d waits: %s", a.Done+1, len(a.Steps), p.Reason)
	}
	a.Waiting = p.Reason
	s.putAction(a)
	return *a, nil
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
	return *a, nil
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
