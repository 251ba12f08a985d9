package cluster

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Placement policy values (SPEC §5, policy default_shards_placement).
const (
	PlacementDense  = "dense"
	PlacementSparse = "sparse"
)

// Candidate is a node as placement sees it: what it can hold and what it
// holds already.
type Candidate struct {
	UID  int
	Rack string
	// Eligible is false for nodes that are down, do not accept servers, are
	// in maintenance, or are being removed: they never receive shards.
	Eligible   bool
	MaxShards  int
	Memory     int64
	UsedShards int
	UsedMemory int64
}

// Need is one shard to place.
type Need struct {
	// ID names the shard in errors and in the plan.
	ID     string
	Memory int64
	// Pair is the index in the request of this shard's master or replica,
	// when both are placed by the same plan; -1 otherwise.
	Pair int
	// PairNode is the node already hosting this shard's pair (0 if none or
	// if Pair is set). A shard never shares a node, nor with rack awareness
	// a rack, with its pair.
	PairNode int
	// Avoid lists further nodes the shard must not go to (the node it is
	// moving away from).
	Avoid []int
}

// Policy is the part of the cluster policy that placement follows.
type Policy struct {
	Dense       bool // fullest node first; otherwise emptiest first
	RackAware   bool
	Overbooking bool // memory may be overcommitted; shard counts still hold
}

// ErrNoHome is returned (wrapped in *NoHomeError) when a shard fits nowhere.
var ErrNoHome = errors.New("no node can host the shard")

// NoHomeError names the first shard of a request that has no home.
type NoHomeError struct {
	Shard  string
	Memory int64
	Reason string
}

func (e *NoHomeError) Error() string {
	return fmt.Sprintf("shard %s of %d bytes has no home: %s", e.Shard, e.Memory, e.Reason)
}

func (e *NoHomeError) Unwrap() error { return ErrNoHome }

// maxSteps bounds one search: past it the planner gives up on that search.
// With the pruning below, real requests stay far from it.
const maxSteps = 200_000

