package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"cnm/fsm"
)

// sim is a scratch copy of the placement that planning changes step by step.
type sim struct {
	st     *fsm.State
	shards map[string]*fsm.Shard
	// keepStranded leaves an endpoint whose database's only masters stay
	// on the node where it is: maintenance_on with evict_dbs keeps the
	// other databases' shards there on purpose.
	keepStranded bool
}

func newSim(st *fsm.State) *sim {
	s := &sim{st: st, shards: make(map[string]*fsm.Shard, len(st.Shards))}
	for id, sh := range st.Shards {
		c := *sh
		s.shards[id] = &c
	}
	return s
}

// pairOf finds sh's pair through the state's index: the copy holds the
// same shards, and pairs are fixed when a database is created.
func (s *sim) pairOf(sh *fsm.Shard) *fsm.Shard {
	if id := s.st.PairUID(sh); id != "" {
		return s.shards[id]
	}
	return nil
}

func (s *sim) on(node int) []*fsm.Shard {
	var out []*fsm.Shard
	for _, id := range s.st.ShardUIDs() {
		if sh := s.shards[id]; sh.NodeUID == node {
			out = append(out, sh)
		}
	}
	return out
}

func (s *sim) failover(sh *fsm.Shard) fsm.Step {
	if p := s.pairOf(sh); p != nil {
		sh.Role, p.Role = fsm.RoleSlave, fsm.RoleMaster
	}
	return fsm.Step{Kind: fsm.StepFailover, Shard: sh.UID, BDB: sh.BDBUID, From: sh.NodeUID}
}

// PlanAction turns an action into steps against the current state, or says
// why it cannot run (an *fsm.Error: fsm.ErrInsufficientResources,
// fsm.ErrQuorumLoss or fsm.ErrSnapshotNotFound). now names the maintenance
// snapshot. It plans against the outlook of st for a: the state as every
// other non-terminal action will leave it (SPEC §3.2).
func PlanAction(st *fsm.State, a *fsm.Action, now time.Time) ([]fsm.Step, error) {
	return planOn(outlook(st, a.TaskID), a, now)
}

// Admit is the admission rule that Apply runs on every submitted action
// (fsm.WithAdmission): the pre-checks of SPEC §4.1 against the outlook of
// the state. A maintenance_on that would end in insufficient_resources is
// refused at admission, as the pre-check of a POST does. It is
// deterministic: the snapshot name comes from the action's creation time.
func Admit(st *fsm.State, a *fsm.Action) ([]fsm.Step, *fsm.Error) {
	steps, err := PlanAction(st, a, time.Unix(a.CreationTime, 0))
	var fe *fsm.Error
	switch {
	case errors.As(err, &fe):
		return nil, fe
	case err != nil:
		return nil, fsm.Errorf(fsm.ErrInvalidParameter, "%w", err)
	}
	if n := len(steps); n > 0 && steps[n-1].Kind == fsm.StepFail {
		return nil, &fsm.Error{Code: steps[n-1].Code, Description: steps[n-1].Message}
	}
	return steps, nil
}

// outlook returns st as it will be once every non-terminal action other
// than task has done its work: nodes that a remove or maintenance_on empties
// count as in maintenance or removed (no shard target, no voter), and the
// moves and failovers those actions still have to make (their own steps, or
// what admission reserved for them while queued) are made. Shards they will
// move count against their targets' capacity. st is not changed; the
// outlook shares nothing with it that the planner changes.
func outlook(st *fsm.State, task string) *fsm.State {
	var others []*fsm.Action
	for _, b := range st.AllActions() {
		if b.TaskID != task && !fsm.Terminal(b.Status) {
			others = append(others, b)
		}
	}
	if len(others) == 0 {
		return st
	}
	v := st.View()
	for _, b := range others {
		if n, ok := v.Nodes[b.NodeUID]; ok {
			switch b.Action {
			case fsm.ActionRemove:
				n.Removing, n.AcceptServers = true, false
			case fsm.ActionMaintenanceOn:
				n.Maintenance = true
			}
		}
		pending := b.Reserved
		if len(b.Steps) > 0 {
			pending = b.Steps[min(b.Done, len(b.Steps)):]
		}
		for _, step := range pending {
			sh, ok := v.Shards[step.Shard]
			if !ok {
				continue
			}
			if f := runnerOf(step.Kind).foresee; f != nil {
				f(v, sh, step)
			}
		}
	}
	return v
}

