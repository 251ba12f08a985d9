package fsm

import (
	"fmt"
	"strconv"
)

// SlotCount is the number of hash slots a database's shards split.
const SlotCount = 16384

// SlotRange returns the slots of shard i of n ("0-8191" for 0 of 2).
func SlotRange(i, n int) string {
	return fmt.Sprintf("%d-%d", i*SlotCount/n, (i+1)*SlotCount/n-1)
}

// MaxMemorySize bounds a database's memory_size (1 PiB), far beyond any
// node, so that sizes never approach int64 overflow.
const MaxMemorySize = 1 << 50

// EndpointPort is the port of a database's endpoint.
func EndpointPort(bdb int) int { return 12000 + bdb }

func validPersistence(p string) bool {
	return p == PersistenceDisabled || p == PersistenceSnapshot || p == PersistenceAOF
}

func (s *State) applyCreateBDB(p *CreateBDB) (any, *Error) {
	b := p.BDB
	if b.Name == "" || b.MemorySize <= 0 || b.MemorySize > MaxMemorySize || b.ShardsCount < 1 || b.ShardsCount > 512 ||
		b.MemorySize < int64(b.ShardsCount) || !validPersistence(b.DataPersistence) {
		return nil, Errorf(ErrInvalidParameter, "a database needs a name, a memory_size of at least one byte per shard and at most %d, 1 to 512 shards and a persistence mode", MaxMemorySize)
	}
	for _, uid := range s.BDBUIDs() {
		if s.BDBs[uid].Name == b.Name {
			return nil, Errorf(ErrBDBExists, "database %d is already named %q", uid, b.Name)
		}
	}
	per := 1
	if b.Replication {
		per = 2
	}
	if len(p.Placement) != b.ShardsCount*per {
		return nil, Errorf(ErrInvalidParameter, "placement names %d nodes for %d shards", len(p.Placement), b.ShardsCount*per)
	}
	mem := b.MemorySize / int64(b.ShardsCount)
	b.UID = s.NextBDBUID
	next := s.NextShardUID
	shards := make([]*Shard, 0, len(p.Placement))
	for i, node := range p.Placement {
		role := RoleMaster
		if i%per == 1 {
			role = RoleSlave
		}
		shards = append(shards, &Shard{
			UID: strconv.Itoa(next), BDBUID: b.UID, NodeUID: node, Role: role, Status: ShardActive,
			Memory: mem, AssignedSlots: SlotRange(i/per, b.ShardsCount),
		})
		next++
	}
	if err := s.checkPlacement(shards, per); err != nil {
		return nil, err
	}
	hostsMaster := false
	for _, sh := range shards {
		hostsMaster = hostsMaster || (sh.Role == RoleMaster && sh.NodeUID == p.EndpointNode)
	}
	if !hostsMaster {
		return nil, Errorf(ErrPlacementConflict, "endpoint node %d hosts no master of the database", p.EndpointNode)
	}
	b.Status = "active"
	b.Endpoints = []Endpoint{{UID: fmt.Sprintf("%d:1", b.UID), NodeUID: p.EndpointNode, Port: EndpointPort(b.UID)}}
	s.BDBs[b.UID] = &b
	for _, sh := range shards {
		s.Shards[sh.UID] = sh
		s.wrote(sh.UID)
	}
	s.dropIndex()
	s.NextBDBUID++
	s.NextShardUID = next
	return b, nil
}

// checkPlacement checks new shards (pairs adjacent when per is 2) against
// every placement rule of SPEC §5, counting what nodes already host.
func (s *State) checkPlacement(shards []*Shard, per int) *Error {
	use := s.Usage()
	for i, sh := range shards {
		n, ok := s.Nodes[sh.NodeUID]
		if !ok || !s.Takes(n.UID) {
			return Errorf(ErrPlacementConflict, "node %d does not accept shards", sh.NodeUID)
		}
		u := use[sh.NodeUID]
		// Compared as "what is left" so that huge sizes cannot overflow.
		if !s.Policy.ShardsOverbooking && sh.Memory > n.TotalMemory-u.Memory {
			return Errorf(ErrPlacementConflict, "node %d would host more than its %d bytes", n.UID, n.TotalMemory)
		}
		u.Shards++
		u.Memory = satAdd(u.Memory, sh.Memory)
		use[sh.NodeUID] = u
		if u.Shards > n.MaxRedisServers {
			return Errorf(ErrPlacementConflict, "node %d would host more than %d shards", n.UID, n.MaxRedisServers)
		}
		if per == 2 && i%2 == 1 {
			m := shards[i-1]
			if m.NodeUID == sh.NodeUID {
				return Errorf(ErrPlacementConflict, "shard %s and its master share node %d", sh.UID, sh.NodeUID)
			}
			// Nodes without a rack id are in no rack.
			if s.Policy.RackAware && n.RackID != "" && s.Nodes[m.NodeUID].RackID == n.RackID {
				return Errorf(ErrPlacementConflict, "shard %s and its master share rack %q", sh.UID, n.RackID)
			}
		}
	}
	return nil
}

