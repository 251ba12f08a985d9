package proxy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SlotRange is an inclusive range of hash slots, as in the replicated
// state's assigned_slots ("0-8191").
type SlotRange struct {
	Start, End int
}

// String formats r the way ParseSlotRanges reads it.
func (r SlotRange) String() string {
	if r.Start == r.End {
		return strconv.Itoa(r.Start)
	}
	return fmt.Sprintf("%d-%d", r.Start, r.End)
}

func (r SlotRange) validate() error {
	if r.Start < 0 || r.End >= NumSlots || r.Start > r.End {
		return fmt.Errorf("slot range %d-%d: %w", r.Start, r.End, ErrBadTable)
	}
	return nil
}

// ErrBadTable is wrapped by every error about a routing table or slot range
// the proxy refuses, so that callers can tell a bad table from an I/O error.
var ErrBadTable = errors.New("invalid routing table")

// ParseSlotRanges reads ranges written like assigned_slots: "0-8191",
// "0-100,200-300", "5" (one slot); commas or spaces separate ranges.
func ParseSlotRanges(s string) ([]SlotRange, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
	out := make([]SlotRange, 0, len(fields))
	for _, f := range fields {
		lo, hi, isRange := strings.Cut(f, "-")
		start, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("slot range %q: %w", f, ErrBadTable)
		}
		end := start
		if isRange {
			if end, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("slot range %q: %w", f, ErrBadTable)
			}
		}
		r := SlotRange{Start: start, End: end}
		if err := r.validate(); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Shard is one entry of the routing table: the slots a shard owns and the
// address (host:port) of its current master.
type Shard struct {
	ID     string
	Master string
	Slots  []SlotRange
}

// noShard marks a slot no shard owns.
const noShard = -1

// compileTable checks shards and indexes them by slot. Slots nobody owns
// are allowed (a database being created or shrunk) and answer CLUSTERDOWN;
// a slot owned twice is refused, since either choice would be a guess.
func compileTable(shards []Shard) (*[NumSlots]int32, []Shard, error) {
	var owner [NumSlots]int32
	for i := range owner {
		owner[i] = noShard
	}
	ids := make(map[string]bool, len(shards))
	copied := make([]Shard, len(shards))
	for i, sh := range shards {
		if sh.ID == "" || sh.Master == "" {
			return nil, nil, fmt.Errorf("shard %d needs an ID and a master: %w", i, ErrBadTable)
		}
		if ids[sh.ID] {
			return nil, nil, fmt.Errorf("shard %q listed twice: %w", sh.ID, ErrBadTable)
		}
		ids[sh.ID] = true
		for _, r := range sh.Slots {
			if err := r.validate(); err != nil {
				return nil, nil, fmt.Errorf("shard %q: %w", sh.ID, err)
			}
			for s := r.Start; s <= r.End; s++ {
				if owner[s] != noShard {
					return nil, nil, fmt.Errorf("slot %d owned by %q and %q: %w",
						s, shards[owner[s]].ID, sh.ID, ErrBadTable)
				}
				owner[s] = int32(i)
			}
		}
		// The caller may reuse its slices; the table must not change under us.
		copied[i] = sh
		copied[i].Slots = append([]SlotRange(nil), sh.Slots...)
	}
	return &owner, copied, nil
}