// ForLeader drops enslave_node's leadership hand-over when the node does
// not lead (leader is the uid of the node that plans, the leader): a plan,
// shown or run, has no step that does nothing. remove keeps its hand-over
// step in any case, as the node must never be removed while it leads.
func ForLeader(steps []fsm.Step, action string, leader int) []fsm.Step {
	if action != fsm.ActionEnslaveNode {
		return steps
	}
	out := steps[:0:0]
	for _, st := range steps {
		if st.Kind != fsm.StepTransferLeader || st.From == leader {
			out = append(out, st)
		}
	}
	return out
}

func planOn(st *fsm.State, a *fsm.Action, now time.Time) ([]fsm.Step, error) {
	var p Params
	if len(a.Params) > 0 {
		if err := json.Unmarshal(a.Params, &p); err != nil {
			return nil, fsm.Errorf(fsm.ErrInvalidParameter, "params: %w", err)
		}
	}
	n, ok := st.Nodes[a.NodeUID]
	if !ok {
		return nil, fsm.NoSuchNode(a.NodeUID)
	}
	if err := QuorumCheck(st, a.NodeUID, a.Action); err != nil {
		return nil, err
	}
	s := newSim(st)
	switch a.Action {
	case fsm.ActionRemove:
		return s.planRemove(n, flag(p.WaitForPersistence, st.Policy.PersistentNodeRemoval))
	case fsm.ActionMaintenanceOn:
		return s.planMaintenanceOn(n, p, now)
	case fsm.ActionMaintenanceOff:
		return s.planMaintenanceOff(n, p)
	case fsm.ActionEnslaveNode:
		return s.planEnslave(n, p)
	}
	return nil, fsm.Errorf(fsm.ErrUnsupportedAction, "unknown action %q", a.Action)
}

// usablePair returns sh's pair when a failover may make it the master: its
// node is in the cluster and not being emptied (being removed, or the node
// of another non-terminal remove or maintenance_on). A node that is already
// in maintenance may keep replicas (keep_slave_shards) and take over from
// them, as before.
func (s *sim) usablePair(sh *fsm.Shard) *fsm.Shard {
	p := s.pairOf(sh)
	if p == nil {
		return nil
	}
	n, ok := s.st.Nodes[p.NodeUID]
	if !ok || n.Removing || s.st.Emptying(p.NodeUID) {
		return nil
	}
	return p
}

// evacuate plans moving shards off node (failing masters over first when
// they have a replica), and rebinding its endpoints.
func (s *sim) evacuate(node int, move func(*fsm.Shard) bool, persist bool) ([]fsm.Step, error) {
	var steps []fsm.Step
	// Replicas first (their masters stay put), then masters: each master with
	// a replica elsewhere fails over, so the database never loses its master.
	for _, sh := range s.on(node) {
		if sh.Role == fsm.RoleMaster && s.usablePair(sh) != nil {
			steps = append(steps, s.failover(sh))
		}
	}
	var moving []*fsm.Shard
	for _, sh := range s.on(node) {
		if move(sh) {
			moving = append(moving, sh)
		}
	}
	slices.SortStableFunc(moving, func(x, y *fsm.Shard) int { // replicas first
		return boolInt(x.Role == fsm.RoleMaster) - boolInt(y.Role == fsm.RoleMaster)
	})
	if len(moving) > 0 {
		needs := make([]Need, len(moving))
		for i, sh := range moving {
			needs[i] = Need{ID: fmt.Sprintf("%s (db %d, %s)", sh.UID, sh.BDBUID, sh.Role), Memory: sh.Memory, Pair: -1, Avoid: []int{node}}
			if p := s.pairOf(sh); p != nil {
				needs[i].PairNode = p.NodeUID
			}
		}
		cands := Candidates(s.st)
		for i := range cands {
			if cands[i].UID == node {
				cands[i].Eligible = false
			}
		}
		targets, err := Plan(cands, needs, PolicyOf(s.st))
		if err != nil {
			return nil, fsm.Errorf(fsm.ErrInsufficientResources, "%w", err)
		}
		for i, sh := range moving {
			steps = append(steps, fsm.Step{Kind: fsm.StepMove, Shard: sh.UID, BDB: sh.BDBUID, From: node, To: targets[i]})
			sh.NodeUID = targets[i]
		}
		if persist {
			for _, sh := range moving {
				if b := s.st.BDBs[sh.BDBUID]; b != nil && b.DataPersistence != fsm.PersistenceDisabled {
					steps = append(steps, fsm.Step{Kind: fsm.StepWaitPersistence, Shard: sh.UID, BDB: sh.BDBUID, To: sh.NodeUID})
				}
			}
		}
	}
	rebinds, err := s.rebindOff(node)
	if err != nil {
		return nil, err
	}
	return append(steps, rebinds...), nil
}

