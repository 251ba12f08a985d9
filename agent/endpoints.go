package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cnm/agent/proxy"
	"cnm/fsm"
)

// Timings of the endpoint manager. A table that could not be fully
// resolved is retried soon rather than at the next resync: until then
// clients of the unresolved slots reach an old master or none.
const (
	endpointRetry   = 250 * time.Millisecond
	resolveTimeout  = 2 * time.Second
	endpointDrain   = 5 * time.Second
	endpointProblem = "endpoint routing table not fully resolved; unresolved slots keep their last known master"
)

// EndpointInfo is a running endpoint proxy: where it listens and the
// routing table it uses now.
type EndpointInfo struct {
	Addr   string
	Shards []proxy.Shard
}

// endpointManager holds the proxies of the endpoints the state binds to
// this node. Only the endpoint loop changes running; mu is for readers.
type endpointManager struct {
	mu      sync.Mutex
	running map[string]*endpointProxy
	// failed is why each endpoint last failed to start, so that a port
	// still held (say by the endpoint's previous owner on this host) is
	// logged once, not at every retry.
	failed map[string]string
}

type endpointProxy struct {
	p    *proxy.Proxy
	addr string
	// last is the last master resolved for each slot range, so that a
	// master whose node does not answer keeps its clients served where it
	// was rather than losing its slots from the table.
	last map[string]proxy.Shard
	// problem names the masters last logged as unresolved, so that the
	// same trouble is logged once, not at every pass.
	problem string
}

// endpointWant is an endpoint the state binds to this node.
type endpointWant struct {
	uid     string
	bdb     int
	addr    string
	masters []masterSlots
}

type masterSlots struct {
	ref   pairRef
	slots string
}

// Endpoints returns the endpoint proxies running on this node, by
// endpoint uid.
func (a *Agent) Endpoints() map[string]EndpointInfo {
	a.eps.mu.Lock()
	defer a.eps.mu.Unlock()
	out := make(map[string]EndpointInfo, len(a.eps.running))
	for uid, ep := range a.eps.running {
		out[uid] = EndpointInfo{Addr: ep.p.Addr().String(), Shards: ep.p.Shards()}
	}
	return out
}

// startEndpoints runs the endpoint loop until ctx ends; the returned
// channel is closed once every proxy it ran has stopped. It has its own
// loop rather than a place in Reconcile so that a peer slow to answer Info
// delays no shard reconcile, and a failed shard reconcile no routing.
func (a *Agent) startEndpoints(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { a.stopEndpoints(a.eps.take(func(string) bool { return true })) }()
		t := time.NewTicker(a.cfg.Resync)
		defer t.Stop()
		for {
			changed := a.cfg.FSM.Changed()
			var retry <-chan time.Time
			if a.cfg.CaughtUp == nil || a.cfg.CaughtUp() {
				if !a.reconcileEndpoints(ctx) {
					retry = time.After(endpointRetry)
				}
			} else {
				// An old snapshot may bind endpoints here that moved away.
				retry = time.After(endpointRetry)
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-t.C:
			case <-retry:
			}
		}
	}()
	return done
}

// reconcileEndpoints makes the running proxies those the state binds to
// this node, with tables of their databases' masters; it reports whether
// everything was resolved and started.
func (a *Agent) reconcileEndpoints(ctx context.Context) (complete bool) {
	want, err := a.wantedEndpoints()
	if err != nil {
		a.log.Warn("endpoints", "error", err)
		return false
	}
	if a.eps.failed == nil {
		a.eps.failed = map[string]string{}
	}
	for uid := range a.eps.failed {
		if _, ok := want[uid]; !ok {
			delete(a.eps.failed, uid)
		}
	}
	a.stopEndpoints(a.eps.take(func(uid string) bool {
		w, ok := want[uid]
		return !ok || w.addr != a.eps.running[uid].addr
	}))
	complete = true
	for _, uid := range slices.Sorted(maps.Keys(want)) {
		if !a.ensureEndpoint(ctx, want[uid]) {
			complete = false
		}
	}
	return complete
}

// ensureEndpoint starts w's proxy or updates its table.
func (a *Agent) ensureEndpoint(ctx context.Context, w endpointWant) bool {
	log := a.log.With("endpoint_uid", w.uid, "bdb_uid", w.bdb, "addr", w.addr)
	a.eps.mu.Lock()
	ep := a.eps.running[w.uid]
	a.eps.mu.Unlock()
	var last map[string]proxy.Shard
	if ep != nil {
		last = ep.last
	}
	table, good, problems := a.endpointTable(ctx, w, last)
	if ep == nil {
		p, err := proxy.Listen(ctx, proxy.Config{Addr: w.addr, Shards: table,
			Logger: a.cfg.Logger.With("component", "proxy", "endpoint_uid", w.uid)})
		if err != nil {
			if a.eps.failed[w.uid] != err.Error() {
				log.Warn("endpoint proxy not started", "error", err)
				a.eps.failed[w.uid] = err.Error()
			}
			return false
		}
		delete(a.eps.failed, w.uid)
		log.Info("endpoint proxy started", "shards", len(table))
		ep = &endpointProxy{p: p, addr: w.addr}
		a.eps.put(w.uid, ep)
	} else if !sameTable(ep.p.Shards(), table) {
		if err := ep.p.SetShards(table); err != nil {
			log.Warn("endpoint routing table refused", "error", err)
			return false
		}
		log.Info("endpoint routing table changed", "shards", len(table))
	}
	ep.last = good
	// Keyed by the masters, not the error texts, which differ at every
	// try (source ports, timings) although nothing changed.
	if key := strings.Join(slices.Sorted(maps.Keys(problems)), ","); key != ep.problem {
		if key != "" {
			log.Warn(endpointProblem, "masters", key, "error", errors.Join(slices.Collect(maps.Values(problems))...))
		} else {
			log.Info("endpoint routing table resolved")
		}
		ep.problem = key
	}
	return len(problems) == 0
}

