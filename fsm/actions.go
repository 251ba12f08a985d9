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
	// Begun is Done+1 while the work of the step at Done has begun and the
	// step holds its shard's slot range (BeginStep). The hold ends when the
	// step commits, or after the action ended, once what the step left
	// behind was taken back (ReleaseStep).
	Begun int `json:"begun,omitempty"`
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
// action's UsedMS. With BeginNext, the same entry begins the next step
// (as BeginStep would) if it holds slots and they are free: one commit a
// step rather than two. If they are not free the next step is left
// unbegun, for a BeginStep that waits.
type StepDone struct {
	TaskID    string `json:"task_id"`
	Term      uint64 `json:"term"`
	Index     int    `json:"index"`
	Time      int64  `json:"time"`
	Message   string `json:"message"`
	ElapsedMS int64  `json:"elapsed_ms,omitempty"`
	BeginNext bool   `json:"begin_next,omitempty"`
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

// BeginStep marks the work of an action's next step begun, before any
// agent hears of it. A step that switches a shard's copies (a move, a
// failover: HoldsSlots) holds the slot range of the shard's database, its
// master and replica both, until it commits or its action ends; another
// action's step on the same slots is refused with ErrStepBusy until then.
// Two actions switching one pair at once would each act on a state the
// other changes: each could promote a copy, or one could move a copy whose
// role the other switched. A step that holds already is begun again
// without a refusal (a new leader resuming it).
type BeginStep struct {
	TaskID string `json:"task_id"`
	Term   uint64 `json:"term"`
	Index  int    `json:"index"`
}

// ReleaseStep ends the hold of an ended action's step on its slots
// (BeginStep), once the executor of Term took back what the step left
// behind: a copy made, roles switched. Until then another action's step
// on those slots would meet the half-done switch.
type ReleaseStep struct {
	TaskID string `json:"task_id"`
	Term   uint64 `json:"term"`
}

// Holds reports whether the action's step at Done holds its slots.
func (a *Action) Holds() bool { return a.Begun > a.Done && a.Done < len(a.Steps) }

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

// cloneAction is the copy of a that an Apply changes. The steps are
// shared: once planned they are never changed in place (RetargetStep
// changes a copy of its own), and an action of thousands of steps would
// otherwise be copied by each of its thousands of commits.
func cloneAction(a *Action) *Action {
	c := *a
	c.Params = slices.Clone(a.Params)
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