func (s *State) applyDeleteBDB(p *DeleteBDB) (any, *Error) {
	if _, ok := s.BDBs[p.UID]; !ok {
		return nil, Errorf(ErrBDBNotFound, "database %d does not exist", p.UID)
	}
	delete(s.BDBs, p.UID)
	for id, sh := range s.Shards {
		if sh.BDBUID == p.UID {
			delete(s.Shards, id)
			s.wrote(id)
		}
	}
	s.dropIndex()
	return nil, nil
}

func (s *State) applyUpdatePolicy(p *UpdatePolicy) (any, *Error) {
	pol := s.Policy
	if p.DefaultShardsPlacement != nil {
		if v := *p.DefaultShardsPlacement; v != PlacementDense && v != PlacementSparse {
			return nil, Errorf(ErrInvalidParameter, "default_shards_placement must be dense or sparse, got %q", v)
		}
		pol.DefaultShardsPlacement = *p.DefaultShardsPlacement
	}
	if p.PersistentNodeRemoval != nil {
		pol.PersistentNodeRemoval = *p.PersistentNodeRemoval
	}
	if p.RackAware != nil {
		pol.RackAware = *p.RackAware
	}
	if p.ShardsOverbooking != nil {
		pol.ShardsOverbooking = *p.ShardsOverbooking
	}
	s.Policy = pol
	return pol, nil
}

func (s *State) applyUpdateNode(p *UpdateNode) (any, *Error) {
	cur, ok := s.Nodes[p.UID]
	if !ok {
		return nil, NoSuchNode(p.UID)
	}
	n := *cur
	if p.AcceptServers != nil {
		if *p.AcceptServers && n.Removing {
			return nil, Errorf(ErrInvalidParameter, "node %d is being removed and never accepts servers again", n.UID)
		}
		n.AcceptServers = *p.AcceptServers
	}
	if p.MaxRedisServers != nil {
		if *p.MaxRedisServers < 0 {
			return nil, Errorf(ErrInvalidParameter, "max_redis_servers must not be negative")
		}
		n.MaxRedisServers = *p.MaxRedisServers
	}
	if p.RackID != nil {
		n.RackID = *p.RackID
	}
	s.Nodes[n.UID] = &n
	return n, nil
}

func (s *State) applyDeleteSnapshot(p *DeleteSnapshot) (any, *Error) {
	n, ok := s.Nodes[p.Node]
	if !ok {
		return nil, NoSuchNode(p.Node)
	}
	list := s.Snapshots[p.Node]
	for i, sn := range list {
		if sn.Name != p.Name {
			continue
		}
		if n.Maintenance && i == len(list)-1 {
			return nil, Errorf(ErrSnapshotInUse, "snapshot %q holds node %d's placement while it is in maintenance", p.Name, p.Node)
		}
		s.Snapshots[p.Node] = append(list[:i:i], list[i+1:]...)
		if len(s.Snapshots[p.Node]) == 0 {
			delete(s.Snapshots, p.Node)
		}
		return nil, nil
	}
	return nil, Errorf(ErrSnapshotNotFound, "node %d has no snapshot %q", p.Node, p.Name)
}

// applySetShardStats records a node's report on its shards. A shard the
// state has since moved to another node, or deleted, is left out: the
// report is about a copy that no longer counts.
func (s *State) applySetShardStats(p *SetShardStats) (any, *Error) {
	if _, ok := s.Nodes[p.Node]; !ok {
		return nil, NoSuchNode(p.Node)
	}
	for _, st := range p.Shards {
		switch st.Status {
		case ShardActive, ShardSyncing, ShardDown:
		default:
			return nil, Errorf(ErrInvalidParameter, "shard %s: status %q is not a shard status", st.UID, st.Status)
		}
		if st.UsedMemory < 0 || st.Keys < 0 {
			return nil, Errorf(ErrInvalidParameter, "shard %s: used_memory and keys cannot be negative", st.UID)
		}
	}
	for _, st := range p.Shards {
		sh, ok := s.Shards[st.UID]
		if !ok || sh.NodeUID != p.Node {
			continue
		}
		c := *sh
		c.Status, c.UsedMemory, c.Keys = st.Status, st.UsedMemory, st.Keys
		s.Shards[st.UID] = &c
		s.wrote(st.UID)
	}
	return nil, nil
}