// endpointTable builds w's routing table: each master's slots at the
// host of its node's API address and the port its agent reports. A
// master not resolved now keeps its entry from last.
func (a *Agent) endpointTable(ctx context.Context, w endpointWant, last map[string]proxy.Shard) (table []proxy.Shard, good map[string]proxy.Shard, problems map[string]error) {
	good, problems = map[string]proxy.Shard{}, map[string]error{}
	for _, m := range w.masters {
		slots, err := proxy.ParseSlotRanges(m.slots)
		if err != nil {
			problems[m.ref.uid] = fmt.Errorf("master %s: %w", m.ref.uid, err)
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
		addr, err := a.resolveShard(rctx, m.ref)
		cancel()
		if err != nil {
			problems[m.ref.uid] = err
			if prev, ok := last[m.slots]; ok {
				good[m.slots] = prev
				table = append(table, prev)
			}
			continue
		}
		sh := proxy.Shard{ID: m.ref.uid, Master: addr, Slots: slots}
		good[m.slots] = sh
		table = append(table, sh)
	}
	return table, good, problems
}

// wantedEndpoints reads the endpoints the state binds to this node and
// the masters of their databases.
func (a *Agent) wantedEndpoints() (map[string]endpointWant, error) {
	want := map[string]endpointWant{}
	host, err := hostOf(a.cfg.APIAddr)
	a.cfg.FSM.Read(func(st *fsm.State, _ uint64) {
		if n, ok := st.Nodes[a.cfg.NodeUID]; ok && a.cfg.APIAddr == "" {
			host, err = hostOf(n.APIAddr)
		}
		if err != nil {
			return
		}
		for _, bdb := range st.BDBUIDs() {
			b := st.BDBs[bdb]
			var masters []masterSlots
			for _, sh := range st.ShardsOf(bdb) {
				n, ok := st.Nodes[sh.NodeUID]
				if sh.Role != fsm.RoleMaster || !ok {
					continue
				}
				masters = append(masters, masterSlots{ref: pairRef{uid: sh.UID, node: sh.NodeUID, apiAddr: n.APIAddr}, slots: sh.AssignedSlots})
			}
			for _, e := range b.Endpoints {
				if e.NodeUID == a.cfg.NodeUID {
					want[e.UID] = endpointWant{uid: e.UID, bdb: bdb, masters: masters,
						addr: net.JoinHostPort(host, strconv.Itoa(e.Port))}
				}
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("this node's endpoint host: %w", err)
	}
	return want, nil
}

func hostOf(apiAddr string) (string, error) {
	if apiAddr == "" {
		return "", errors.New("no API address known")
	}
	host, _, err := net.SplitHostPort(apiAddr)
	if err != nil {
		return "", fmt.Errorf("API address %q: %w", apiAddr, err)
	}
	return host, nil
}

func (m *endpointManager) put(uid string, ep *endpointProxy) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running == nil {
		m.running = map[string]*endpointProxy{}
	}
	m.running[uid] = ep
}

// take removes and returns the running proxies drop selects; drop is
// called with mu held.
func (m *endpointManager) take(drop func(uid string) bool) map[string]*endpointProxy {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]*endpointProxy{}
	for uid, ep := range m.running {
		if drop(uid) {
			out[uid] = ep
			delete(m.running, uid)
		}
	}
	return out
}

// stopEndpoints shuts proxies down, letting held commands finish first.
func (a *Agent) stopEndpoints(eps map[string]*endpointProxy) {
	for uid, ep := range eps {
		ctx, cancel := context.WithTimeout(context.Background(), endpointDrain)
		if err := ep.p.Shutdown(ctx); err != nil {
			a.log.Warn("endpoint proxy stop", "endpoint_uid", uid, "error", err)
		}
		cancel()
		a.log.Info("endpoint proxy stopped", "endpoint_uid", uid, "addr", ep.addr)
	}
}

func sameTable(x, y []proxy.Shard) bool {
	return slices.EqualFunc(x, y, func(a, b proxy.Shard) bool {
		return a.ID == b.ID && a.Master == b.Master && slices.Equal(a.Slots, b.Slots)
	})
}
