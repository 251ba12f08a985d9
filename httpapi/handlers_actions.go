package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"cnm/cluster"
	"cnm/fsm"
	"cnm/raftnode"
)

// actionView is the action object of SPEC §3.1.
type actionView struct {
	Name         string          `json:"name"`
	Action       string          `json:"action"`
	NodeUID      string          `json:"node_uid"`
	TaskID       string          `json:"task_id"`
	Status       string          `json:"status"`
	Progress     float64         `json:"progress"`
	CreationTime int64           `json:"creation_time"`
	StartTime    *int64          `json:"start_time"`
	EndTime      *int64          `json:"end_time"`
	Params       json.RawMessage `json:"params"`
	ErrorCode    string          `json:"error_code,omitempty"`
	ErrorMessage string          `json:"error_message,omitempty"`
	Additional   additionalInfo  `json:"additional_info"`
}

type additionalInfo struct {
	StartMS    int64       `json:"start_time_ms,omitempty"`
	EndMS      int64       `json:"end_time_ms,omitempty"`
	PendingOps int         `json:"pending_ops"`
	Waiting    string      `json:"waiting,omitempty"`
	DoneOps    int         `json:"done_ops"`
	Steps      []string    `json:"steps"`
	Events     []fsm.Event `json:"events"`
}

func viewAction(a *fsm.Action) actionView {
	v := actionView{
		Name: a.Action, Action: a.Action, NodeUID: strconv.Itoa(a.NodeUID), TaskID: a.TaskID,
		Status: a.Status, Progress: a.Progress(), CreationTime: a.CreationTime, Params: a.Params,
		Additional: additionalInfo{StartMS: a.StartMS, EndMS: a.EndMS, PendingOps: len(a.Steps) - a.Done, DoneOps: a.Done, Waiting: a.Waiting, Steps: []string{}, Events: a.Events},
	}
	if a.Action == fsm.ActionRemove {
		v.Name = "remove_node"
	}
	if len(v.Params) == 0 {
		v.Params = json.RawMessage("{}")
	}
	if a.StartTime != 0 {
		t := a.StartTime
		v.StartTime = &t
	}
	if a.EndTime != 0 {
		t := a.EndTime
		v.EndTime = &t
	}
	if a.Status == fsm.StatusFailed || a.Status == fsm.StatusAborted {
		v.ErrorCode, v.ErrorMessage = a.ErrorCode, a.ErrorMessage
	}
	for _, st := range a.Steps {
		v.Additional.Steps = append(v.Additional.Steps, st.Kind)
	}
	if v.Additional.Events == nil {
		v.Additional.Events = []fsm.Event{}
	}
	return v
}

type actionsView struct {
	Actions []actionView `json:"actions"`
}

func (s *Server) listAllActions(w http.ResponseWriter, _ *http.Request, _ principal) error {
	out := actionsView{Actions: []actionView{}}
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		for _, a := range st.AllActions() {
			out.Actions = append(out.Actions, viewAction(a))
		}
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

// nodeOrRecords checks that uid names a node, or a removed node whose action
// records are still kept (SPEC §3.2).
func nodeOrRecords(st *fsm.State, uid int) bool {
	_, ok := st.Nodes[uid]
	return ok || len(st.Actions[uid]) > 0
}

func (s *Server) listNodeActions(w http.ResponseWriter, r *http.Request, _ principal) error {
	uid, err := pathUID(r, "node")
	if err != nil {
		return err
	}
	out := actionsView{Actions: []actionView{}}
	var known bool
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		if known = nodeOrRecords(st, uid); known {
			for _, a := range st.AllActions() {
				if a.NodeUID == uid {
					out.Actions = append(out.Actions, viewAction(a))
				}
			}
		}
	})
	if !known {
		return errNodeNotFound(uid)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// actionName reads {action}. An unknown name is a bad request when
// starting one (400 unsupported_action) and, as in the reference API, a
// missing action when reading or cancelling one (404 action_not_found).
func actionName(r *http.Request) (string, error) {
	name := muxVar(r, "action")
	if !slices.Contains(fsm.ActionNames, name) {
		const known = "remove, maintenance_on, maintenance_off or enslave_node"
		if r.Method != http.MethodPost {
			return "", errNotFound("action_not_found", "there is no action "+quote(name)+": the actions are "+known)
		}
		return "", errBadRequest("unsupported_action", "unsupported action "+quote(name)+": use "+known)
	}
	return name, nil
}

// nodeAction parses the {uid} and {action} of an action route.
func nodeAction(r *http.Request) (int, string, error) {
	uid, err := pathUID(r, "node")
	if err != nil {
		return 0, "", err
	}
	name, err := actionName(r)
	return uid, name, err
}

// answerAction writes the action record a command returned.
func answerAction(w http.ResponseWriter, res *fsm.Result) error {
	var a fsm.Action
	if err := json.Unmarshal(res.Value, &a); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewAction(&a))
	return nil
}

