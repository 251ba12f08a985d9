package fsm

import (
	"maps"
	"slices"
	"strings"
	"sync/atomic"
)

// Node statuses (SPEC §5).
const (
	NodeActive          = "active"
	NodeDecommissioning = "decommissioning"
	NodeDown            = "down"
	NodeProvisioning    = "provisioning"
)

// Roles a user can hold (SPEC §8).
const (
	RoleAdmin         = "admin"
	RoleClusterMember = "cluster_member"
	RoleClusterViewer = "cluster_viewer"
	RoleDBMember      = "db_member"
	RoleDBViewer      = "db_viewer"
	RoleUserManager   = "user_manager"
	RoleNone          = "none"
)

// Roles lists every role in the order the API documents them.
var Roles = []string{RoleAdmin, RoleClusterMember, RoleClusterViewer, RoleDBMember, RoleDBViewer, RoleUserManager, RoleNone}

// ValidRole reports whether r names a role.
func ValidRole(r string) bool { return slices.Contains(Roles, r) }

// State is the whole replicated cluster model. It is only changed by Apply;
// readers get it through FSM.Read or a Clone.
type State struct {
	Cluster     ClusterInfo   `json:"cluster"`
	Nodes       map[int]*Node `json:"nodes"`
	Users       map[int]*User `json:"users"`
	NextUserUID int           `json:"next_user_uid"`

	Policy       Policy                  `json:"policy"`
	BDBs         map[int]*BDB            `json:"bdbs"`
	NextBDBUID   int                     `json:"next_bdb_uid"`
	Shards       map[string]*Shard       `json:"shards"`
	NextShardUID int                     `json:"next_shard_uid"`
	Snapshots    map[int][]*NodeSnapshot `json:"snapshots"`
	// Actions holds each node's action records by action name; nil until
	// the first action.
	Actions map[int]map[string]*Action `json:"actions,omitempty"`
	// Voters are the uids of raft's voting members as of the latest
	// configuration entry applied; nil until one is (then the node table
	// stands in for them, less the nodes still provisioning).
	Voters []int `json:"voters,omitempty"`
	// Revoked are the node certificates that no longer open node-to-node
	// doors (their node was removed, or rotated them), kept until they
	// expire.
	Revoked []CertRef `json:"revoked,omitempty"`

	// index is derived from Shards (see shardIndex); not replicated.
	index atomic.Pointer[shardIndex]
	// log lists the shards Apply wrote (see shardLog); only the FSM's
	// live state keeps one.
	log *shardLog
}

// ClusterInfo is set once, by the bootstrap command.
type ClusterInfo struct {
	Name      string `json:"name"`
	CreatedAt int64  `json:"created_at"`
	// The cluster CA signs every node's certificate. Its key is replicated so
	// that whichever node leads can admit new nodes.
	CACertPEM string `json:"ca_cert_pem"`
	CAKeyPEM  string `json:"ca_key_pem"`
}

// Node is one member of the cluster as the API shows it (SPEC §5).
type Node struct {
	UID             int    `json:"uid"`
	Addr            string `json:"addr"`
	APIAddr         string `json:"api_addr"`
	RaftAddr        string `json:"raft_addr"`
	Status          string `json:"status"`
	AcceptServers   bool   `json:"accept_servers"`
	MaxRedisServers int    `json:"max_redis_servers"`
	TotalMemory     int64  `json:"total_memory"`
	// Cores is the node's CPU count, as it reported it when it joined.
	Cores           int    `json:"cores,omitempty"`
	RackID          string `json:"rack_id"`
	SoftwareVersion string `json:"software_version"`
	JoinedAt        int64  `json:"joined_at"`
	// StartTime is when the node's cnmd last started (unix seconds, the
	// leader's reckoning); 0 until the leader has heard it.
	StartTime int64 `json:"start_time,omitempty"`
	// Maintenance and Removing are set by the node actions; a node with
	// either never receives shards.
	Maintenance bool `json:"maintenance,omitempty"`
	Removing    bool `json:"removing,omitempty"`
	// Certs are the certificates the cluster CA issued to this node that
	// are still in use (a renewal keeps the previous one until the node
	// has switched). CertRotation counts rotations an admin asked for: the
	// node renews at once when it sees a count it has not handled.
	Certs        []CertRef `json:"certs,omitempty"`
	CertRotation uint64    `json:"cert_rotation,omitempty"`
}

