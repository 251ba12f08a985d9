package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"cnm/fsm"
)

// Config configures an Agent.
type Config struct {
	NodeUID int
	FSM     *fsm.FSM
	Backend Backend
	// Limiter caps the copies this node sends (the backend caps what it
	// receives); nil is unlimited.
	Limiter *Limiter
	// Scale is bytes of shard data per byte of shard memory.
	Scale float64
	// Client calls other nodes' agents (mutual TLS, bound to this node's
	// address).
	Client *http.Client
	// Resync is how often the agent reconciles even without a change.
	Resync time.Duration
	Logger *slog.Logger
}

// stagedTTL is how long a copy made for a migration is kept before the
// state assigns it here; an abandoned migration's copy is dropped after it.
const stagedTTL = 10 * time.Minute

// Agent hosts this node's shards.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	client *Client

	mu     sync.Mutex
	staged map[string]time.Time // copies received ahead of their assignment
	kick   chan struct{}
	opLog  []OpRecord
}

// Op names the action step on whose behalf an agent does something.
type Op struct {
	TaskID string `json:"task_id"`
	Step   int    `json:"step"`
	Term   uint64 `json:"term"`
}

// OpRecord is one entry of the agent's op log: what it did, for which step
// of which action, under which leader's term. Checkers use it to prove that
// no step was carried out by two leaders.
type OpRecord struct {
	Op
	Kind  string `json:"kind"`
	Shard string `json:"shard"`
	From  string `json:"from,omitempty"`
	Time  int64  `json:"time"`
}

// maxOps bounds the op log; the oldest records go first.
const maxOps = 100_000

func (a *Agent) record(r OpRecord) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.opLog = append(a.opLog, r)
	if len(a.opLog) > maxOps {
		a.opLog = a.opLog[len(a.opLog)-maxOps:]
	}
}

// Ops returns a copy of the op log.
func (a *Agent) Ops() []OpRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]OpRecord{}, a.opLog...)
}

// New makes an agent.
func New(cfg Config) *Agent {
	if cfg.Resync == 0 {
		cfg.Resync = 10 * time.Second
	}
	if cfg.Scale == 0 {
		cfg.Scale = 1.0 / 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Agent{
		cfg: cfg, log: cfg.Logger.With("component", "agent", "node_uid", cfg.NodeUID),
		client: NewClient(cfg.Client), staged: map[string]time.Time{}, kick: make(chan struct{}, 1),
	}
}

// Run reconciles on start, after every applied change and every Resync,
// until ctx ends.
func (a *Agent) Run(ctx context.Context) {
	t := time.NewTicker(a.cfg.Resync)
	defer t.Stop()
	for {
		changed := a.cfg.FSM.Changed()
		if err := a.Reconcile(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("reconcile", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-a.kick:
		case <-t.C:
		}
	}
}

// Desired returns the shards the replicated state assigns to this node.
func (a *Agent) Desired() map[string]Spec {
	out := map[string]Spec{}
	a.cfg.FSM.Read(func(st *fsm.State, _ uint64) {
		for _, sh := range st.Shards {
			if sh.NodeUID != a.cfg.NodeUID {
				continue
			}
			pers := fsm.PersistenceDisabled
			if b, ok := st.BDBs[sh.BDBUID]; ok {
				pers = b.DataPersistence
			}
			out[sh.UID] = Spec{UID: sh.UID, BDB: sh.BDBUID, Role: sh.Role,
				Size: int64(float64(sh.Memory) * a.cfg.Scale), Persistence: pers}
		}
	})
	return out
}

// Reconcile makes local shards match the state: it creates missing shards,
// fixes roles, writes persistence files, and drops shards no longer
// assigned here (except copies staged for a migration).
func (a *Agent) Reconcile(ctx context.Context) error {
	want := a.Desired()
	var errs []error
	for _, uid := range sortedKeys(want) {
		s := want[uid]
		info, err := a.cfg.Backend.Info(uid)
		switch {
		case errors.Is(err, ErrNoShard):
			a.log.Info("materialising shard", "shard_uid", uid, "bytes", s.Size)
			if err := a.cfg.Backend.Materialise(ctx, s); err != nil {
				errs = append(errs, err)
				continue
			}
			info, err = a.cfg.Backend.Info(uid)
			if err != nil {
				errs = append(errs, err)
				continue
			}
		case err != nil:
			errs = append(errs, err)
			continue
		}
		a.unstage(uid)
		if info.Role != s.Role {
			if err := a.cfg.Backend.SwitchRole(ctx, uid, s.Role); err != nil {
				errs = append(errs, err)
			}
		}
		if s.Persistence != fsm.PersistenceDisabled && !info.Persisted {
			if err := a.cfg.Backend.Persist(ctx, uid, s.Persistence); err != nil {
				errs = append(errs, err)
			}
		}
	}
	local, err := a.cfg.Backend.List()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, uid := range local {
		if _, ok := want[uid]; ok || a.isStaged(uid) {
			continue
		}
		a.log.Info("dropping shard not assigned here", "shard_uid", uid)
		if err := a.cfg.Backend.Drop(ctx, uid); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (a *Agent) stage(uid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.staged[uid] = time.Now()
}

func (a *Agent) unstage(uid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.staged, uid)
}

func (a *Agent) isStaged(uid string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.staged[uid]
	if ok && time.Since(t) > stagedTTL {
		delete(a.staged, uid)
		return false
	}
	return ok
}

// Kick asks for a reconcile soon.
func (a *Agent) Kick() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func sortedKeys(m map[string]Spec) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