// planFailure is the answer to a pre-check that shows the action cannot
// succeed (SPEC §3.2).
func planFailure(code, msg string) *apiError {
	st, ok := planStatus[code]
	if !ok {
		st = http.StatusBadRequest
	}
	return &apiError{Status: st, Code: code, Description: msg}
}

func errActionNotFound(uid int, name string) *apiError {
	return errNotFound("action_not_found", "no "+name+" action is queued, running, or kept from its last run on node "+itoa(uid))
}

func (s *Server) getNodeAction(w http.ResponseWriter, r *http.Request, _ principal) error {
	uid, name, err := nodeAction(r)
	if err != nil {
		return err
	}
	var v actionView
	var known, found bool
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		known = nodeOrRecords(st, uid)
		if a := st.ActionOf(uid, name); a != nil {
			v, found = viewAction(a), true
		}
	})
	switch {
	case !known:
		return errNodeNotFound(uid)
	case !found:
		return errActionNotFound(uid, name)
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// Bodies of each action; unknown fields are refused.
type (
	removeParams struct {
		WaitForPersistence *bool `json:"wait_for_persistence"`
		DeadlineSeconds    *int  `json:"deadline_seconds"`
	}
	maintenanceOnParams struct {
		OverwriteSnapshot        *bool     `json:"overwrite_snapshot"`
		EvictHAReplica           *bool     `json:"evict_ha_replica"`
		EvictActiveActiveReplica *bool     `json:"evict_active_active_replica"`
		EvictDBs                 *[]string `json:"evict_dbs"`
		KeepSlaveShards          *bool     `json:"keep_slave_shards"`
		DeadlineSeconds          *int      `json:"deadline_seconds"`
	}
	maintenanceOffParams struct {
		SnapshotName      *string `json:"snapshot_name"`
		SkipShardsRestore *bool   `json:"skip_shards_restore"`
		DeadlineSeconds   *int    `json:"deadline_seconds"`
	}
	enslaveParams struct {
		ShardsOnly      *bool `json:"shards_only"`
		EndpointsOnly   *bool `json:"endpoints_only"`
		DeadlineSeconds *int  `json:"deadline_seconds"`
	}
)

// DefaultActionDeadline is how long an action may run (SPEC §4.6).
const DefaultActionDeadline = 10 * time.Minute

// actionParams decodes and checks the body of action name into the
// normalised params stored with the action.
func (s *Server) actionParams(r *http.Request, name string) (cluster.Params, error) {
	var p cluster.Params
	switch name {
	case fsm.ActionRemove:
		var b removeParams
		if err := decodeBody(r, &b); err != nil {
			return p, err
		}
		p.WaitForPersistence, p.DeadlineSeconds = b.WaitForPersistence, b.DeadlineSeconds
	case fsm.ActionMaintenanceOn:
		var b maintenanceOnParams
		if err := decodeBody(r, &b); err != nil {
			return p, err
		}
		p.OverwriteSnapshot, p.EvictHAReplica, p.EvictActiveActiveReplica = b.OverwriteSnapshot, b.EvictHAReplica, b.EvictActiveActiveReplica
		p.KeepSlaveShards, p.DeadlineSeconds = b.KeepSlaveShards, b.DeadlineSeconds
		if b.EvictDBs != nil {
			if err := s.checkEvictDBs(*b.EvictDBs); err != nil {
				return p, err
			}
			p.EvictDBs = *b.EvictDBs
		}
	case fsm.ActionMaintenanceOff:
		var b maintenanceOffParams
		if err := decodeBody(r, &b); err != nil {
			return p, err
		}
		if b.SnapshotName != nil && *b.SnapshotName == "" {
			return p, errBadRequest("invalid_parameter", "field \"snapshot_name\" is empty: name a snapshot, or leave the field out for the latest")
		}
		p.SnapshotName, p.SkipShardsRestore, p.DeadlineSeconds = b.SnapshotName, b.SkipShardsRestore, b.DeadlineSeconds
	case fsm.ActionEnslaveNode:
		var b enslaveParams
		if err := decodeBody(r, &b); err != nil {
			return p, err
		}
		p.ShardsOnly, p.EndpointsOnly, p.DeadlineSeconds = b.ShardsOnly, b.EndpointsOnly, b.DeadlineSeconds
		if b.ShardsOnly != nil && b.EndpointsOnly != nil && *b.ShardsOnly && *b.EndpointsOnly {
			return p, errBadRequest("invalid_parameter", "shards_only and endpoints_only exclude each other")
		}
	}
	if d := p.DeadlineSeconds; d != nil && (*d < 1 || *d > 7*24*3600) {
		return p, errBadRequest("invalid_parameter", "field \"deadline_seconds\" must be 1 to 604800")
	}
	return p, nil
}

// checkEvictDBs checks that every entry of evict_dbs is the plain decimal
// uid of an existing database. An empty string (or a null, which decodes
// to one) must never stand for "every database" (SPEC §9).
func (s *Server) checkEvictDBs(list []string) error {
	for _, d := range list {
		if d == "" {
			return errBadRequest("invalid_parameter", "field \"evict_dbs\" holds an empty string or null; list database uids such as \"1\"")
		}
	}
	var bad string
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		for _, d := range list {
			uid, ok := plainUID(d)
			if _, exists := st.BDBs[uid]; !ok || !exists {
				bad = d
				return
			}
		}
	})
	if bad != "" {
		return errBadRequest("invalid_parameter", "field \"evict_dbs\" names "+quote(bad)+", which is not a database uid")
	}
	return nil
}