// User is an API user. PasswordHash is a bcrypt hash and never leaves the
// node through the API. Revision is the raft index of the user's last change;
// cached authentications and in-flight writes are tied to it.
type User struct {
	UID          int    `json:"uid"`
	Email        string `json:"email"`
	Name         string `json:"name"`
	Role         string `json:"role"`
	PasswordHash string `json:"password_hash"`
	Revision     uint64 `json:"revision"`
}

// NewState returns an empty, not yet bootstrapped state.
func NewState() *State {
	s := &State{NextUserUID: 1, NextBDBUID: 1, NextShardUID: 1, Policy: DefaultPolicy()}
	s.fillMaps()
	return s
}

// fillMaps makes nil maps empty (states decoded from older snapshots).
func (s *State) fillMaps() {
	if s.Nodes == nil {
		s.Nodes = map[int]*Node{}
	}
	if s.Users == nil {
		s.Users = map[int]*User{}
	}
	if s.BDBs == nil {
		s.BDBs = map[int]*BDB{}
	}
	if s.Shards == nil {
		s.Shards = map[string]*Shard{}
	}
	if s.Snapshots == nil {
		s.Snapshots = map[int][]*NodeSnapshot{}
	}
	if s.NextBDBUID == 0 {
		s.NextBDBUID = 1
	}
	if s.NextShardUID == 0 {
		s.NextShardUID = 1
	}
	if s.Policy.DefaultShardsPlacement == "" {
		s.Policy = DefaultPolicy()
	}
}

// Bootstrapped reports whether a cluster has been created in this state.
func (s *State) Bootstrapped() bool { return s.Cluster.Name != "" }

// Clone returns a deep copy that the caller may keep and change.
func (s *State) Clone() *State {
	c := &State{Cluster: s.Cluster, NextUserUID: s.NextUserUID, Policy: s.Policy,
		NextBDBUID: s.NextBDBUID, NextShardUID: s.NextShardUID,
		Nodes: make(map[int]*Node, len(s.Nodes)), Users: make(map[int]*User, len(s.Users)),
		BDBs: make(map[int]*BDB, len(s.BDBs)), Shards: make(map[string]*Shard, len(s.Shards)),
		Snapshots: make(map[int][]*NodeSnapshot, len(s.Snapshots)), Voters: slices.Clone(s.Voters),
		Revoked: slices.Clone(s.Revoked)}
	for k, v := range s.BDBs {
		b := *v
		b.Endpoints = slices.Clone(v.Endpoints)
		c.BDBs[k] = &b
	}
	for k, v := range s.Shards {
		sh := *v
		c.Shards[k] = &sh
	}
	for k, v := range s.Snapshots {
		list := make([]*NodeSnapshot, len(v))
		for i, sn := range v {
			x := *sn
			x.Shards = slices.Clone(sn.Shards)
			x.Endpoints = slices.Clone(sn.Endpoints)
			list[i] = &x
		}
		c.Snapshots[k] = list
	}
	if s.Actions != nil {
		c.Actions = make(map[int]map[string]*Action, len(s.Actions))
		for node, byName := range s.Actions {
			m := make(map[string]*Action, len(byName))
			for name, a := range byName {
				m[name] = cloneAction(a)
			}
			c.Actions[node] = m
		}
	}
	for k, v := range s.Nodes {
		n := *v
		n.Certs = slices.Clone(v.Certs)
		c.Nodes[k] = &n
	}
	for k, v := range s.Users {
		u := *v
		c.Users[k] = &u
	}
	return c
}

