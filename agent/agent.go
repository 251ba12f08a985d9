package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
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
	// OpLogPath, when set, is a file to which every op record is appended
	// (JSON lines), before the op is answered, so that the log survives the
	// process's crash. It is not fsync'd: a machine's crash may lose its
	// last lines, as it may the role switches they record, which are not
	// either, and a sync at each failover cost a tenth of the step.
	OpLogPath string
	// CaughtUp, when set, reports whether the local state is at least as
	// new as it was before this start. Until then nothing is reconciled:
	// after a restart the state is an old snapshot until raft replays the
	// log, and reconciling against it would drop shards assigned since.
	CaughtUp func() bool
	// APIAddr, when set, is this node's API address. The agent drops
	// nothing unless the state's record of NodeUID names this address: a
	// node started under another node's uid must not take the state's
	// word that its shards belong elsewhere.
	APIAddr string
	// Endpoints runs a proxy for each database endpoint the state binds
	// to this node; it needs shards that are redis-servers.
	Endpoints bool
	Logger    *slog.Logger
}

// stagedTTL is how long a copy made for a migration is kept although this
// node's state shows neither the shard assigned here nor a pending move of
// it here: the state may lag behind the leader that asked for the copy.
// After it, a copy no pending move needs (its action failed, or the move
// was sent elsewhere) is dropped.
const stagedTTL = time.Minute

// Agent hosts this node's shards.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	client *Client

	inflight sync.WaitGroup // requests being served

	mu     sync.Mutex
	staged map[string]time.Time // copies received ahead of their assignment
	kick   chan struct{}
	nudged chan struct{}
	opLog  []OpRecord
	// fence is the highest leader term seen per task: a request of an older
	// term comes from a deposed leader and is refused, when it arrives and
	// again when its effect would become visible. copied remembers the
	// copies done per action step and term, so that a leader replaying its
	// own step does not copy again, while a new leader never takes a
	// deposed one's result for its own.
	fence   map[string]uint64
	copied  map[stepKey]Info
	copying keyedMutex
	// placing makes a reconcile's creation of a shard and a drop of it
	// one after the other, each with the state as it is then.
	placing keyedMutex
	// kept is why each local shard that is not assigned here was kept,
	// so that a reason is logged once, not at every reconcile.
	kept map[string]string
	// settled is, per shard, the spec a pass last brought it to without
	// an error: a pass after a state change leaves a shard whose spec has
	// not changed since alone, so that one applied entry costs the agent
	// what it changed, not a look at every local shard. Full passes (on
	// start, every Resync, on a kick or a retry) look at every shard and
	// repair what changed outside the state; anything the shard API
	// changes drops the shard from settled.
	settled map[string]Spec
	// recheck is the shards assigned here that the last look at left
	// unsettled, or that the shard API changed since: an incremental
	// pass looks at them again.
	recheck map[string]bool
	// pass is what the last reconcile pass read of the state.
	pass passView
	// promoted is the step each local shard was last promoted for, until
	// this node's state has that step committed (notePromoted).
	promoted map[string]Op
	eps      endpointManager
	// replicas caches where each master's replica was last found
	// (uid → replicaSeen), for when its agent does not answer.
	replicas sync.Map
}

type stepKey struct {
	task string
	step int
	term uint64
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
	if a.cfg.OpLogPath != "" {
		if err := appendLine(a.cfg.OpLogPath, r); err != nil {
			a.log.Warn("op log", "error", err)
		}
	}
	a.opLog = append(a.opLog, r)
	if len(a.opLog) > maxOps {
		a.opLog = a.opLog[len(a.opLog)-maxOps:]
	}
}

// StopShards stops the processes of a backend that runs them, keeping
// their data: for a node the cluster removed, once Run has returned.
func (a *Agent) StopShards(ctx context.Context) error {
	if s, ok := a.cfg.Backend.(interface{ StopAll(context.Context) error }); ok {
		return s.StopAll(ctx)
	}
	return nil
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
	a := &Agent{
		cfg: cfg, log: cfg.Logger.With("component", "agent", "node_uid", cfg.NodeUID),
		client: NewClient(cfg.Client), staged: map[string]time.Time{}, kick: make(chan struct{}, 1), nudged: make(chan struct{}, 1),
		fence: map[string]uint64{}, copied: map[stepKey]Info{}, kept: map[string]string{}, settled: map[string]Spec{}, recheck: map[string]bool{},
		promoted: map[string]Op{},
	}
	if r, ok := cfg.Backend.(interface{ setPartner(partnerFunc) }); ok {
		r.setPartner(a.replicaAddr)
	}
	return a
}

