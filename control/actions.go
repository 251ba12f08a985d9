package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"cnm/cluster"
	"cnm/fsm"
)

// DefaultActionDeadline is how long an action may run (SPEC §4.6).
const DefaultActionDeadline = 10 * time.Minute

// maxDeadlineSeconds bounds deadline_seconds: a week.
const maxDeadlineSeconds = 7 * 24 * 3600

// ActionParams are a node action's params, as its request body gives
// them (the actions tag lists the actions that take each field).
type ActionParams = cluster.Params

// ActionRequest asks for a node action.
type ActionRequest struct {
	// TaskID is the id the write was given where the client sent it: a
	// submission sent again after a leader change is stored once.
	TaskID string
	Node   int
	Action string
	Params ActionParams
	// DryRun asks for the plan only.
	DryRun bool
	Actor  fsm.Actor
	// By names who asked, for the action's events.
	By string
}

// Submitted is the outcome of SubmitAction: the plan of a dry run, or the
// action record.
type Submitted struct {
	Plan   []fsm.Step
	Action *fsm.Action
}

// SubmitAction checks the request's params, runs the pre-check (SPEC §4.1)
// against this node's state, and unless it is a dry run proposes the
// action; Apply decides admission again against the whole cluster.
func (s *Service) SubmitAction(ctx context.Context, req ActionRequest) (Submitted, error) {
	if err := s.checkParams(req.Action, req.Params); err != nil {
		return Submitted{}, err
	}
	now := time.Now()
	a, err := s.newAction(req, now)
	if err != nil {
		return Submitted{}, err
	}
	steps, err := s.preCheck(a, now)
	if err != nil {
		return Submitted{}, err
	}
	if req.DryRun {
		return Submitted{Plan: cluster.ForLeader(steps, req.Action, s.raft.ID())}, nil
	}
	out, err := proposeFor[fsm.Action](ctx, s, &fsm.SubmitAction{Actor: req.Actor, Action: *a, By: req.By})
	if errors.Is(err, fsm.ErrActionInProgress) {
		if cur := s.activeAction(req.Node); cur != nil {
			return Submitted{}, errInProgress(cur)
		}
	}
	if err != nil {
		return Submitted{}, err
	}
	return Submitted{Action: out}, nil
}

// newAction is the record of the requested action, its params resolved
// against the policy and its time budget set.
func (s *Service) newAction(req ActionRequest, now time.Time) (*fsm.Action, error) {
	params := req.Params
	s.fsm.Read(func(st *fsm.State, _ uint64) { params = params.Resolved(req.Action, st.Policy) })
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("encode action params: %w", err)
	}
	deadline := DefaultActionDeadline
	if params.DeadlineSeconds != nil {
		deadline = time.Duration(*params.DeadlineSeconds) * time.Second
	}
	// The budget is a duration that the executing leader measures on its
	// own clock; the absolute deadline is for executors of older builds.
	return &fsm.Action{TaskID: req.TaskID, Action: req.Action, NodeUID: req.Node, CreationTime: now.Unix(),
		Deadline: now.Add(deadline).Unix(), TimeoutMS: deadline.Milliseconds(), Params: raw}, nil
}

// preCheck plans a against this node's state; the executor checks again
// when the action starts. A resubmission of a stored task passes: Apply
// answers with its record.
func (s *Service) preCheck(a *fsm.Action, now time.Time) ([]fsm.Step, error) {
	var steps []fsm.Step
	var running *fsm.Action
	var err error
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		if prev := st.ActionByTask(a.TaskID); prev != nil {
			return
		}
		if cur := st.ActiveAction(a.NodeUID); cur != nil {
			c := *cur
			running = &c
			return
		}
		steps, err = cluster.PlanAction(st, a, now)
	})
	if running != nil {
		return nil, errInProgress(running)
	}
	if err != nil {
		return nil, err
	}
	if n := len(steps); n > 0 && steps[n-1].Kind == fsm.StepFail {
		return nil, &fsm.Error{Code: steps[n-1].Code, Description: steps[n-1].Message}
	}
	return steps, nil
}

func (s *Service) activeAction(node int) *fsm.Action {
	var cur *fsm.Action
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		if c := st.ActiveAction(node); c != nil {
			cc := *c
			cur = &cc
		}
	})
	return cur
}

func errInProgress(a *fsm.Action) *fsm.Error {
	return fsm.Errorf(fsm.ErrActionInProgress, "action %s (task %s) is %s on node %d", a.Action, a.TaskID, a.Status, a.NodeUID)
}

// checkParams checks the values of an action's params; their names and
// types were checked when the body was read.
func (s *Service) checkParams(action string, p ActionParams) error {
	switch action {
	case fsm.ActionMaintenanceOn:
		if p.EvictDBs != nil {
			if err := s.checkEvictDBs(p.EvictDBs); err != nil {
				return err
			}
		}
	case fsm.ActionMaintenanceOff:
		if p.SnapshotName != nil && *p.SnapshotName == "" {
			return fsm.ErrInvalidParameter.With("field \"snapshot_name\" is empty: name a snapshot, or leave the field out for the latest")
		}
	case fsm.ActionEnslaveNode:
		if p.ShardsOnly != nil && p.EndpointsOnly != nil && *p.ShardsOnly && *p.EndpointsOnly {
			return fsm.ErrInvalidParameter.With("shards_only and endpoints_only exclude each other")
		}
	}
	if d := p.DeadlineSeconds; d != nil && (*d < 1 || *d > maxDeadlineSeconds) {
		return fsm.Errorf(fsm.ErrInvalidParameter, "field \"deadline_seconds\" must be 1 to %d", maxDeadlineSeconds)
	}
	return nil
}

// checkEvictDBs checks that every entry of evict_dbs is the plain decimal
// uid of an existing database. An empty string (or a null, which decodes
// to one) must never stand for "every database" (SPEC §9).
func (s *Service) checkEvictDBs(list []string) error {
	for _, d := range list {
		if d == "" {
			return fsm.ErrInvalidParameter.With("field \"evict_dbs\" holds an empty string or null; list database uids such as \"1\"")
		}
	}
	var bad string
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		for _, d := range list {
			uid, ok := PlainUID(d)
			if _, exists := st.BDBs[uid]; !ok || !exists {
				bad = d
				return
			}
		}
	})
	if bad != "" {
		return fsm.ErrInvalidParameter.With("field \"evict_dbs\" names " + strconv.Quote(bad) + ", which is not a database uid")
	}
	return nil
}

// PlainUID parses a positive uid written in plain decimal: no sign, no
// leading zero, no space, no exponent ("+1" and "01" would otherwise name
// node 1 under another spelling).
func PlainUID(v string) (int, bool) {
	n, err := strconv.Atoi(v)
	return n, err == nil && n > 0 && strconv.Itoa(n) == v
}

// CancelAction cancels the node's action name.
func (s *Service) CancelAction(ctx context.Context, actor fsm.Actor, node int, name, by string) (*fsm.Action, error) {
	out, err := proposeFor[fsm.Action](ctx, s, &fsm.CancelAction{Actor: actor, Node: node, Action: name, By: by, Time: time.Now().Unix()})
	if errors.Is(err, fsm.ErrActionNotFound) {
		return nil, ErrNoSuchAction(node, name)
	}
	return out, err
}

// ErrNoSuchAction: no action name is queued, running or kept on node.
func ErrNoSuchAction(node int, name string) *fsm.Error {
	return fsm.Errorf(fsm.ErrActionNotFound, "no %s action is queued, running, or kept from its last run on node %d", name, node)
}
