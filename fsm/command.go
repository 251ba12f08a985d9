package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// CommandType is the first byte of every log entry. The numbers live in raft
// logs forever: they are written out by hand, only ever appended, and never
// reused.
type CommandType uint8

// Command types.
const (
	CmdBootstrap      CommandType = 1
	CmdAddNode        CommandType = 2
	CmdCreateUser     CommandType = 3
	CmdUpdateUser     CommandType = 4
	CmdDeleteUser     CommandType = 5
	CmdSetNodeStatus  CommandType = 6
	CmdCreateBDB      CommandType = 7
	CmdDeleteBDB      CommandType = 8
	CmdUpdatePolicy   CommandType = 9
	CmdUpdateNode     CommandType = 10
	CmdDeleteSnapshot CommandType = 11
	CmdSubmitAction   CommandType = 12
	CmdClaimAction    CommandType = 13
	CmdPlanAction     CommandType = 14
	CmdStepDone       CommandType = 15
	CmdFinishAction   CommandType = 16
	CmdCancelAction   CommandType = 17
	CmdRetargetStep   CommandType = 18
	CmdSetWaiting     CommandType = 19
	CmdCheckpoint     CommandType = 20
	CmdSetNodeCerts   CommandType = 21
	CmdRotateNodeCert CommandType = 22
	CmdSetShardStats  CommandType = 23
	CmdBeginStep      CommandType = 24
	CmdReleaseStep    CommandType = 25
)

// commandVersion is the second byte of every entry: the payload layout of that
// type. A change that old code could misread gets a new version, and Decode
// refuses versions it does not know.
const commandVersion = 1

func (t CommandType) String() string {
	if c, ok := commandsByType[t]; ok {
		return c.name
	}
	return fmt.Sprintf("command(%d)", uint8(t))
}

// command describes one command type: its name, a constructor of its
// payload, and how it changes the state. The table is the only place that
// lists them, so a command cannot be decodable and yet unhandled.
type command struct {
	t     CommandType
	name  string
	new   func() any
	apply func(s *State, payload any, index uint64, admit Admission) (any, *Error)
}

// cmd describes the command whose payload is a *P.
func cmd[P any](t CommandType, name string, apply func(*State, *P, uint64, Admission) (any, *Error)) command {
	return command{t: t, name: name, new: func() any { return new(P) },
		apply: func(s *State, p any, index uint64, admit Admission) (any, *Error) {
			return apply(s, p.(*P), index, admit)
		}}
}

// plain, indexed and admitted fit the apply functions, which take only what
// they use of the log index and the admission rule, to the table.
func plain[P any](fn func(*State, *P) (any, *Error)) func(*State, *P, uint64, Admission) (any, *Error) {
	return func(s *State, p *P, _ uint64, _ Admission) (any, *Error) { return fn(s, p) }
}

func indexed[P any](fn func(*State, *P, uint64) (any, *Error)) func(*State, *P, uint64, Admission) (any, *Error) {
	return func(s *State, p *P, index uint64, _ Admission) (any, *Error) { return fn(s, p, index) }
}

func admitted[P any](fn func(*State, *P, Admission) (any, *Error)) func(*State, *P, uint64, Admission) (any, *Error) {
	return func(s *State, p *P, _ uint64, admit Admission) (any, *Error) { return fn(s, p, admit) }
}