// Plan assigns every need to a node, obeying every placement rule, and
// returns the node uid for each need (same order). It is a pure function of
// its inputs. Each choice is accounted for before the next one, and when a
// greedy choice leads to a dead end the planner backtracks, so that it finds
// a plan whenever one exists (within maxSteps).
//
// When there is none, the error names the first shard in request order that
// has no home: the need k such that needs[:k] can be placed and needs[:k+1]
// cannot, with the reasons every node refuses it after the others are placed.
func Plan(nodes []Candidate, needs []Need, pol Policy) ([]int, error) {
	p := newPlanner(nodes, needs, pol)
	if p.solve(len(needs)) {
		return p.result(len(needs)), nil
	}
	// Feasibility of a prefix is monotone: find the longest feasible one.
	lo, hi := 0, len(needs) // needs[:lo] fits, needs[:hi] does not
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if p.solve(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	p.solve(lo) // leaves the prefix placed, to explain need lo against it
	nd := needs[lo]
	return nil, &NoHomeError{Shard: nd.ID, Memory: nd.Memory, Reason: p.reason(lo)}
}

type planner struct {
	base   []Candidate
	nodes  []Candidate
	needs  []Need
	pair   []int // index of each need's pair in needs, -1 if none (symmetric)
	pol    Policy
	assign []int // node index per need, -1 unassigned
	byUID  map[int]int
	steps  int
	limit  int // needs[:limit] are being placed

	// bounds: what the eligible nodes can still take, and what needs[i:]
	// want in total.
	freeSlots int
	freeMem   int64
	sufCount  []int
	sufMem    []int64
	// pinned nodes take part in some need's Avoid or PairNode rule and so
	// are never interchangeable with another node.
	pinned map[int]bool
}

func newPlanner(nodes []Candidate, needs []Need, pol Policy) *planner {
	p := &planner{base: nodes, needs: needs, pol: pol, byUID: make(map[int]int, len(nodes)),
		pair: make([]int, len(needs)), assign: make([]int, len(needs)), pinned: map[int]bool{}}
	for i, n := range nodes {
		p.byUID[n.UID] = i
	}
	for i := range p.pair {
		p.pair[i] = -1
	}
	for i, nd := range needs {
		if nd.Pair >= 0 && nd.Pair < len(needs) && nd.Pair != i {
			p.pair[i], p.pair[nd.Pair] = nd.Pair, i
		}
		for _, a := range nd.Avoid {
			p.pinned[a] = true
		}
		if nd.PairNode != 0 {
			p.pinned[nd.PairNode] = true
		}
	}
	return p
}

// solve searches a placement of needs[:limit] from scratch and leaves it in
// p.assign and p.nodes when it finds one.
func (p *planner) solve(limit int) bool {
	p.limit, p.steps = limit, 0
	p.nodes = append(p.nodes[:0], p.base...)
	for i := range p.assign {
		p.assign[i] = -1
	}
	p.freeSlots, p.freeMem = 0, 0
	for _, c := range p.nodes {
		if c.Eligible {
			p.freeSlots += max(0, c.MaxShards-c.UsedShards)
			p.freeMem += max(0, c.Memory-c.UsedMemory)
		}
	}
	p.sufCount = make([]int, limit+1)
	p.sufMem = make([]int64, limit+1)
	for i := limit - 1; i >= 0; i-- {
		p.sufCount[i] = p.sufCount[i+1] + 1
		p.sufMem[i] = p.sufMem[i+1] + p.needs[i].Memory
	}
	return p.search(0)
}

func (p *planner) result(limit int) []int {
	out := make([]int, limit)
	for i := range out {
		out[i] = p.nodes[p.assign[i]].UID
	}
	return out
}

// search places needs[i:limit] depth first: the best node for each need
// first (so the usual path is one greedy scan per need), and other nodes
// when the needs after it cannot be placed. Alternatives that only mirror a
// node already tried (same rack, capacity and usage, named by no rule) are
// skipped, and a branch whose remaining needs exceed the free slots or
// memory is cut at once.
func (p *planner) search(i int) bool {
	if i == p.limit {
		return true
	}
	if p.freeSlots < p.sufCount[i] || (!p.pol.Overbooking && p.freeMem < p.sufMem[i]) {
		return false
	}
	var tried []int
	for {
		n := p.next(i, tried)
		if n < 0 || p.steps >= maxSteps {
			return false
		}
		p.steps++
		p.place(i, n)
		if p.search(i + 1) {
			return true
		}
		p.unplace(i, n)
		tried = append(tried, n)
	}
}

// next returns the best node for need i that is neither tried nor a mirror
// of a tried node.
func (p *planner) next(i int, tried []int) int {
	best := -1
	for n := range p.nodes {
		if !p.fits(i, n) || slices.Contains(tried, n) || p.mirrorsAny(n, tried) {
			continue
		}
		if best < 0 || p.better(n, best) {
			best = n
		}
	}
	return best
}

func (p *planner) mirrorsAny(n int, tried []int) bool {
	for _, t := range tried {
		if p.mirror(n, t) {
			return true
		}
	}
	return false
}

// mirror reports whether nodes a and b are interchangeable for the rest of
// the search: swapping them in any plan gives a plan.
func (p *planner) mirror(a, b int) bool {
	x, y := &p.nodes[a], &p.nodes[b]
	if x.Rack != y.Rack || x.MaxShards != y.MaxShards || x.Memory != y.Memory ||
		x.UsedShards != y.UsedShards || x.UsedMemory != y.UsedMemory ||
		p.pinned[x.UID] || p.pinned[y.UID] {
		return false
	}
	// A node hosting a need of this plan whose pair is still unplaced
	// constrains that pair; it mirrors nothing.
	for j := 0; j < p.limit; j++ {
		if k := p.pair[j]; k >= 0 && p.assign[k] < 0 && (p.assign[j] == a || p.assign[j] == b) {
			return false
		}
	}
	return true
}

func (p *planner) place(i, n int) {
	c := &p.nodes[n]
	p.assign[i] = n
	p.freeSlots--
	p.freeMem -= min(p.needs[i].Memory, max(0, c.Memory-c.UsedMemory))
	c.UsedShards++
	c.UsedMemory += p.needs[i].Memory
}

func (p *planner) unplace(i, n int) {
	c := &p.nodes[n]
	p.assign[i] = -1
	c.UsedShards--
	c.UsedMemory -= p.needs[i].Memory
	p.freeSlots++
	p.freeMem += min(p.needs[i].Memory, max(0, c.Memory-c.UsedMemory))
}

// pairNode returns the node index hosting need i's pair, or -1.
func (p *planner) pairNode(i int) int {
	if k := p.pair[i]; k >= 0 {
		return p.assign[k]
	}
	if nd := p.needs[i]; nd.PairNode != 0 {
		if idx, ok := p.byUID[nd.PairNode]; ok {
			return idx
		}
	}
	return -1
}

// refusal is the first rule by which node n refuses need i ("" if none).
func (p *planner) refusal(i, n int) string {
	c := &p.nodes[n]
	nd := &p.needs[i]
	switch {
	case !c.Eligible:
		return "ineligible"
	case c.UsedShards >= c.MaxShards:
		return "full"
	case !p.pol.Overbooking && nd.Memory > c.Memory-c.UsedMemory:
		return "memory"
	case slices.Contains(nd.Avoid, c.UID):
		return "avoid"
	}
	if pn := p.pairNode(i); pn >= 0 {
		if pn == n {
			return "pair"
		}
		if p.pol.RackAware && c.Rack != "" && c.Rack == p.nodes[pn].Rack {
			return "rack"
		}
	}
	return ""
}

func (p *planner) fits(i, n int) bool { return p.refusal(i, n) == "" }

// better orders nodes: emptiest (sparse) or fullest (dense) by shard count,
// then memory, then uid, so plans are deterministic.
func (p *planner) better(a, b int) bool {
	x, y := &p.nodes[a], &p.nodes[b]
	if x.UsedShards != y.UsedShards {
		return (x.UsedShards < y.UsedShards) != p.pol.Dense
	}
	if x.UsedMemory != y.UsedMemory {
		return (x.UsedMemory < y.UsedMemory) != p.pol.Dense
	}
	return x.UID < y.UID
}

// reason says why every node refuses need i in the current partial plan,
// naming the nodes by uid under the first rule that refuses each.
func (p *planner) reason(i int) string {
	by := map[string][]int{}
	for n := range p.nodes {
		r := p.refusal(i, n)
		by[r] = append(by[r], p.nodes[n].UID)
	}
	if len(p.nodes) == len(by["ineligible"]) {
		return "no node accepts shards (every node is down, in maintenance, being removed, or refuses servers)"
	}
	if len(by[""]) > 0 {
		// Needs placed before it leave it room only in combinations that
		// fail later; say so rather than guess.
		return "no placement satisfies every rule together with the shards before it"
	}
	var parts []string
	add := func(key, one, many string) {
		uids := by[key]
		if len(uids) == 0 {
			return
		}
		slices.Sort(uids)
		names := make([]string, len(uids))
		for k, u := range uids {
			names[k] = strconv.Itoa(u)
		}
		if len(uids) == 1 {
			parts = append(parts, "node "+names[0]+" "+one)
			return
		}
		parts = append(parts, "nodes "+strings.Join(names, ", ")+" "+many)
	}
	mem := fmt.Sprintf("%d bytes of free memory", p.needs[i].Memory)
	add("memory", "has less than "+mem, "have less than "+mem)
	add("full", "is at its max_redis_servers", "are at their max_redis_servers")
	add("pair", "already hosts its master or replica", "already host its master or replica")
	add("rack", "is on the rack of its master or replica", "are on the rack of its master or replica")
	add("avoid", "is being emptied", "are being emptied")
	add("ineligible", "does not accept shards", "do not accept shards")
	return strings.Join(parts, "; ")
}
