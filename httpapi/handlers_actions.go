package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"cnm/control"
	"cnm/fsm"
	"cnm/peer"
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
	var recs []*fsm.Action
	s.fsm.Read(func(st *fsm.State, _ uint64) { recs = st.AllActions() })
	return s.writeActions(w, recs)
}

// writeActions answers {"actions": [...]}, as actionsView encodes, through
// the cache of encoded records.
func (s *Server) writeActions(w http.ResponseWriter, recs []*fsm.Action) error {
	parts, err := s.actionJSON.list(recs)
	if err != nil {
		return err
	}
	writeList(w, `{"actions":`, parts, "}")
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
	var recs []*fsm.Action
	var known bool
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		if known = nodeOrRecords(st, uid); known {
			for _, a := range st.AllActions() {
				if a.NodeUID == uid {
					recs = append(recs, a)
				}
			}
		}
	})
	if !known {
		return fsm.NoSuchNode(uid)
	}
	// At most one record per action name: encoded as it is, without
	// displacing the whole list from the cache.
	out := actionsView{Actions: []actionView{}}
	for _, a := range recs {
		out.Actions = append(out.Actions, viewAction(a))
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
			return "", fsm.ErrActionNotFound.With("there is no action " + quote(name) + ": the actions are " + known)
		}
		return "", fsm.ErrUnsupportedAction.With("unsupported action " + quote(name) + ": use " + known)
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

func errActionNotFound(uid int, name string) *fsm.Error { return control.ErrNoSuchAction(uid, name) }

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
		return fsm.NoSuchNode(uid)
	case !found:
		return errActionNotFound(uid, name)
	}
	writeJSON(w, http.StatusOK, v)
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
		return false, fsm.ErrInvalidParameter.With("dry_run must be true or false, got " + quote(v[0]))
	}
	return v[0] == "true", nil
}

// viaNode is the node the client sent the request to: the follower that
// forwarded it, or this node.
func (s *Server) viaNode(r *http.Request) int {
	if s.checker.Allows(r) {
		if n, ok := control.PlainUID(r.Header.Get(peer.ForwardedHeader)); ok {
			return n
		}
	}
	return s.raft.ID()
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
		return fsm.NoSuchNode(uid)
	}
	var params control.ActionParams
	if err := decodeFields(r, &params, actionFields(name)); err != nil {
		return err
	}
	out, err := s.ctl.SubmitAction(r.Context(), control.ActionRequest{TaskID: taskID(r), Node: uid, Action: name,
		Params: params, DryRun: dryRun, Actor: p.actor(), By: fmt.Sprintf("%s through node %d", p.Email, s.viaNode(r))})
	if err != nil {
		return err
	}
	if dryRun {
		writeJSON(w, http.StatusOK, map[string]any{"plan": out.Plan})
		return nil
	}
	writeJSON(w, http.StatusOK, viewAction(out.Action))
	return nil
}

func (s *Server) cancelNodeAction(w http.ResponseWriter, r *http.Request, p principal) error {
	uid, name, err := nodeAction(r)
	if err != nil {
		return err
	}
	if err := decodeBody(r, &struct{}{}); err != nil {
		return err
	}
	a, err := s.ctl.CancelAction(r.Context(), p.actor(), uid, name, fmt.Sprintf("%s through node %d", p.Email, s.viaNode(r)))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewAction(a))
	return nil
}