var commands = []command{
	cmd(CmdBootstrap, "bootstrap", indexed((*State).applyBootstrap)),
	cmd(CmdAddNode, "add_node", plain((*State).applyAddNode)),
	cmd(CmdCreateUser, "create_user", indexed((*State).applyCreateUser)),
	cmd(CmdUpdateUser, "update_user", indexed((*State).applyUpdateUser)),
	cmd(CmdDeleteUser, "delete_user", plain((*State).applyDeleteUser)),
	cmd(CmdSetNodeStatus, "set_node_status", plain((*State).applySetNodeStatus)),
	cmd(CmdCreateBDB, "create_bdb", plain((*State).applyCreateBDB)),
	cmd(CmdDeleteBDB, "delete_bdb", plain((*State).applyDeleteBDB)),
	cmd(CmdUpdatePolicy, "update_policy", plain((*State).applyUpdatePolicy)),
	cmd(CmdUpdateNode, "update_node", plain((*State).applyUpdateNode)),
	cmd(CmdDeleteSnapshot, "delete_snapshot", plain((*State).applyDeleteSnapshot)),
	cmd(CmdSubmitAction, "submit_action", admitted((*State).applySubmitAction)),
	cmd(CmdClaimAction, "claim_action", plain((*State).applyClaimAction)),
	cmd(CmdPlanAction, "plan_action", plain((*State).applyPlanAction)),
	cmd(CmdStepDone, "step_done", plain((*State).applyStepDone)),
	cmd(CmdFinishAction, "finish_action", plain((*State).applyFinishAction)),
	cmd(CmdCancelAction, "cancel_action", plain((*State).applyCancelAction)),
	cmd(CmdRetargetStep, "retarget_step", plain((*State).applyRetargetStep)),
	cmd(CmdSetWaiting, "set_waiting", plain((*State).applySetWaiting)),
	cmd(CmdCheckpoint, "checkpoint", plain((*State).applyCheckpoint)),
	cmd(CmdSetNodeCerts, "set_node_certs", plain((*State).applySetNodeCerts)),
	cmd(CmdRotateNodeCert, "rotate_node_cert", plain((*State).applyRotateNodeCert)),
	cmd(CmdSetShardStats, "set_shard_stats", plain((*State).applySetShardStats)),
	cmd(CmdBeginStep, "begin_step", plain((*State).applyBeginStep)),
	cmd(CmdReleaseStep, "release_step", plain((*State).applyReleaseStep)),
}

var (
	commandsByType    = map[CommandType]command{}
	commandsByPayload = map[reflect.Type]CommandType{}
)

func init() {
	for _, c := range commands {
		commandsByType[c.t] = c
		commandsByPayload[reflect.TypeOf(c.new())] = c.t
	}
}

// Actor is the authenticated user on whose behalf a write is made. Apply
// rejects the write when that user no longer exists or changed since the
// proposer authenticated them, so that identity is checked against the same
// state the write lands in.
type Actor struct {
	UID      int    `json:"uid"`
	Revision uint64 `json:"revision"`
}

// Bootstrap creates the cluster: its identity, its CA, the first node and the
// first admin.
type Bootstrap struct {
	Cluster ClusterInfo `json:"cluster"`
	Node    Node        `json:"node"`
	Admin   User        `json:"admin"`
}

// AddNode records a node that joined (or re-joined with the same addresses).
type AddNode struct {
	Actor Actor `json:"actor"`
	Node  Node  `json:"node"`
}

// CreateUser adds a user; Apply assigns the uid.
type CreateUser struct {
	Actor Actor `json:"actor"`
	User  User  `json:"user"`
}

// UpdateUser changes the given fields of a user; nil fields stay as they are.
type UpdateUser struct {
	Actor        Actor   `json:"actor"`
	UID          int     `json:"uid"`
	Email        *string `json:"email,omitempty"`
	Name         *string `json:"name,omitempty"`
	Role         *string `json:"role,omitempty"`
	PasswordHash *string `json:"password_hash,omitempty"`
}

// DeleteUser removes a user.
type DeleteUser struct {
	Actor Actor `json:"actor"`
	UID   int   `json:"uid"`
}

// SetNodeStatus moves a node to another status (provisioning to active once
// it is a raft voter; down and back as the leader hears from it).
type SetNodeStatus struct {
	Actor  Actor  `json:"actor"`
	UID    int    `json:"uid"`
	Status string `json:"status"`
	// StartTime, when set, is when the node's cnmd started (unix seconds,
	// as the leader reckons it from the uptime the node reported).
	StartTime int64 `json:"start_time,omitempty"`
}