// View is a Clone that shares s's shard index: for copies read, or changed
// only by moves and failovers (the planner's and executor's what-ifs), of
// which the executor makes one per step. A Clone starts without an index,
// so that it compares equal to the state it copies.
func (s *State) View() *State {
	c := s.Clone()
	c.index.Store(s.shardIndex())
	return c
}

// ReadView is a copy of s's tables that shares their records and the
// shard index: the FSM replaces a stored record rather than change it, so
// the copy stays as s was while s goes on, at the cost of copying the
// tables' pointers, not the records. Nothing may change a record reached
// through it (View is the copy to change).
func (s *State) ReadView() *State { return s.readView(maps.Clone(s.Shards)) }

// ReadViewOf is a ReadView whose shard table holds only the shards named
// and their pairs: for a step that reads no other shard, as a failover
// does, so that it costs those shards rather than the whole table (at 10k
// shards, copying the table took about 0.3 ms of a 1.7 ms failover step).
func (s *State) ReadViewOf(uids ...string) *State {
	shards := make(map[string]*Shard, 2*len(uids))
	for _, uid := range uids {
		if sh := s.Shards[uid]; sh != nil {
			shards[uid] = sh
			if p := s.PairOf(sh); p != nil {
				shards[p.UID] = p
			}
		}
	}
	return s.readView(shards)
}

func (s *State) readView(shards map[string]*Shard) *State {
	c := &State{Cluster: s.Cluster, NextUserUID: s.NextUserUID, Policy: s.Policy,
		NextBDBUID: s.NextBDBUID, NextShardUID: s.NextShardUID,
		Nodes: maps.Clone(s.Nodes), Users: maps.Clone(s.Users), BDBs: maps.Clone(s.BDBs),
		Shards: shards, Snapshots: maps.Clone(s.Snapshots),
		Voters: slices.Clone(s.Voters), Revoked: slices.Clone(s.Revoked)}
	if s.Actions != nil {
		c.Actions = make(map[int]map[string]*Action, len(s.Actions))
		for node, byName := range s.Actions {
			c.Actions[node] = maps.Clone(byName)
		}
	}
	c.index.Store(s.shardIndex())
	return c
}

// UserByEmail finds a user by email. Emails compare without regard to
// case: ADMIN@cnm.local and admin@cnm.local are one address (SPEC §9).
func (s *State) UserByEmail(email string) *User {
	for _, u := range s.Users {
		if strings.EqualFold(u.Email, email) {
			return u
		}
	}
	return nil
}

// VoterUIDs returns the raft voters, or, before any configuration entry
// was applied, the nodes that are not still provisioning.
func (s *State) VoterUIDs() []int {
	if s.Voters != nil {
		return s.Voters
	}
	var out []int
	for _, uid := range s.NodeUIDs() {
		if s.Nodes[uid].Status != NodeProvisioning {
			out = append(out, uid)
		}
	}
	return out
}

// Emptying reports whether a non-terminal remove or maintenance_on runs on
// node: such a node is no target for shards, endpoints or failovers, even
// before the action's first step marks it (SPEC §3.2).
func (s *State) Emptying(node int) bool {
	for name, a := range s.Actions[node] {
		if (name == ActionRemove || name == ActionMaintenanceOn) && !Terminal(a.Status) {
			return true
		}
	}
	return false
}

// Takes reports whether node may receive a shard now: it accepts shards
// and no action is emptying it.
func (s *State) Takes(node int) bool {
	n, ok := s.Nodes[node]
	return ok && n.Accepts() && !s.Emptying(node)
}

// NodeUIDs returns the node uids in ascending order.
func (s *State) NodeUIDs() []int { return slices.Sorted(maps.Keys(s.Nodes)) }

// UserUIDs returns the user uids in ascending order.
func (s *State) UserUIDs() []int { return slices.Sorted(maps.Keys(s.Users)) }

func (s *State) adminCount() int {
	n := 0
	for _, u := range s.Users {
		if u.Role == RoleAdmin {
			n++
		}
	}
	return n
}