// Run reconciles until ctx ends: every shard on start, every Resync, on a
// kick and after a pass that left something undone; after an applied
// change or a shard API call, the shards the state wrote since and those
// left unsettled (see passView and settled).
func (a *Agent) Run(ctx context.Context) {
	if sup, ok := a.cfg.Backend.(Supervisor); ok {
		done := make(chan struct{})
		go func() { defer close(done); sup.Supervise(ctx) }()
		defer func() { <-done }()
	}
	if a.cfg.Endpoints {
		defer func(done <-chan struct{}) { <-done }(a.startEndpoints(ctx))
	}
	t := time.NewTicker(a.cfg.Resync)
	defer t.Stop()
	var last string
	full := true
	for {
		changed := a.cfg.FSM.Changed()
		var retry <-chan time.Time
		if a.cfg.CaughtUp != nil && !a.cfg.CaughtUp() {
			a.log.Debug("reconcile waits for the state to catch up")
		} else if err := a.reconcile(ctx, full); err != nil && ctx.Err() == nil {
			// Tried again soon: a replica waiting for its master's
			// address, say, is no replica until it has it. The same
			// trouble is logged once.
			retry = time.After(reconcileRetry)
			if err.Error() != last {
				a.log.Warn("reconcile", "error", err)
			}
			last = err.Error()
		} else {
			last = ""
		}
		full = true
		select {
		case <-ctx.Done():
			return
		case <-changed:
			full = false
		case <-a.nudged:
			full = false
		case <-a.kick:
		case <-t.C:
		case <-retry:
		}
	}
}

// reconcileRetry is how soon a reconcile that left something undone runs
// again.
const reconcileRetry = 500 * time.Millisecond

// view is what one read of the state says about this node's shards: read
// apart, a move committed in between would be in neither want nor pending.
type view struct {
	want    map[string]Spec // assigned to this node
	pending map[string]bool // a running action still has to move here
	// owner is the node the state assigns each shard to, of those the
	// view was asked about (a pass's candidates).
	owner map[string]int
	// issued is the state's next shard uid: every lower uid was handed
	// out, so a shard below it that the state lacks was deleted.
	issued int
	bdbs   map[int]bool
	// identity is why this node cannot prove it is NodeUID in the state;
	// empty when it can.
	identity string
	// pairs is the master of each replica in want, by the state.
	pairs map[string]pairRef
	// switching is the shards a failover step in flight is switching.
	switching map[string]bool
}

// assigned returns the shards assigned to this node and those a running
// action still has to move here.
func (a *Agent) assigned() (want map[string]Spec, pending map[string]bool) {
	v := a.view()
	return v.want, v.pending
}

// assignedHere reports whether the state assigns shard uid to this node.
func (a *Agent) assignedHere(uid string) bool {
	var here bool
	a.cfg.FSM.Read(func(st *fsm.State, _ uint64) {
		sh, ok := st.Shards[uid]
		here = ok && sh.NodeUID == a.cfg.NodeUID
	})
	return here
}

func (a *Agent) view() view {
	var v view
	promoted := a.promotions()
	a.cfg.FSM.Read(func(st *fsm.State, _ uint64) {
		v.want, v.pairs = a.scan(st, 0)
		a.facts(st, &v, nil, promoted)
	})
	return v
}

