package fsm

import (
	"maps"
	"slices"
)

// Step kinds. Each names the effect its commit has on the state.
const (
	StepSnapshot        = "snapshot"         // record the node's maintenance snapshot
	StepMaintenance     = "set_maintenance"  // the node stops accepting shards
	StepFailover        = "failover"         // a master and its replica swap roles
	StepMove            = "move_shard"       // a shard's copy moves to another node
	StepRebind          = "rebind_endpoint"  // an endpoint moves to another node
	StepWaitPersistence = "wait_persistence" // no effect: waits for persistence files
	StepTransferLeader  = "transfer_leadership"
	StepRemoveMember    = "remove_member"   // the node leaves raft and the node table
	StepEndMaintenance  = "end_maintenance" // the node accepts shards again
	StepDeleteSnapshot  = "delete_snapshot"
	// StepFail ends the action as failed with Code and Message once the
	// steps before it are done (maintenance_on that cannot evacuate the
	// node still puts it in maintenance and keeps its snapshot).
	StepFail = "fail"
)

// Step is one planned unit of an action.
type Step struct {
	Kind     string `json:"kind"`
	Shard    string `json:"shard,omitempty"`
	BDB      int    `json:"bdb,omitempty"`
	From     int    `json:"from,omitempty"`
	To       int    `json:"to,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	Time     int64  `json:"time,omitempty"`
	Code     string `json:"code,omitempty"`
	Message  string `json:"message,omitempty"`
}

// stepKind is all the state machine knows of one kind of step, so that a
// kind is added or changed in one place and no switch elsewhere can miss it.
type stepKind struct {
	// effect applies what committing the step means for the cluster model.
	// Effects are idempotent where a replay could meet them already done.
	effect func(s *State, a *Action, st Step) *Error
	// retargetable: the step has a target node that RetargetStep may change
	// before it is done, because the planned one can no longer take it.
	retargetable bool
	// holdsSlots: the step switches the roles or the place of its shard's
	// copies, so its work begins only once it holds the shard's slot range
	// (BeginStep).
	holdsSlots bool
}

var stepKinds = map[string]stepKind{
	StepSnapshot:        {effect: (*State).recordSnapshot},
	StepMaintenance:     {effect: setMaintenance(true)},
	StepEndMaintenance:  {effect: setMaintenance(false)},
	StepDeleteSnapshot:  {effect: (*State).deleteSnapshot},
	StepFailover:        {effect: (*State).failover, holdsSlots: true},
	StepMove:            {effect: (*State).moveShard, retargetable: true, holdsSlots: true},
	StepRebind:          {effect: (*State).rebindEndpoint},
	StepRemoveMember:    {effect: (*State).removeMember},
	StepWaitPersistence: {effect: noEffect},
	StepTransferLeader:  {effect: noEffect},
	StepFail:            {effect: noEffect},
}

// HoldsSlots reports whether a step of kind must begin (BeginStep) before
// its work does.
func HoldsSlots(kind string) bool { return stepKinds[kind].holdsSlots }

// StepKinds returns the name of every step kind the state machine knows,
// sorted: the executor must be able to run each of them.
func StepKinds() []string { return slices.Sorted(maps.Keys(stepKinds)) }

// stepEffect applies what committing step st means for the cluster model.
func (s *State) stepEffect(a *Action, st Step) *Error {
	k, ok := stepKinds[st.Kind]
	if !ok {
		return Errorf(ErrInvalidParameter, "unknown step kind %q", st.Kind)
	}
	return k.effect(s, a, st)
}

// noEffect is the effect of steps whose work is outside the model (waiting
// for a replica or for persistence, handing leadership over) or that only
// end the action.
func noEffect(*State, *Action, Step) *Error { return nil }

func (s *State) recordSnapshot(a *Action, st Step) *Error {
	snap := &NodeSnapshot{Name: st.Snapshot, Time: st.Time, Shards: []SnapshotShard{}, Endpoints: []string{}}
	for _, sh := range s.ShardsOn(a.NodeUID) {
		snap.Shards = append(snap.Shards, SnapshotShard{UID: sh.UID, BDBUID: sh.BDBUID, Role: sh.Role})
	}
	for _, uid := range s.BDBUIDs() {
		for _, e := range s.BDBs[uid].Endpoints {
			if e.NodeUID == a.NodeUID {
				snap.Endpoints = append(snap.Endpoints, e.UID)
			}
		}
	}
	// Only the latest maintenance snapshot of a node is kept.
	if s.Snapshots == nil {
		s.Snapshots = map[int][]*NodeSnapshot{}
	}
	s.Snapshots[a.NodeUID] = []*NodeSnapshot{snap}
	return nil
}

// setMaintenance is the effect of entering (on) or leaving maintenance.
func setMaintenance(on bool) func(*State, *Action, Step) *Error {
	return func(s *State, a *Action, _ Step) *Error {
		n, ok := s.Nodes[a.NodeUID]
		if !ok {
			return NoSuchNode(a.NodeUID)
		}
		c := *n
		c.Maintenance = on
		s.Nodes[c.UID] = &c
		return nil
	}
}

func (s *State) deleteSnapshot(a *Action, st Step) *Error {
	list := s.Snapshots[a.NodeUID]
	for i, sn := range list {
		if sn.Name == st.Snapshot {
			s.Snapshots[a.NodeUID] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(s.Snapshots[a.NodeUID]) == 0 {
		delete(s.Snapshots, a.NodeUID)
	}
	return nil
}

func (s *State) failover(a *Action, st Step) *Error {
	sh, ok := s.Shards[st.Shard]
	if !ok {
		return nil // the database was deleted meanwhile: nothing to do
	}
	pair := s.PairOf(sh)
	if pair == nil {
		return Errorf(ErrInvalidParameter, "shard %s has no replica to fail over to", sh.UID)
	}
	// The step names the shard that must end up a replica.
	if sh.Role == RoleMaster && pair.NodeUID != a.NodeUID && s.Emptying(pair.NodeUID) {
		return Errorf(ErrPlacementConflict, "the replica %s of shard %s is on node %d, which another action is emptying", pair.UID, sh.UID, pair.NodeUID)
	}
	if sh.Role == RoleMaster {
		m, r := *sh, *pair
		m.Role, r.Role = RoleSlave, RoleMaster
		s.Shards[m.UID], s.Shards[r.UID] = &m, &r
		s.wrote(m.UID)
		s.wrote(r.UID)
		s.moveEndpointsOff(sh.BDBUID, sh.NodeUID, pair.NodeUID)
	}
	return nil
}

func (s *State) moveShard(_ *Action, st Step) *Error {
	sh, ok := s.Shards[st.Shard]
	if !ok {
		return nil
	}
	if sh.NodeUID != st.From && sh.NodeUID != st.To {
		// An action on another node moved it meanwhile (actions on
		// different nodes run at once): the move has nothing left to
		// do, and refusing would stall this action at this step.
		return nil
	}
	// Actions on other nodes run at the same time and plan against the
	// state they saw: the rules are checked again where the move lands.
	to, ok := s.Nodes[st.To]
	if !ok {
		return Errorf(ErrPlacementConflict, "node %d left the cluster", st.To)
	}
	if sh.NodeUID != st.To {
		if !s.Takes(to.UID) {
			return Errorf(ErrPlacementConflict, "node %d does not accept shards", st.To)
		}
		u := s.Usage()[st.To]
		if u.Shards+1 > to.MaxRedisServers || (!s.Policy.ShardsOverbooking && sh.Memory > to.TotalMemory-u.Memory) {
			return Errorf(ErrPlacementConflict, "node %d has no room left for shard %s", st.To, sh.UID)
		}
	}
	if p := s.PairOf(sh); p != nil && p.NodeUID == st.To {
		return Errorf(ErrPlacementConflict, "node %d already hosts shard %s, the pair of shard %s", st.To, p.UID, sh.UID)
	}
	c := *sh
	c.NodeUID = st.To
	s.Shards[c.UID] = &c
	s.wrote(c.UID)
	return nil
}

func (s *State) rebindEndpoint(_ *Action, st Step) *Error {
	b, ok := s.BDBs[st.BDB]
	if !ok {
		return nil
	}
	c := *b
	c.Endpoints = slices.Clone(b.Endpoints)
	for i := range c.Endpoints {
		if c.Endpoints[i].UID == st.Endpoint {
			c.Endpoints[i].NodeUID = st.To
		}
	}
	s.BDBs[c.UID] = &c
	return nil
}

func (s *State) removeMember(a *Action, _ Step) *Error {
	if n, ok := s.Nodes[a.NodeUID]; ok {
		s.revoke(n.Certs...)
	}
	delete(s.Nodes, a.NodeUID)
	delete(s.Snapshots, a.NodeUID)
	return nil
}

// moveEndpointsOff keeps endpoints with masters: an endpoint of bdb on node
// from follows the master to node to.
func (s *State) moveEndpointsOff(bdb, from, to int) {
	b, ok := s.BDBs[bdb]
	if !ok || s.hostsMaster(bdb, from) {
		return
	}
	changed := false
	c := *b
	c.Endpoints = slices.Clone(b.Endpoints)
	for i := range c.Endpoints {
		if c.Endpoints[i].NodeUID == from {
			c.Endpoints[i].NodeUID = to
			changed = true
		}
	}
	if changed {
		s.BDBs[bdb] = &c
	}
}

// hostsMaster reads the database's shards through the index: every
// failover's commit asks, and a scan of the whole table made each commit
// cost more the more shards the cluster held.
func (s *State) hostsMaster(bdb, node int) bool {
	return slices.ContainsFunc(s.ShardsOf(bdb), func(sh *Shard) bool {
		return sh.NodeUID == node && sh.Role == RoleMaster
	})
}
