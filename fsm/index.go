package fsm

import (
	"slices"
	"strconv"
)

// shardIndex is derived from the shard table's keys and from what never
// changes in a shard once created, its database and its slot range: so it
// stays right through moves, failovers and status reports, and only a new
// or deleted database makes it stale. Reads of a large model go through it
// rather than scanning and sorting every shard on each call.
type shardIndex struct {
	// count and next are len(Shards) and NextShardUID when it was built:
	// a state changed without Apply (tests build states by hand) is
	// noticed by them.
	count, next int
	sorted      []string         // every shard uid, in numeric order
	byBDB       map[int][]string // shard uids of each database, in order
	// pair is, for each shard with one, the uid of the shard that shares
	// its database and slots.
	pair map[string]string
}

type pairKey struct {
	bdb   int
	slots string
}

func (s *State) shardIndex() *shardIndex {
	if x := s.index.Load(); x != nil && x.count == len(s.Shards) && x.next == s.NextShardUID {
		return x
	}
	// Concurrent readers may each build one; the last stored wins, and
	// all are equal.
	x := buildShardIndex(s)
	s.index.Store(x)
	return x
}

// dropIndex must be called by whatever adds or removes shards.
func (s *State) dropIndex() { s.index.Store(nil) }

func buildShardIndex(s *State) *shardIndex {
	type keyed struct {
		n  int
		ok bool
		id string
	}
	keys := make([]keyed, 0, len(s.Shards))
	for id := range s.Shards {
		n, err := strconv.Atoi(id)
		keys = append(keys, keyed{n, err == nil, id})
	}
	slices.SortFunc(keys, func(a, b keyed) int {
		if a.ok && b.ok {
			return a.n - b.n
		}
		return compareUID(a.id, b.id)
	})
	x := &shardIndex{count: len(s.Shards), next: s.NextShardUID, sorted: make([]string, len(keys)),
		byBDB: make(map[int][]string, len(s.BDBs)), pair: make(map[string]string, len(keys))}
	bySlots := make(map[pairKey]string, len(keys)/2+1)
	for i, k := range keys {
		x.sorted[i] = k.id
		sh := s.Shards[k.id]
		x.byBDB[sh.BDBUID] = append(x.byBDB[sh.BDBUID], k.id)
		pk := pairKey{sh.BDBUID, sh.AssignedSlots}
		if other, ok := bySlots[pk]; ok {
			// A master and its replica; the model never holds a third.
			x.pair[k.id], x.pair[other] = other, k.id
			continue
		}
		bySlots[pk] = k.id
	}
	return x
}