// passView is the view of one reconcile pass. On a full pass it reads
// every shard, and candidates, the local shards that may be strays, are
// local; otherwise it reads what the state wrote since the last pass, and
// the candidates are the shards that left this node since. looks is the
// shards whose spec changed, when the pass read only what changed
// (incremental); a full pass looks at every shard.
// The caller holds a.pass.mu for the whole pass: the view's want and
// pairs are the pass view's own maps.
func (a *Agent) passView(full bool, local []string) (v view, candidates, looks []string, incremental bool) {
	promoted := a.promotions()
	var done []string
	a.cfg.FSM.Read(func(st *fsm.State, _ uint64) {
		var left []string
		left, looks, incremental = a.pass.update(a, st, full)
		candidates = left
		if full {
			candidates = local
		}
		done = a.facts(st, &v, candidates, promoted)
	})
	a.forgetPromoted(promoted, done)
	v.want, v.pairs = a.pass.want, a.pass.pairs
	if _, follows := a.cfg.Backend.(Follower); follows {
		// The pass fills in where each replica's master listens.
		v.want, v.pairs = maps.Clone(v.want), maps.Clone(v.pairs)
	}
	return v, candidates, looks, incremental
}

// facts fills in what a view needs besides the shards assigned here: the
// owner of each of candidates (uids) that the state holds, which deciding
// about a stray needs, the node's identity, and what actions have in
// flight, promoted (a copy of notePromoted's) included. It returns the
// promotions whose step is over (stillSwitching).
func (a *Agent) facts(st *fsm.State, v *view, candidates []string, promoted map[string]Op) (promotedDone []string) {
	v.pending, v.bdbs = map[string]bool{}, make(map[int]bool, len(st.BDBs))
	v.owner = make(map[string]int, len(candidates))
	for _, uid := range candidates {
		if sh, ok := st.Shards[uid]; ok {
			v.owner[uid] = sh.NodeUID
		}
	}
	switch n, ok := st.Nodes[a.cfg.NodeUID]; {
	case !ok:
		v.identity = fmt.Sprintf("the state has no node %d", a.cfg.NodeUID)
	case a.cfg.APIAddr != "" && n.APIAddr != a.cfg.APIAddr:
		v.identity = fmt.Sprintf("the state's node %d is at %s, not at this node's %s", a.cfg.NodeUID, n.APIAddr, a.cfg.APIAddr)
	}
	v.issued = st.NextShardUID
	v.switching = switchingIn(st)
	promotedDone = stillSwitching(st, promoted, v.switching)
	for uid := range st.BDBs {
		v.bdbs[uid] = true
	}
	for _, byName := range st.Actions {
		for _, act := range byName {
			if fsm.Terminal(act.Status) {
				continue
			}
			for _, step := range act.Steps[min(act.Done, len(act.Steps)):] {
				if step.Kind == fsm.StepMove && step.To == a.cfg.NodeUID {
					v.pending[step.Shard] = true
				}
			}
		}
	}
	return promotedDone
}

// mayDrop decides about a local shard that is neither assigned here nor
// moving here: it is dropped only when the state proves it belongs
// elsewhere now, as losing a shard's only copy cannot be undone while
// keeping a superfluous one costs disk. bdb is the database the local copy
// says it belongs to.
func (v *view) mayDrop(uid string, bdb int) (drop bool, why string) {
	if v.identity != "" {
		return false, "this node's identity is not proven: " + v.identity
	}
	if owner, ok := v.owner[uid]; ok {
		return true, fmt.Sprintf("the state assigns it to node %d", owner)
	}
	// Gone from the state: dropped only if the state once issued the uid
	// and the database is gone, that is, the database was deleted.
	if n, err := strconv.Atoi(uid); err == nil && n >= 1 && n < v.issued && strconv.Itoa(n) == uid && !v.bdbs[bdb] {
		return true, fmt.Sprintf("its database %d was deleted", bdb)
	}
	return false, "the state does not know of it"
}

// Reconcile makes local shards match the state: it creates missing shards,
// fixes roles, writes persistence files, and drops shards that a caught-up
// state assigns to another node or whose database it deleted (never copies
// staged for a migration, and never shards the state does not know of).
func (a *Agent) Reconcile(ctx context.Context) error { return a.reconcile(ctx, true) }

