package fsm

import (
	"maps"
	"math"
	"slices"
	"strconv"
)

// Shard roles.
const (
	RoleMaster = "master"
	RoleSlave  = "slave"
)

// Data persistence modes of a database.
const (
	PersistenceDisabled = "disabled"
	PersistenceSnapshot = "snapshot"
	PersistenceAOF      = "aof"
)

// Placement policies.
const (
	PlacementDense  = "dense"
	PlacementSparse = "sparse"
)

// Policy is the cluster policy (SPEC §5.1).
type Policy struct {
	PersistentNodeRemoval  bool   `json:"persistent_node_removal"`
	DefaultShardsPlacement string `json:"default_shards_placement"`
	RackAware              bool   `json:"rack_aware"`
	ShardsOverbooking      bool   `json:"shards_overbooking"`
}

// DefaultPolicy is the policy of a new cluster.
func DefaultPolicy() Policy {
	return Policy{DefaultShardsPlacement: PlacementDense}
}

// BDB is a database (SPEC §5).
type BDB struct {
	UID             int        `json:"uid"`
	Name            string     `json:"name"`
	MemorySize      int64      `json:"memory_size"`
	ShardsCount     int        `json:"shards_count"`
	Replication     bool       `json:"replication"`
	CRDT            bool       `json:"crdt"`
	DataPersistence string     `json:"data_persistence"`
	Endpoints       []Endpoint `json:"endpoints"`
	Status          string     `json:"status"`
	CreatedAt       int64      `json:"created_at"`
}

// Endpoint is where clients reach a database; it is bound to one node.
type Endpoint struct {
	UID     string `json:"uid"`
	NodeUID int    `json:"node_uid"`
	Port    int    `json:"port"`
}

// Shard is one Redis shard of a database. A master and its replica share
// AssignedSlots.
type Shard struct {
	UID           string `json:"uid"`
	BDBUID        int    `json:"bdb_uid"`
	NodeUID       int    `json:"node_uid"`
	Role          string `json:"role"`
	Status        string `json:"status"`
	Memory        int64  `json:"memory"`
	AssignedSlots string `json:"assigned_slots"`
	// UsedMemory and Keys are what the shard's process last reported
	// (SetShardStats); zero for shards whose backend runs no process.
	UsedMemory int64 `json:"used_memory,omitempty"`
	Keys       int64 `json:"keys,omitempty"`
}

// Shard statuses: a shard serves (active), is a replica still copying
// from its master (syncing), or its process does not answer (down).
const (
	ShardActive  = "active"
	ShardSyncing = "syncing"
	ShardDown    = "down"
)

// NodeSnapshot records a node's shards and endpoints, taken when it enters
// maintenance so that it can be restored.
type NodeSnapshot struct {
	Name      string          `json:"name"`
	Time      int64           `json:"time"`
	Shards    []SnapshotShard `json:"shards"`
	Endpoints []string        `json:"endpoints"`
}

// SnapshotShard is a shard as a snapshot remembers it.
type SnapshotShard struct {
	UID    string `json:"uid"`
	BDBUID int    `json:"bdb_uid"`
	Role   string `json:"role"`
}

// Usage is what a node hosts.
type Usage struct {
	Shards int
	Memory int64
}

// Usage returns, per node uid, how many shards it hosts and their memory.
func (s *State) Usage() map[int]Usage {
	// Counted in a slice by node uid where uids are small (they are
	// handed out from 1 up): a map write per shard was most of the cost
	// of creating a database in a large model.
	maxUID := 0
	for uid := range s.Nodes {
		maxUID = max(maxUID, uid)
	}
	dense := make([]Usage, min(maxUID, 1<<16)+1)
	u := make(map[int]Usage, len(s.Nodes))
	for _, sh := range s.Shards {
		n := sh.NodeUID
		if n < 0 || n >= len(dense) {
			x := u[n]
			x.Shards++
			x.Memory = satAdd(x.Memory, sh.Memory)
			u[n] = x
			continue
		}
		dense[n].Shards++
		dense[n].Memory = satAdd(dense[n].Memory, sh.Memory)
	}
	for n, x := range dense {
		if x.Shards > 0 {
			u[n] = x
		}
	}
	return u
}

// ShardUIDs returns shard uids in numeric order.
func (s *State) ShardUIDs() []string { return slices.Clone(s.shardIndex().sorted) }

// ShardsOf returns the shards of a database in uid order.
func (s *State) ShardsOf(bdb int) []*Shard {
	ids := s.shardIndex().byBDB[bdb]
	out := make([]*Shard, 0, len(ids))
	for _, id := range ids {
		out = append(out, s.Shards[id])
	}
	return out
}

// ShardsOn returns the shards hosted by a node in uid order.
func (s *State) ShardsOn(node int) []*Shard {
	var out []*Shard
	for _, id := range s.shardIndex().sorted {
		if sh := s.Shards[id]; sh.NodeUID == node {
			out = append(out, sh)
		}
	}
	return out
}

// ShardUIDsByNode returns, per node uid, the uids of its shards in order.
func (s *State) ShardUIDsByNode() map[int][]string {
	out := make(map[int][]string, len(s.Nodes))
	for _, id := range s.shardIndex().sorted {
		n := s.Shards[id].NodeUID
		out[n] = append(out[n], id)
	}
	return out
}

// PairOf returns the shard that shares sh's slots in its database with the
// other role (its replica or master), or nil.
func (s *State) PairOf(sh *Shard) *Shard {
	if id := s.PairUID(sh); id != "" {
		return s.Shards[id]
	}
	return nil
}

// PairUID is the uid of PairOf(sh), or "": a copy of the shard table
// (the planner's) finds the pair in its own copy by it.
func (s *State) PairUID(sh *Shard) string {
	id := s.shardIndex().pair[sh.UID]
	if o := s.Shards[id]; o != nil && o.BDBUID == sh.BDBUID && o.AssignedSlots == sh.AssignedSlots {
		return id
	}
	return ""
}

// BDBUIDs returns database uids in ascending order.
func (s *State) BDBUIDs() []int { return slices.Sorted(maps.Keys(s.BDBs)) }

// Accepts reports whether node n may receive shards and endpoints.
func (n *Node) Accepts() bool {
	return n.Status == NodeActive && n.AcceptServers && !n.Maintenance && !n.Removing
}

func compareUID(a, b string) int {
	x, ex := strconv.Atoi(a)
	y, ey := strconv.Atoi(b)
	if ex == nil && ey == nil {
		return x - y
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// satAdd adds non-negative sizes without wrapping past the largest int64.
func satAdd(a, b int64) int64 {
	if b > math.MaxInt64-a {
		return math.MaxInt64
	}
	return a + b
}