// rebindOff moves every endpoint bound to node to a node hosting one of its
// database's masters, preferring nodes that take part fully. With
// keepStranded, the endpoint of a database whose only masters stay on node
// stays with them.
func (s *sim) rebindOff(node int) ([]fsm.Step, error) {
	var steps []fsm.Step
	for _, uid := range s.st.BDBUIDs() {
		for _, e := range s.st.BDBs[uid].Endpoints {
			if e.NodeUID != node {
				continue
			}
			to, fallback, staysHere := 0, 0, false
			for _, id := range s.st.ShardUIDs() {
				sh := s.shards[id]
				if sh.BDBUID != uid || sh.Role != fsm.RoleMaster {
					continue
				}
				n := s.st.Nodes[sh.NodeUID]
				switch {
				case sh.NodeUID == node:
					staysHere = true
				case n == nil:
				case n.Accepts():
					if to == 0 {
						to = sh.NodeUID
					}
				case fallback == 0:
					fallback = sh.NodeUID
				}
			}
			if to == 0 {
				to = fallback
			}
			if to == 0 && staysHere && s.keepStranded {
				continue
			}
			if to == 0 {
				return nil, fsm.Errorf(fsm.ErrInsufficientResources, "endpoint %s of database %d: no other node hosts one of its masters", e.UID, uid)
			}
			steps = append(steps, fsm.Step{Kind: fsm.StepRebind, BDB: uid, Endpoint: e.UID, From: node, To: to})
		}
	}
	return steps, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *sim) planRemove(n *fsm.Node, persist bool) ([]fsm.Step, error) {
	steps := []fsm.Step{{Kind: fsm.StepTransferLeader, From: n.UID}}
	ev, err := s.evacuate(n.UID, func(*fsm.Shard) bool { return true }, persist)
	if err != nil {
		return nil, err
	}
	steps = append(steps, ev...)
	return append(steps, fsm.Step{Kind: fsm.StepRemoveMember, From: n.UID}), nil
}

func (s *sim) planMaintenanceOn(n *fsm.Node, p Params, now time.Time) ([]fsm.Step, error) {
	var steps []fsm.Step
	if len(s.st.Snapshots[n.UID]) == 0 || flag(p.OverwriteSnapshot, false) {
		name := "maintenance_mode_" + now.UTC().Format("2006-01-02_15-04-05")
		steps = append(steps, fsm.Step{Kind: fsm.StepSnapshot, Snapshot: name, Time: now.Unix()})
	}
	steps = append(steps, fsm.Step{Kind: fsm.StepMaintenance})
	evictHA, evictAA := flag(p.EvictHAReplica, true), flag(p.EvictActiveActiveReplica, true)
	if flag(p.KeepSlaveShards, false) {
		evictHA, evictAA = false, false
	}
	only := map[int]bool{}
	for _, d := range p.EvictDBs {
		var uid int
		if _, err := fmt.Sscan(d, &uid); err == nil {
			only[uid] = true
		}
	}
	move := func(sh *fsm.Shard) bool {
		if len(only) > 0 && !only[sh.BDBUID] {
			return false
		}
		if sh.Role == fsm.RoleMaster {
			return true // a master left here has no replica: it always moves
		}
		if b := s.st.BDBs[sh.BDBUID]; b != nil && b.CRDT {
			return evictAA
		}
		return evictHA
	}
	s.keepStranded = len(only) > 0
	ev, err := s.evacuate(n.UID, move, false)
	var fe *fsm.Error
	if errors.As(err, &fe) && errors.Is(fe, fsm.ErrInsufficientResources) {
		// SPEC §4.3: the node stays in maintenance and keeps its snapshot,
		// so that maintenance_off can restore it.
		return append(steps, fsm.Step{Kind: fsm.StepFail, Code: fsm.ErrInsufficientResources.Code, Message: fe.Description}), nil
	}
	if err != nil {
		return nil, err
	}
	return append(steps, ev...), nil
}