// reconcile is Reconcile; unless full, it skips the shards that are
// settled at the spec the state gives them now.
func (a *Agent) reconcile(ctx context.Context, full bool) error {
	// One pass at a time (Reconcile may be called beside Run).
	a.pass.mu.Lock()
	defer a.pass.mu.Unlock()
	var local []string
	if full {
		var err error
		if local, err = a.cfg.Backend.List(); err != nil {
			return fmt.Errorf("list local shards: %w", err)
		}
	}
	v, candidates, looks, incremental := a.passView(full, local)
	var errs []error
	_, follows := a.cfg.Backend.(Follower)
	if follows {
		a.resolveMasters(ctx, &v)
		a.findReplicas(ctx, v)
		for _, uid := range sortedKeys(v.want) {
			if _, paired := v.pairs[uid]; paired && v.want[uid].Master == "" {
				errs = append(errs, fmt.Errorf("replica %s: where its master %s listens is not known yet", uid, v.pairs[uid].uid))
			}
		}
	}
	want := v.want
	// A backend whose replicas follow a process is looked at whole: where
	// a master listens can change without the state.
	var uids []string
	if incremental && !follows {
		uids = a.toLook(want, looks, v.switching)
	} else {
		uids = sortedKeys(want)
	}
	for _, uid := range uids {
		s := want[uid]
		if !full && !v.switching[uid] && a.isSettled(uid, s) {
			continue
		}
		before := len(errs)
		made := a.reconcileShard(ctx, &v, s, &errs)
		a.settle(uid, s, made && len(errs) == before && !v.switching[uid])
	}
	a.forget(want, candidates, full)
	return a.dropStrays(ctx, &v, candidates, errs)
}

// toLook is what an incremental pass looks at, in order: the shards
// assigned here whose spec changed, those a failover in flight switches,
// and those the last look left unsettled.
func (a *Agent) toLook(want map[string]Spec, looks []string, switching map[string]bool) []string {
	out := slices.Clone(looks)
	for uid := range switching {
		if _, ok := want[uid]; ok {
			out = append(out, uid)
		}
	}
	a.mu.Lock()
	for uid := range a.recheck {
		if _, ok := want[uid]; ok {
			out = append(out, uid)
		}
	}
	a.mu.Unlock()
	slices.Sort(out)
	return slices.Compact(out)
}

// forget drops what is recorded of the shards no longer assigned here:
// one that comes back is looked at afresh. After a full pass that is every
// shard not in want, else those that left (candidates).
func (a *Agent) forget(want map[string]Spec, left []string, full bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !full {
		for _, uid := range left {
			delete(a.settled, uid)
			delete(a.recheck, uid)
		}
		return
	}
	for uid := range a.settled {
		if _, ok := want[uid]; !ok {
			delete(a.settled, uid)
		}
	}
	for uid := range a.recheck {
		if _, ok := want[uid]; !ok {
			delete(a.recheck, uid)
		}
	}
}

// reconcileShard brings one shard assigned here to s, adding what went
// wrong to errs; false if the shard was left unmade because the state no
// longer assigns it here.
func (a *Agent) reconcileShard(ctx context.Context, v *view, s Spec, errs *[]error) bool {
	uid := s.UID
	info, err := a.cfg.Backend.Info(uid)
	switch {
	case errors.Is(err, ErrNoShard):
		made, err := a.materialise(ctx, s)
		if err != nil {
			*errs = append(*errs, err)
			return false
		}
		if !made {
			return false
		}
		if info, err = a.cfg.Backend.Info(uid); err != nil {
			*errs = append(*errs, err)
			return false
		}
	case err != nil:
		*errs = append(*errs, err)
		return false
	}
	a.unstage(uid)
	if v.switching[uid] && info.Role != s.Role {
		a.log.Debug("role left to the failover in flight", "shard_uid", uid, "role", info.Role)
	} else if err := a.fixRole(ctx, s, info); err != nil {
		*errs = append(*errs, err)
	}
	if err := a.fixPersistence(ctx, s, info); err != nil {
		*errs = append(*errs, err)
	}
	return true
}

