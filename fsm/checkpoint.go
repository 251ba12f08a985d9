package fsm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Checkpoint marks a point in the log at which every node hashes its whole
// state. Nodes that applied the same log hold the same state there, so
// hashes that differ between nodes show a node whose state diverged (a
// flipped bit on its disk, a replay gone wrong): that node must stop
// serving. The leader proposes one now and then; it changes nothing.
type Checkpoint struct{}

// StateHash is a node's hash of its state at a checkpoint's index.
type StateHash struct {
	Index uint64 `json:"index"`
	Hash  string `json:"hash"`
}

// checkpointsKept is how many checkpoint hashes a node keeps to compare
// with slower or faster peers.
const checkpointsKept = 64

// recordCheckpoint hashes the state at index. It must be called with f.mu
// held for writing, in Apply, so that every node hashes the same state.
func (f *FSM) recordCheckpoint(index uint64) {
	// A restored state has its maps made; one built entry by entry may
	// still hold nil ones, which encode differently. Make them here too, on
	// every node at the same entry, so that only content counts.
	f.state.fillMaps()
	b, err := json.Marshal(f.state)
	if err != nil {
		panic(fmt.Sprintf("fsm: checkpoint at %d: encode state: %v", index, err))
	}
	sum := sha256.Sum256(b)
	f.checkpoints = append(f.checkpoints, StateHash{Index: index, Hash: hex.EncodeToString(sum[:])})
	if n := len(f.checkpoints); n > checkpointsKept {
		f.checkpoints = append(f.checkpoints[:0:0], f.checkpoints[n-checkpointsKept:]...)
	}
}

// LatestCheckpoint returns the newest checkpoint hash this node holds.
func (f *FSM) LatestCheckpoint() (StateHash, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if len(f.checkpoints) == 0 {
		return StateHash{}, false
	}
	return f.checkpoints[len(f.checkpoints)-1], true
}

// CheckpointAt returns this node's hash of its state at index, if index is
// a checkpoint it applied and still keeps.
func (f *FSM) CheckpointAt(index uint64) (StateHash, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, c := range f.checkpoints {
		if c.Index == index {
			return c, true
		}
	}
	return StateHash{}, false
}

// LastIsCheckpoint reports whether the newest entry applied was a
// checkpoint: a leader then has nothing new to check.
func (f *FSM) LastIsCheckpoint() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.checkpoints) > 0 && f.checkpoints[len(f.checkpoints)-1].Index == f.lastCommand
}

// applyCheckpoint changes nothing: the FSM hashes the state as it stands.
func (s *State) applyCheckpoint(*Checkpoint) (any, *Error) { return nil, nil }