func (s *sim) planMaintenanceOff(n *fsm.Node, p Params) ([]fsm.Step, error) {
	snaps := s.st.Snapshots[n.UID]
	var snap *fsm.NodeSnapshot
	if p.SnapshotName != nil {
		for _, sn := range snaps {
			if sn.Name == *p.SnapshotName {
				snap = sn
			}
		}
	} else if len(snaps) > 0 {
		snap = snaps[len(snaps)-1]
	}
	skip := flag(p.SkipShardsRestore, false)
	if snap == nil && !skip {
		name := "(latest)"
		if p.SnapshotName != nil {
			name = *p.SnapshotName
		}
		return nil, fsm.Errorf(fsm.ErrSnapshotNotFound, "node %d has no maintenance snapshot %s", n.UID, name)
	}
	steps := []fsm.Step{{Kind: fsm.StepEndMaintenance}}
	if !skip {
		// Move back what still exists and is elsewhere; the node must hold it.
		var back []*fsm.Shard
		for _, ss := range snap.Shards {
			if sh, ok := s.shards[ss.UID]; ok && sh.NodeUID != n.UID {
				back = append(back, sh)
			}
		}
		cand := Candidates(s.st)
		for i := range cand {
			cand[i].Eligible = cand[i].UID == n.UID && n.Status == fsm.NodeActive
		}
		needs := make([]Need, len(back))
		for i, sh := range back {
			needs[i] = Need{ID: fmt.Sprintf("%s (db %d)", sh.UID, sh.BDBUID), Memory: sh.Memory, Pair: -1}
			if pr := s.pairOf(sh); pr != nil {
				needs[i].PairNode = pr.NodeUID
			}
		}
		if _, err := Plan(cand, needs, PolicyOf(s.st)); err != nil {
			return nil, fsm.Errorf(fsm.ErrInsufficientResources, "restore of snapshot %s: %w", snap.Name, err)
		}
		for _, sh := range back {
			steps = append(steps, fsm.Step{Kind: fsm.StepMove, Shard: sh.UID, BDB: sh.BDBUID, From: sh.NodeUID, To: n.UID})
			sh.NodeUID = n.UID
		}
		// Roles: a shard that was a master here becomes master again.
		for _, ss := range snap.Shards {
			sh, ok := s.shards[ss.UID]
			if !ok || sh.Role == ss.Role || ss.Role != fsm.RoleMaster {
				continue
			}
			if pr := s.pairOf(sh); pr != nil && pr.Role == fsm.RoleMaster {
				steps = append(steps, s.failover(pr))
			}
		}
		for _, eid := range snap.Endpoints {
			for _, uid := range s.st.BDBUIDs() {
				for _, e := range s.st.BDBs[uid].Endpoints {
					if e.UID == eid && e.NodeUID != n.UID {
						steps = append(steps, fsm.Step{Kind: fsm.StepRebind, BDB: uid, Endpoint: eid, From: e.NodeUID, To: n.UID})
					}
				}
			}
		}
	}
	if snap != nil {
		steps = append(steps, fsm.Step{Kind: fsm.StepDeleteSnapshot, Snapshot: snap.Name})
	}
	return steps, nil
}

func (s *sim) planEnslave(n *fsm.Node, p Params) ([]fsm.Step, error) {
	var steps []fsm.Step
	if !flag(p.EndpointsOnly, false) {
		for _, sh := range s.on(n.UID) {
			if sh.Role != fsm.RoleMaster {
				continue
			}
			if p := s.pairOf(sh); p == nil {
				return nil, fsm.Errorf(fsm.ErrInsufficientResources, "master shard %s of database %d has no replica to take over", sh.UID, sh.BDBUID)
			} else if s.usablePair(sh) == nil {
				return nil, fsm.Errorf(fsm.ErrInsufficientResources, "master shard %s of database %d: its replica %s is on node %d, which is being emptied", sh.UID, sh.BDBUID, p.UID, p.NodeUID)
			}
			steps = append(steps, s.failover(sh))
		}
	}
	if !flag(p.ShardsOnly, false) {
		rb, err := s.rebindOff(n.UID)
		if err != nil {
			return nil, err
		}
		steps = append(steps, rb...)
	}
	return append(steps, fsm.Step{Kind: fsm.StepTransferLeader, From: n.UID}), nil
}