// dropStrays drops those of the local shards local (uids) that a
// caught-up state proves belong elsewhere, and returns errs with what went
// wrong added.
func (a *Agent) dropStrays(ctx context.Context, v *view, local []string, errs []error) error {
	want, pending := v.want, v.pending
	if a.cfg.CaughtUp != nil && !a.cfg.CaughtUp() {
		// An old snapshot may not know of shards assigned here since.
		a.log.Debug("drops wait for the state to catch up")
		return errors.Join(errs...)
	}
	for _, uid := range local {
		if _, ok := want[uid]; ok || pending[uid] || a.isStaged(uid) {
			a.forgetKept(uid)
			continue
		}
		info, err := a.cfg.Backend.Info(uid)
		if errors.Is(err, ErrNoShard) {
			continue // left before it was ever made here
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		drop, why := v.mayDrop(uid, info.BDB)
		if !drop {
			a.keep(uid, why)
			continue
		}
		a.forgetKept(uid)
		a.log.Info("dropping shard not assigned here", "shard_uid", uid, "reason", why)
		if err := a.cfg.Backend.Drop(ctx, uid); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// materialise creates the new, empty shard s, unless the state no longer
// assigns it here: this pass's view may be older than a move that took it
// away and whose source was just asked to drop it, and an empty copy made
// now would take the writes of clients that are still routed here. The
// check and the creation are one step for the drop handler (placing).
func (a *Agent) materialise(ctx context.Context, s Spec) (bool, error) {
	mu := a.placing.get(s.UID)
	mu.Lock()
	defer mu.Unlock()
	if !a.assignedHere(s.UID) {
		return false, nil
	}
	a.log.Info("materialising shard", "shard_uid", s.UID, "bytes", s.Size)
	return true, a.cfg.Backend.Materialise(ctx, s)
}

// keep logs, once per reason, that a shard not assigned here is kept.
func (a *Agent) keep(uid, why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.kept[uid] == why {
		return
	}
	a.kept[uid] = why
	a.log.Warn("keeping shard not assigned here", "shard_uid", uid, "reason", why)
}

func (a *Agent) isSettled(uid string, s Spec) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	prev, ok := a.settled[uid]
	return ok && prev == s
}

// settle records that uid is at s (ok), or that it needs another look.
func (a *Agent) settle(uid string, s Spec, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ok {
		a.settled[uid] = s
		delete(a.recheck, uid)
	} else {
		delete(a.settled, uid)
		a.recheck[uid] = true
	}
}

// unsettle makes the next pass look at uid again.
func (a *Agent) unsettle(uid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.settled, uid)
	a.recheck[uid] = true
}

func (a *Agent) forgetKept(uid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.kept, uid)
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

// Kick asks for a full reconcile soon.
func (a *Agent) Kick() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// nudge asks for a pass soon that looks at what changed and at the
// shards left unsettled: a full pass reads every local shard, which is
// too much for each shard a step switches.
func (a *Agent) nudge() {
	select {
	case a.nudged <- struct{}{}:
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

func appendLine(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode op record: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open op log: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write op log: %w", err)
	}
	return f.Close()
}

// ErrStaleTerm is returned for a request from a leader older than one the
// agent already heard from about the same action.
var ErrStaleTerm = errors.New("request from a deposed leader")

// admit checks op against the task's fence and raises it.
func (a *Agent) admit(op Op) error {
	if op.TaskID == "" {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.fenced(op); err != nil {
		return err
	}
	a.fence[op.TaskID] = op.Term
	return nil
}

// fenced reports ErrStaleTerm if a newer term than op's owns its task;
// a.mu is held.
func (a *Agent) fenced(op Op) error {
	if op.Term < a.fence[op.TaskID] {
		return fmt.Errorf("task %s step %d of term %d, but term %d owns it: %w", op.TaskID, op.Step, op.Term, a.fence[op.TaskID], ErrStaleTerm)
	}
	return nil
}

// underFence runs effect if no newer term than op's has been seen for its
// task, holding the fence meanwhile: a request of a newer term arriving at
// that moment is admitted either before (and effect does not run) or after
// the effect is visible.
func (a *Agent) underFence(op Op, effect func() error) error {
	if op.TaskID == "" {
		return effect()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.fenced(op); err != nil {
		return err
	}
	return effect()
}

func (a *Agent) copiedFor(op Op) (Info, bool) {
	if op.TaskID == "" {
		return Info{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	info, ok := a.copied[stepKey{op.TaskID, op.Step, op.Term}]
	return info, ok
}

func (a *Agent) rememberCopy(op Op, info Info) {
	if op.TaskID == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fenced(op) != nil {
		return // a newer leader owns the task: it never reuses this result
	}
	a.copied[stepKey{op.TaskID, op.Step, op.Term}] = info
}
