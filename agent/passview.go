package agent

import (
	"maps"
	"slices"
	"sync"

	"cnm/fsm"
)

// passView keeps, from one reconcile pass to the next, what the state
// assigns to this node. A pass after an applied change reads only the
// shards the state wrote since (fsm.State.ShardWrites), and their pairs,
// rather than every shard of the cluster: a step of an action writes two
// shards, and each of its three or four entries wakes every agent.
type passView struct {
	mu    sync.Mutex // held by a reconcile pass from start to end
	valid bool
	pos   uint64 // the state's ShardWrites position the view reflects
	// The node and database records the view was made from: the FSM
	// replaces a record rather than change it, so a record that is not
	// the one seen has changed. A changed node (an address) rebuilds the
	// view; a changed database (its persistence) reads its shards again.
	nodes map[int]*fsm.Node
	bdbs  map[int]*fsm.BDB
	want  map[string]Spec
	pairs map[string]pairRef
}

// spec is what the state asks of shard sh on this node.
func (a *Agent) spec(st *fsm.State, sh *fsm.Shard) Spec {
	pers := fsm.PersistenceDisabled
	if b, ok := st.BDBs[sh.BDBUID]; ok {
		pers = b.DataPersistence
	}
	return Spec{UID: sh.UID, BDB: sh.BDBUID, Slots: sh.AssignedSlots, Role: sh.Role,
		Size: int64(float64(sh.Memory) * a.cfg.Scale), Persistence: pers, Memory: sh.Memory}
}

// scan reads every shard of the cluster for those assigned here.
func (a *Agent) scan(st *fsm.State, hint int) (want map[string]Spec, pairs map[string]pairRef) {
	want, pairs = make(map[string]Spec, hint), make(map[string]pairRef, hint/2)
	for _, sh := range st.Shards {
		if sh.NodeUID != a.cfg.NodeUID {
			continue
		}
		want[sh.UID] = a.spec(st, sh)
		if p, ok := masterPair(st, sh); ok {
			pairs[sh.UID] = p
		}
	}
	return want, pairs
}

// update brings the pass view to st, which the caller holds read. It
// returns the shards that were assigned here and are no longer (left),
// and, when it read only what changed (incremental), the shards whose
// spec is new or changed (looks); otherwise every shard needs a look.
func (p *passView) update(a *Agent, st *fsm.State, full bool) (left, looks []string, incremental bool) {
	writes, pos, logged := st.ShardWrites(p.pos)
	incremental = !full && p.valid && logged && maps.Equal(p.nodes, st.Nodes)
	if !incremental {
		old := p.want
		p.want, p.pairs = a.scan(st, len(old))
		for uid := range old {
			if _, ok := p.want[uid]; !ok {
				left = append(left, uid)
			}
		}
	} else {
		touched := make(map[string]bool, 2*len(writes))
		for _, uid := range writes {
			touched[uid] = true
		}
		for uid, b := range st.BDBs {
			if p.bdbs[uid] != b {
				for _, sh := range st.ShardsOf(uid) {
					touched[sh.UID] = true
				}
			}
		}
		// A replica follows its master: a master moved or failed over
		// changes what its pair here must do.
		for _, uid := range slices.Collect(maps.Keys(touched)) {
			if sh, ok := st.Shards[uid]; ok {
				if pair := st.PairUID(sh); pair != "" {
					touched[pair] = true
				}
			}
		}
		for uid := range touched {
			sh, ok := st.Shards[uid]
			if !ok || sh.NodeUID != a.cfg.NodeUID {
				if _, was := p.want[uid]; was {
					delete(p.want, uid)
					left = append(left, uid)
				}
				delete(p.pairs, uid)
				continue
			}
			s := a.spec(st, sh)
			if prev, was := p.want[uid]; !was || prev != s {
				looks = append(looks, uid)
			}
			p.want[uid] = s
			if ref, ok := masterPair(st, sh); ok {
				if p.pairs[uid] != ref {
					looks = append(looks, uid)
				}
				p.pairs[uid] = ref
			} else if _, had := p.pairs[uid]; had {
				delete(p.pairs, uid)
				looks = append(looks, uid)
			}
		}
	}
	if !maps.Equal(p.nodes, st.Nodes) {
		p.nodes = maps.Clone(st.Nodes)
	}
	if !maps.Equal(p.bdbs, st.BDBs) {
		p.bdbs = maps.Clone(st.BDBs)
	}
	// A state without a log (one built by hand) is read whole each pass.
	p.pos, p.valid = pos, logged
	slices.Sort(left)
	slices.Sort(looks)
	return left, slices.Compact(looks), incremental
}
