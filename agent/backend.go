package agent

import (
	"cnm/fsm"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// Spec is a shard as the replicated state describes it for this node.
type Spec struct {
	UID string `json:"uid"`
	BDB int    `json:"bdb_uid"`
	// Slots is the shard's slot range (assigned_slots), which its master
	// and replica share: with BDB it names the pair (ReplicationUser).
	Slots       string `json:"slots,omitempty"`
	Role        string `json:"role"`
	Size        int64  `json:"size"`
	Persistence string `json:"persistence"` // disabled, snapshot or aof
	// Memory is the shard's memory as the state records it, unscaled: a
	// backend running real processes caps them at it (0: unknown).
	Memory int64 `json:"memory,omitempty"`
	// Master is host:port of the process a replica follows, as the agent
	// resolved it; empty for a master, or when not known yet.
	Master string `json:"master,omitempty"`
}

// Info is a shard as a backend holds it.
type Info struct {
	UID       string `json:"uid"`
	BDB       int    `json:"bdb_uid"`
	Role      string `json:"role"`
	Size      int64  `json:"size"`
	Checksum  string `json:"checksum"`
	InSync    bool   `json:"in_sync"`
	Persisted bool   `json:"persisted"`
	// What a backend running real processes reports besides: where the
	// shard listens, whether it serves (active, syncing or down), its
	// memory in use and keys, the master a replica follows (host:port),
	// and the persistence and memory cap it is configured with.
	Port        int    `json:"port,omitempty"`
	Status      string `json:"status,omitempty"`
	UsedMemory  int64  `json:"used_memory,omitempty"`
	Keys        int64  `json:"keys,omitempty"`
	Master      string `json:"master,omitempty"`
	Persistence string `json:"persistence,omitempty"`
	// Memory is the memory cap the shard runs with (maxmemory).
	Memory int64 `json:"memory,omitempty"`
}

// Shard statuses a backend running real processes reports: the state's
// own, since the leader records them as they are (SetShardStats).
const (
	StatusActive  = fsm.ShardActive
	StatusSyncing = fsm.ShardSyncing
	StatusDown    = fsm.ShardDown
)

// Source streams a shard's data from another node.
type Source interface {
	Fetch(ctx context.Context, uid string) (rc io.ReadCloser, size int64, checksum string, err error)
}

// Endpointer is a Source that can also tell where its copy of a shard
// listens (host:port), for backends that copy by replication rather than
// by streaming a file.
type Endpointer interface {
	Endpoint(ctx context.Context, uid string) (hostport string, err error)
}

// Follower is a backend whose replicas follow their master's process: the
// agent resolves each replica's master address (Spec.Master) for it, and
// points the local replica at it when its master moved.
type Follower interface {
	// Follow makes the local shard uid a replica of master (host:port).
	Follow(ctx context.Context, uid, master string) error
}

// Configurer is a backend whose shards run with settings of their
// database that may change: their memory cap and persistence mode.
type Configurer interface {
	// Configure applies memory (when > 0) and persistence to the local
	// shard uid.
	Configure(ctx context.Context, uid string, memory int64, persistence string) error
}

// Supervisor is a backend that watches its shards while the agent runs
// (restarts what died); the agent runs Supervise until its context ends.
type Supervisor interface {
	Supervise(ctx context.Context)
}

// Commit runs install, the step that makes a copy visible, or refuses to
// with an error, in which case nothing of the copy remains.
type Commit func(install func() error) error

// Backend stores shards on this node.
type Backend interface {
	// Materialise creates a shard that exists nowhere else (a new database).
	Materialise(ctx context.Context, s Spec) error
	// CopyFrom replaces the local copy of s with the data of src, verifying
	// it; a failed copy leaves no partial shard behind. When commit is not
	// nil, the verified copy is made visible only through it, so that the
	// caller can check, at that moment, that the copy is still wanted.
	CopyFrom(ctx context.Context, s Spec, src Source, commit Commit) error
	// Open streams the local copy (for another node's CopyFrom).
	Open(uid string) (rc io.ReadCloser, info Info, err error)
	// Info reports the local copy; ErrNoShard when there is none.
	Info(uid string) (Info, error)
	SwitchRole(ctx context.Context, uid, role string) error
	// Persist writes the shard's persistence file (fsync'd).
	Persist(ctx context.Context, uid, mode string) error
	Drop(ctx context.Context, uid string) error
	// List returns the uids of every local shard.
	List() ([]string, error)
}

// StatsReporter is a backend whose shards are processes that report how
// they are doing (status, memory in use, keys). The leader's stats poll
// asks an agent only for those: a backend that is not one has nothing to
// report, and reading every shard's records to say so grew with the
// shards a node holds.
type StatsReporter interface {
	// Stats is the Info of every local shard, as its process reports it.
	Stats() ([]Info, error)
}

// Errors of backends.
var (
	ErrNoShard        = errors.New("no such shard on this node")
	ErrChecksum       = errors.New("shard data does not match its checksum")
	ErrBadPersistence = errors.New("unknown persistence mode")
	// ErrNotStreamable: the backend copies shards by replication; their
	// data cannot be streamed.
	ErrNotStreamable = errors.New("shard data cannot be streamed from this backend")
)

// readRecord decodes the JSON record a backend keeps of shard uid at path
// into v; a missing record means the shard is not here.
func readRecord(path, uid string, v any) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("shard %s: %w", uid, ErrNoShard)
	}
	if err != nil {
		return fmt.Errorf("read shard %s metadata: %w", uid, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode shard %s metadata: %w", uid, err)
	}
	return nil
}
