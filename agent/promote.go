package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"cnm/fsm"
)

// PromoteRequest asks an agent to make its replica of a shard the master in
// place of the shard's old master, as a failover step does. The old master
// is named by host:port (OldMaster), or by its node's API address and shard
// uid, resolved through that node's agent; when neither is given or the
// old node does not answer, a backend whose replicas follow a process
// takes the master its replica follows.
type PromoteRequest struct {
	OldMaster  string `json:"old_master,omitempty"`
	OldNode    string `json:"old_node,omitempty"`
	OldNodeUID int    `json:"old_node_uid,omitempty"`
	OldShard   string `json:"old_shard,omitempty"`
	// Op names the failover step; a newer term owning its task refuses it.
	Op Op `json:"op"`
	// InSync promotes only a replica that is in sync, and refuses one
	// that is not with replica_not_in_sync: a replica far behind would
	// hold the old master's writes back while it caught up. The check
	// and the promotion are one call, not two round trips a failover.
	InSync bool `json:"in_sync,omitempty"`
}

// ErrNotInSync refuses a promotion that asked for a replica in sync
// (PromoteRequest.InSync) of one that is not yet.
var ErrNotInSync = errors.New("replica not in sync")

// Promoter is a backend that takes care itself of making a replica the
// master in place of another process: it holds the old master's writes
// back until the replica has them all, so that none it acknowledged is
// lost. A backend that is not one is promoted by SwitchRole alone.
type Promoter interface {
	// Promote makes the local shard uid the master in place of old
	// (host:port, or empty for the master it follows). A shard that is
	// master already succeeds: a retried call must not fail.
	Promote(ctx context.Context, uid, old string) error
}

// promoteShard serves POST /shards/{uid}/promote, behind the same term
// fence as copies: a deposed leader's failover must not switch roles that
// a newer leader has planned otherwise.
func (a *Agent) promoteShard(w http.ResponseWriter, r *http.Request) {
	var req PromoteRequest
	if err := decode(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	uid := mux.Vars(r)["uid"]
	// Not beside a copy of the same shard, which may be switching it.
	release, ok := a.claim(w, req.Op, uid)
	if !ok {
		return
	}
	defer release()
	before, berr := a.cfg.Backend.Info(uid)
	if req.InSync {
		switch {
		case berr != nil:
			writeErr(w, berr)
			return
		case before.Role != fsm.RoleMaster && !before.InSync:
			writeErr(w, fmt.Errorf("replica %s: %w", uid, ErrNotInSync))
			return
		}
	}
	old := a.oldMaster(r.Context(), req)
	err := a.underFence(req.Op, func() error { return a.promoteLocal(r.Context(), uid, old) })
	if err != nil {
		writeErr(w, err)
		return
	}
	info, err := a.cfg.Backend.Info(uid)
	if err != nil {
		writeErr(w, err)
		return
	}
	a.notePromoted(uid, req.Op)
	// The op log records what was carried out: a retry, or a new leader's
	// rerun of a step whose promotion already happened, changes nothing.
	if before.Role != fsm.RoleMaster {
		a.record(OpRecord{Op: req.Op, Kind: "promote", Shard: uid, From: old, Time: time.Now().Unix()})
		a.log.Info("promoted shard", "shard_uid", uid, "old_master", old, "task_id", req.Op.TaskID, "step", req.Op.Step, "term", req.Op.Term)
	}
	writeJSON(w, http.StatusOK, info)
}

// oldMaster is host:port of the master a promotion replaces, empty when
// the request does not say or its node does not answer: the backend then
// takes the master its replica follows.
func (a *Agent) oldMaster(ctx context.Context, req PromoteRequest) string {
	if _, ok := a.cfg.Backend.(Promoter); !ok || req.OldMaster != "" {
		return req.OldMaster
	}
	if req.OldNode == "" || req.OldShard == "" {
		return ""
	}
	addr, err := a.resolveShard(ctx, pairRef{uid: req.OldShard, node: req.OldNodeUID, apiAddr: req.OldNode})
	if err != nil {
		a.log.Warn("old master not resolved for a promotion", "shard_uid", req.OldShard, "node_uid", req.OldNodeUID, "error", err)
		return ""
	}
	return addr
}

// promoteLocal makes the local shard uid the master; without a Promoter
// that is the role switch reconcile would make after the commit anyway,
// which leaves a master as it is.
func (a *Agent) promoteLocal(ctx context.Context, uid, old string) error {
	if p, ok := a.cfg.Backend.(Promoter); ok {
		return p.Promote(ctx, uid, old)
	}
	if err := a.cfg.Backend.SwitchRole(ctx, uid, fsm.RoleMaster); err != nil {
		return fmt.Errorf("promote shard %s: %w", uid, err)
	}
	return nil
}

// notePromoted remembers that uid was promoted for op's step: until this
// node's state has that step committed, the state still names the old
// roles, and a reconcile must leave uid as the promotion made it. The
// step's own action says so once this node has applied its begin, but
// the promotion can arrive first (a follower learns of a commit with the
// leader's next message), and a pass then would switch the new master
// back before the step could commit.
func (a *Agent) notePromoted(uid string, op Op) {
	if op.TaskID == "" {
		return // a switch back, which no step commits
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.promoted[uid] = op
}

// promotions is a copy of what notePromoted holds.
func (a *Agent) promotions() map[string]Op {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.promoted)
}

// stillSwitching adds to switching the shards of promoted whose step st
// does not have committed yet, and returns those whose step it has, or
// whose action is over, which need no protection any more.
func stillSwitching(st *fsm.State, promoted map[string]Op, switching map[string]bool) (done []string) {
	for uid, op := range promoted {
		act := st.ActionByTask(op.TaskID)
		// A newer leader that resumes the step promotes the same copy
		// again (nothing to do), or ends the action and takes it back:
		// either way the copy stays as it is until then.
		if act != nil && !fsm.Terminal(act.Status) && act.Done <= op.Step {
			switching[uid] = true
			continue
		}
		done = append(done, uid)
	}
	return done
}

// forgetPromoted drops the promotions stillSwitching found done, unless
// another promotion replaced them since.
func (a *Agent) forgetPromoted(seen map[string]Op, done []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, uid := range done {
		if a.promoted[uid] == seen[uid] {
			delete(a.promoted, uid)
		}
	}
}

// switchingIn is the shards whose roles a failover step in flight is
// switching: the current step of an unfinished action, on its shard and
// that shard's pair. Until the step commits, the state still names the
// old roles, and a reconcile must not switch back what the step switched.
func switchingIn(st *fsm.State) map[string]bool {
	out := map[string]bool{}
	for _, byName := range st.Actions {
		for _, act := range byName {
			if fsm.Terminal(act.Status) || act.Done >= len(act.Steps) || act.Steps[act.Done].Kind != fsm.StepFailover {
				continue
			}
			uid := act.Steps[act.Done].Shard
			out[uid] = true
			if sh, ok := st.Shards[uid]; ok {
				if p := st.PairOf(sh); p != nil {
					out[p.UID] = true
				}
			}
		}
	}
	return out
}
