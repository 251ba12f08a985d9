package proxy

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// replyError is an error whose text is sent to the client as a RESP error
// as it is, so its first word must be a Redis error code.
type replyError string

func (e replyError) Error() string { return string(e) }

const errCrossSlot = replyError("CROSSSLOT Keys in request don't hash to the same slot")

// target is where a command goes: the shard (for messages) and its master.
type target struct {
	shard, addr string
}

// router holds the routing table and the switch-over marks. One mutex
// guards both, so a command sees a table and its marks from the same
// instant; every change closes and replaces changed, which wakes all held
// commands at once to look again.
type router struct {
	mu     sync.RWMutex
	owner  *[NumSlots]int32
	shards []Shard
	// unserved is the first slot no shard of the table owns (-1: none).
	unserved int
	marks    [NumSlots]uint16 // marks can overlap: a count, not a flag
	changed  chan struct{}
	held     atomic.Int64 // commands waiting right now, for INFO and tests
}

func newRouter(shards []Shard) (*router, error) {
	owner, copied, err := compileTable(shards)
	if err != nil {
		return nil, err
	}
	return &router{owner: owner, shards: copied, unserved: firstUnserved(owner), changed: make(chan struct{})}, nil
}

func firstUnserved(owner *[NumSlots]int32) int {
	for s, idx := range owner {
		if idx == noShard {
			return s
		}
	}
	return -1
}

// whole is nil when every slot has a master, else the CLUSTERDOWN error
// of the first that has none.
func (r *router) whole() error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.unserved < 0 {
		return nil
	}
	return unservedSlot(r.unserved)
}

func unservedSlot(s int) error {
	return replyError(fmt.Sprintf("CLUSTERDOWN Hash slot %d not served", s))
}

// notifyLocked wakes held commands; the caller holds mu for writing.
func (r *router) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *router) replace(shards []Shard) error {
	owner, copied, err := compileTable(shards)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.owner, r.shards, r.unserved = owner, copied, firstUnserved(owner)
	r.notifyLocked()
	return nil
}

// route resolves the master for slots. held is true when any of them is
// marked; changed is closed at the next change of table or marks, so a
// held command waits on it and asks again.
func (r *router) route(slots []int) (t target, held bool, changed <-chan struct{}, err error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	changed = r.changed
	for _, s := range slots {
		if r.marks[s] > 0 {
			return target{}, true, changed, nil
		}
	}
	for i, s := range slots {
		idx := r.owner[s]
		if idx == noShard {
			return target{}, false, changed, unservedSlot(s)
		}
		sh := r.shards[idx]
		if i > 0 && sh.Master != t.addr {
			return target{}, false, changed, errCrossSlot
		}
		t = target{shard: sh.ID, addr: sh.Master}
	}
	return t, false, changed, nil
}

// masters lists the distinct masters of the table, for commands that
// answer over the whole database.
func (r *router) masters() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	seen := make(map[string]bool, len(r.shards))
	var out []string
	for _, sh := range r.shards {
		if !seen[sh.Master] {
			seen[sh.Master] = true
			out = append(out, sh.Master)
		}
	}
	return out
}

func (r *router) table() []Shard {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Shard, len(r.shards))
	for i, sh := range r.shards {
		out[i] = sh
		out[i].Slots = append([]SlotRange(nil), sh.Slots...)
	}
	return out
}

func (r *router) shardSlots(id string) ([]SlotRange, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, sh := range r.shards {
		if sh.ID == id {
			return append([]SlotRange(nil), sh.Slots...), true
		}
	}
	return nil, false
}

func (r *router) adjustMarks(ranges []SlotRange, delta int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rg := range ranges {
		for s := rg.Start; s <= rg.End; s++ {
			r.marks[s] = uint16(int(r.marks[s]) + delta)
		}
	}
	r.notifyLocked()
}

// Switchover is a mark on slot ranges whose master is changing: commands
// for them are held until Done (or their hold times out).
type Switchover struct {
	r      *router
	ranges []SlotRange
	once   sync.Once
}

// Done lifts the mark; held commands then go to whatever master the table
// names at that moment. Calling it more than once is harmless, so callers
// can both defer it and call it on the happy path.
func (s *Switchover) Done() {
	s.once.Do(func() { s.r.adjustMarks(s.ranges, -1) })
}

func (r *router) mark(ranges []SlotRange) (*Switchover, error) {
	for _, rg := range ranges {
		if err := rg.validate(); err != nil {
			return nil, err
		}
	}
	ranges = append([]SlotRange(nil), ranges...)
	r.adjustMarks(ranges, +1)
	return &Switchover{r: r, ranges: ranges}, nil
}