// SetShardStats records how a node's shard processes are doing, as its
// agent reported them to the leader, which writes it only when something
// changed: each shard's status (ShardActive, ShardSyncing, ShardDown), its
// memory in use and its keys.
type SetShardStats struct {
	Node   int         `json:"node_uid"`
	Shards []ShardStat `json:"shards"`
}

// ShardStat is one shard of a SetShardStats.
type ShardStat struct {
	UID        string `json:"uid"`
	Status     string `json:"status"`
	UsedMemory int64  `json:"used_memory"`
	Keys       int64  `json:"keys"`
}

// CreateBDB adds a database with its shards already placed: Placement
// holds the node of each shard, slot range by slot range, master first and
// then (with replication) its replica. Apply re-checks every placement rule
// against the state the command lands in and assigns the uids.
type CreateBDB struct {
	Actor        Actor `json:"actor"`
	BDB          BDB   `json:"bdb"`
	Placement    []int `json:"placement"`
	EndpointNode int   `json:"endpoint_node"`
}

// DeleteBDB removes a database and its shards.
type DeleteBDB struct {
	Actor Actor `json:"actor"`
	UID   int   `json:"uid"`
}

// UpdatePolicy changes the given fields of the cluster policy.
type UpdatePolicy struct {
	Actor                  Actor   `json:"actor"`
	PersistentNodeRemoval  *bool   `json:"persistent_node_removal,omitempty"`
	DefaultShardsPlacement *string `json:"default_shards_placement,omitempty"`
	RackAware              *bool   `json:"rack_aware,omitempty"`
	ShardsOverbooking      *bool   `json:"shards_overbooking,omitempty"`
}

// UpdateNode changes the given settings of a node.
type UpdateNode struct {
	Actor           Actor   `json:"actor"`
	UID             int     `json:"uid"`
	AcceptServers   *bool   `json:"accept_servers,omitempty"`
	MaxRedisServers *int    `json:"max_redis_servers,omitempty"`
	RackID          *string `json:"rack_id,omitempty"`
}

// DeleteSnapshot removes a node snapshot.
type DeleteSnapshot struct {
	Actor Actor  `json:"actor"`
	Node  int    `json:"node"`
	Name  string `json:"name"`
}

// Command is a decoded log entry.
type Command struct {
	Type    CommandType
	Payload any // one of the pointer types above
}

// ErrDecode marks log entries that are not valid commands.
var ErrDecode = errors.New("decode command")

// Encode turns a payload into a log entry: type byte, version byte, JSON.
func Encode(payload any) ([]byte, error) {
	t, err := typeOf(payload)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", t, err)
	}
	return append([]byte{byte(t), commandVersion}, body...), nil
}

func typeOf(payload any) (CommandType, error) {
	if t, ok := commandsByPayload[reflect.TypeOf(payload)]; ok {
		return t, nil
	}
	return 0, fmt.Errorf("encode %T: not a command", payload)
}

// Decode parses a log entry made by Encode.
func Decode(b []byte) (Command, error) {
	if len(b) < 2 {
		return Command{}, fmt.Errorf("%w: entry of %d bytes", ErrDecode, len(b))
	}
	t := CommandType(b[0])
	if b[1] != commandVersion {
		return Command{}, fmt.Errorf("%w: %s version %d unknown", ErrDecode, t, b[1])
	}
	c, ok := commandsByType[t]
	if !ok {
		return Command{}, fmt.Errorf("%w: type %d unknown", ErrDecode, b[0])
	}
	p := c.new()
	if err := json.Unmarshal(b[2:], p); err != nil {
		return Command{}, fmt.Errorf("%w: %s: %w", ErrDecode, t, err)
	}
	if sa, ok := p.(*SubmitAction); ok && len(sa.Action.Params) > 0 {
		// Raw JSON is kept as Encode writes it (compact, HTML characters
		// escaped), so that a decoded command encodes to what it was
		// decoded from.
		norm, err := json.Marshal(sa.Action.Params)
		if err != nil {
			return Command{}, fmt.Errorf("%w: %s params: %w", ErrDecode, t, err)
		}
		sa.Action.Params = norm
	}
	return Command{Type: t, Payload: p}, nil
}
