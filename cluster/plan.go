package cluster

import (
	"fmt"

	"cnm/fsm"
)

// Candidates describes every node of st for the planner, counting what each
// already hosts.
func Candidates(st *fsm.State) []Candidate {
	use := st.Usage()
	out := make([]Candidate, 0, len(st.Nodes))
	for _, uid := range st.NodeUIDs() {
		n := st.Nodes[uid]
		u := use[uid]
		out = append(out, Candidate{
			UID: uid, Rack: n.RackID, Eligible: st.Takes(uid),
			MaxShards: n.MaxRedisServers, Memory: n.TotalMemory,
			UsedShards: u.Shards, UsedMemory: u.Memory,
		})
	}
	return out
}

// PolicyOf is the placement part of the cluster policy.
func PolicyOf(st *fsm.State) Policy {
	return Policy{
		Dense:       st.Policy.DefaultShardsPlacement == fsm.PlacementDense,
		RackAware:   st.Policy.RackAware,
		Overbooking: st.Policy.ShardsOverbooking,
	}
}

// ErrInsufficientResources is returned when a request cannot be placed. It
// is fsm's sentinel, so that errors.Is matches the code wherever the
// refusal was decided.
var ErrInsufficientResources = fsm.ErrInsufficientResources

// PlanBDB places a new database's shards (master then replica, slot range by
// slot range, as fsm.CreateBDB expects) and picks the node of its endpoint:
// the node of its first master. The error, an *fsm.Error that matches
// ErrInsufficientResources and wraps the planner's *NoHomeError, names the
// first shard with no home.
func PlanBDB(st *fsm.State, b fsm.BDB) (placement []int, endpointNode int, err error) {
	per := 1
	if b.Replication {
		per = 2
	}
	mem := b.MemorySize / int64(b.ShardsCount)
	needs := make([]Need, 0, b.ShardsCount*per)
	for i := range b.ShardsCount {
		if per == 2 {
			m := len(needs)
			needs = append(needs,
				Need{ID: fmt.Sprintf("%d of %d (master)", i+1, b.ShardsCount), Memory: mem, Pair: m + 1},
				Need{ID: fmt.Sprintf("%d of %d (replica)", i+1, b.ShardsCount), Memory: mem, Pair: m})
		} else {
			needs = append(needs, Need{ID: fmt.Sprintf("%d of %d", i+1, b.ShardsCount), Memory: mem, Pair: -1})
		}
	}
	placement, err = Plan(Candidates(st), needs, PolicyOf(st))
	if err != nil {
		return nil, 0, fsm.Errorf(ErrInsufficientResources, "database %q: %w", b.Name, err)
	}
	return placement, placement[0], nil
}
