package fsm

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"sync"

	"github.com/hashicorp/raft"
)

// Result is what Apply hands back to the proposer of a command.
type Result struct {
	Index uint64          `json:"index"`
	Err   *Error          `json:"error,omitempty"`
	Value json.RawMessage `json:"value,omitempty"`
}

// FSM is the raft state machine. It is safe for concurrent readers while raft
// applies entries.
type FSM struct {
	mu      sync.RWMutex
	state   *State
	applied uint64        // highest log index that reached the FSM
	changed chan struct{} // closed and replaced after every applied entry
	admit   Admission
	// checkpoints are this node's hashes of its state at the latest
	// checkpoint entries, oldest first; lastCommand is the index of the
	// newest command entry applied. Neither is replicated state.
	checkpoints []StateHash
	lastCommand uint64
}

// Admission decides, inside Apply, whether a submitted action may be
// accepted (SPEC §3.2, §4.1): it sees the whole state, every other
// non-terminal action included, and returns the steps it would plan (kept
// as the action's reservation) or the domain error that refuses it. It must
// be a pure function of its arguments: every node runs it on the same entry
// and must reach the same answer.
type Admission func(st *State, a *Action) ([]Step, *Error)

// Option configures an FSM.
type Option func(*FSM)

// WithAdmission makes Apply run fn on every submitted action. Without it
// Apply only checks what the state itself decides (the node exists, no
// other action runs on it).
func WithAdmission(fn Admission) Option { return func(f *FSM) { f.admit = fn } }

// New returns an FSM holding an empty state.
func New(opts ...Option) *FSM {
	f := &FSM{state: NewState(), changed: make(chan struct{})}
	f.state.keepLog(nil)
	for _, o := range opts {
		o(f)
	}
	return f
}

var _ raft.FSM = (*FSM)(nil)
var _ raft.ConfigurationStore = (*FSM)(nil)

// Apply applies one committed command entry. It panics on an entry that does
// not decode: a log that holds garbage cannot be applied safely.
func (f *FSM) Apply(l *raft.Log) any {
	c, err := Decode(l.Data)
	if err != nil {
		panic(fmt.Sprintf("fsm: log entry %d: %v", l.Index, err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, derr := f.state.apply(c, l.Index, f.admit)
	f.lastCommand = l.Index
	if c.Type == CmdCheckpoint && derr == nil {
		f.recordCheckpoint(l.Index)
	}
	res := &Result{Index: l.Index, Err: derr}
	if derr == nil && v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			panic(fmt.Sprintf("fsm: entry %d: encode result: %v", l.Index, err))
		}
		res.Value = b
	}
	f.advance(l.Index)
	return res
}

// StoreConfiguration is called by raft for configuration entries, in log
// order on every node. The FSM keeps the voters, which the quorum pre-check
// counts (a node that joined the table but does not vote yet is no voter),
// and notes the index so that its applied index counts every entry.
func (f *FSM) StoreConfiguration(index uint64, cfg raft.Configuration) {
	voters := []int{}
	for _, sv := range cfg.Servers {
		if sv.Suffrage != raft.Voter {
			continue
		}
		if uid, err := strconv.Atoi(string(sv.ID)); err == nil {
			voters = append(voters, uid)
		}
	}
	slices.Sort(voters)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state.Voters = voters
	f.advance(index)
}

// advance must be called with f.mu held.
func (f *FSM) advance(index uint64) {
	if index > f.applied {
		f.applied = index
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

// Applied returns the highest log index the FSM has applied.
func (f *FSM) Applied() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.applied
}

// Changed returns a channel that is closed when the next entry is applied.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// Read calls fn with the current state and the index it reflects. fn must not
// keep or change the state; it runs under a read lock, so keep it short.
func (f *FSM) Read(fn func(s *State, index uint64)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.state, f.applied)
}

// snapshotVersion is the layout of the snapshot document.
const snapshotVersion = 1

type snapshotDoc struct {
	Version int    `json:"version"`
	Applied uint64 `json:"applied"`
	State   *State `json:"state"`
}

// Snapshot captures a copy of the state; raft persists it on another goroutine.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &snapshot{doc: snapshotDoc{Version: snapshotVersion, Applied: f.applied, State: f.state.Clone()}}, nil
}

// Restore replaces the state with a snapshot written by Persist.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var doc snapshotDoc
	if err := json.NewDecoder(rc).Decode(&doc); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if doc.Version != snapshotVersion {
		return fmt.Errorf("restore snapshot: version %d unknown", doc.Version)
	}
	if doc.State == nil {
		return fmt.Errorf("restore snapshot: no state")
	}
	doc.State.fillMaps()
	f.mu.Lock()
	defer f.mu.Unlock()
	doc.State.keepLog(f.state.log)
	f.state = doc.State
	f.applied = doc.Applied
	close(f.changed)
	f.changed = make(chan struct{})
	return nil
}

type snapshot struct{ doc snapshotDoc }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.doc); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("close snapshot sink: %w", err)
	}
	return nil
}

func (s *snapshot) Release() {}

// apply changes s by one decoded command at the given log index. It checks
// everything before it changes anything, so a rejected command leaves s as it
// was. It returns the value to hand back to the proposer.
func (s *State) apply(c Command, index uint64, admit Admission) (any, *Error) {
	if c.Type != CmdBootstrap && !s.Bootstrapped() {
		return nil, Errorf(ErrNotBootstrapped, "no cluster has been created")
	}
	if a, ok := c.Payload.(authored); ok {
		if err := s.checkActor(a.author()); err != nil {
			return nil, err
		}
	}
	t, ok := commandsByPayload[reflect.TypeOf(c.Payload)]
	if !ok {
		// Decode only returns the payloads of the command table.
		panic("fsm: unhandled command " + c.Type.String())
	}
	return commandsByType[t].apply(s, c.Payload, index, admit)
}