// actionQuery reads dry_run, which takes exactly "true" or "false" (the
// router has already refused every other parameter and repeats), so that a
// misspelt dry run never runs the action (SPEC §3.2).
func actionQuery(r *http.Request) (dryRun bool, err error) {
	v, given := r.URL.Query()["dry_run"]
	if !given {
		return false, nil
	}
	if v[0] != "true" && v[0] != "false" {
		return false, errBadRequest("invalid_parameter", "dry_run must be true or false, got "+quote(v[0]))
	}
	return v[0] == "true", nil
}

// viaNode is the node the client sent the request to: the follower that
// forwarded it, or this node.
func (s *Server) viaNode(r *http.Request) int {
	if s.fromPeer(r) {
		if n, ok := plainUID(r.Header.Get(forwardedHeader)); ok {
			return n
		}
	}
	return s.raft.ID()
}

// planStatus maps the pre-check's failure codes to statuses (SPEC §3.2).
var planStatus = map[string]int{
	"insufficient_resources": http.StatusNotAcceptable,
	"quorum_loss":            http.StatusNotAcceptable,
	"snapshot_not_found":     http.StatusNotFound,
	"node_not_found":         http.StatusNotFound,
}

func (s *Server) startNodeAction(w http.ResponseWriter, r *http.Request, p principal) error {
	uid, name, err := nodeAction(r)
	if err != nil {
		return err
	}
	dryRun, err := actionQuery(r)
	if err != nil {
		return err
	}
	var exists bool
	s.fsm.Read(func(st *fsm.State, _ uint64) { _, exists = st.Nodes[uid] })
	if !exists {
		return errNodeNotFound(uid)
	}
	params, err := s.actionParams(r, name)
	if err != nil {
		return err
	}
	s.fsm.Read(func(st *fsm.State, _ uint64) { params = params.Resolved(name, st.Policy) })
	raw, err := json.Marshal(params)
	if err != nil {
		return err
	}
	now := time.Now()
	deadline := DefaultActionDeadline
	if params.DeadlineSeconds != nil {
		deadline = time.Duration(*params.DeadlineSeconds) * time.Second
	}
	taskID := uuid.NewString()
	// Set by serveWrite when it sends a submission again after a leader
	// change, or by the peer that forwarded such a retry.
	if id := r.Header.Get(taskHeader); id != "" {
		if _, err := uuid.Parse(id); err == nil {
			taskID = id
		}
	}
	// The budget is a duration that the executing leader measures on its
	// own clock; the absolute deadline is for executors of older builds.
	a := fsm.Action{TaskID: taskID, Action: name, NodeUID: uid, CreationTime: now.Unix(),
		Deadline: now.Add(deadline).Unix(), TimeoutMS: deadline.Milliseconds(), Params: raw}

	// Pre-check (SPEC §4.1) against the leader's state; the executor checks
	// again when the action starts.
	var steps []fsm.Step
	var running *fsm.Action
	var perr error
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		if prev := st.ActionByTask(taskID); prev != nil {
			return // a retried submission: Apply answers with its record
		}
		if cur := st.ActiveAction(uid); cur != nil {
			c := *cur
			running = &c
			return
		}
		steps, perr = cluster.PlanAction(st, &a, now)
	})
	if running != nil {
		return errInProgress(running)
	}
	var pe *fsm.Error
	if errors.As(perr, &pe) {
		return planFailure(pe.Code, pe.Description)
	}
	if perr != nil {
		return perr
	}
	if n := len(steps); n > 0 && steps[n-1].Kind == fsm.StepFail {
		return planFailure(steps[n-1].Code, steps[n-1].Message)
	}
	if dryRun {
		writeJSON(w, http.StatusOK, map[string]any{"plan": cluster.ForLeader(steps, name, s.raft.ID())})
		return nil
	}
	res, err := s.submit(r.Context(), &fsm.SubmitAction{Actor: p.actor(), Action: a,
		By: fmt.Sprintf("%s through node %d", p.Email, s.viaNode(r))})
	if errors.Is(err, raftnode.ErrLeadershipLost) || errors.Is(err, raftnode.ErrNotLeader) {
		return &retryAs{taskID: taskID}
	}
	if errors.Is(err, fsm.ErrActionInProgress) {
		var cur *fsm.Action
		s.fsm.Read(func(st *fsm.State, _ uint64) {
			if c := st.ActiveAction(uid); c != nil {
				cc := *c
				cur = &cc
			}
		})
		if cur != nil {
			return errInProgress(cur)
		}
	}
	var fe *fsm.Error
	if errors.As(err, &fe) {
		if _, ok := planStatus[fe.Code]; ok {
			// Admission in Apply refused it against the whole cluster.
			return planFailure(fe.Code, fe.Description)
		}
	}
	if err != nil {
		return err
	}
	return answerAction(w, res)
}

func errInProgress(a *fsm.Action) *apiError {
	return &apiError{Status: http.StatusConflict, Code: "action_in_progress",
		Description: fmt.Sprintf("action %s (task %s) is %s on node %d", a.Action, a.TaskID, a.Status, a.NodeUID)}
}

func (s *Server) cancelNodeAction(w http.ResponseWriter, r *http.Request, p principal) error {
	uid, name, err := nodeAction(r)
	if err != nil {
		return err
	}
	if err := decodeBody(r, &struct{}{}); err != nil {
		return err
	}
	res, err := s.submit(r.Context(), &fsm.CancelAction{Actor: p.actor(), Node: uid, Action: name,
		By: fmt.Sprintf("%s through node %d", p.Email, s.viaNode(r)), Time: time.Now().Unix()})
	if errors.Is(err, fsm.ErrActionNotFound) {
		return errActionNotFound(uid, name)
	}
	if err != nil {
		return err
	}
	return answerAction(w, res)
}
