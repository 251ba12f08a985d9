package agent

import (
	"context"
	"errors"
	"io"
)

// Spec is a shard as the replicated state describes it for this node.
type Spec struct {
	UID         string `json:"uid"`
	BDB         int    `json:"bdb_uid"`
	Role        string `json:"role"`
	Size        int64  `json:"size"`
	Persistence string `json:"persistence"` // disabled, snapshot or aof
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
}

// Source streams a shard's data from another node.
type Source interface {
	Fetch(ctx context.Context, uid string) (rc io.ReadCloser, size int64, checksum string, err error)
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

// Errors of backends.
var (
	ErrNoShard        = errors.New("no such shard on this node")
	ErrChecksum       = errors.New("shard data does not match its checksum")
	ErrBadPersistence = errors.New("unknown persistence mode")
)
