package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"cnm/fsm"
)

// pairRef is where the state puts a replica's master.
type pairRef struct {
	uid     string
	node    int
	apiAddr string
}

// masterPair is the master of replica sh by the state, if it has one.
func masterPair(st *fsm.State, sh *fsm.Shard) (pairRef, bool) {
	if sh.Role == fsm.RoleMaster {
		return pairRef{}, false
	}
	p := st.PairOf(sh)
	if p == nil || p.Role != fsm.RoleMaster {
		return pairRef{}, false
	}
	n, ok := st.Nodes[p.NodeUID]
	if !ok {
		return pairRef{}, false
	}
	return pairRef{uid: p.UID, node: p.NodeUID, apiAddr: n.APIAddr}, true
}

// resolveShard is host:port of the shard p (a master, mostly): the host of its node's API
// address, where shard processes bind, and the port its agent reports.
func (a *Agent) resolveShard(ctx context.Context, p pairRef) (string, error) {
	var info Info
	var err error
	if p.node == a.cfg.NodeUID {
		info, err = a.cfg.Backend.Info(p.uid)
	} else {
		info, err = a.client.Info(ctx, p.apiAddr, p.uid)
	}
	if err != nil {
		return "", fmt.Errorf("shard %s on node %d: %w", p.uid, p.node, err)
	}
	host, _, err := net.SplitHostPort(p.apiAddr)
	if err != nil || info.Port == 0 {
		return "", fmt.Errorf("shard %s on node %d at %q listens on no known port", p.uid, p.node, p.apiAddr)
	}
	return net.JoinHostPort(host, strconv.Itoa(info.Port)), nil
}

// replicaAddr is where the replica of the master shard uid listens, by
// the state and the replica's agent; "" when the state makes uid no
// master with a replica. A node that has not caught up does not answer:
// its state may name a replica that moved.
func (a *Agent) replicaAddr(ctx context.Context, uid string) (string, error) {
	if a.cfg.CaughtUp != nil && !a.cfg.CaughtUp() {
		return "", errors.New("this node has not caught up with the cluster's state")
	}
	var ref pairRef
	var ok bool
	a.cfg.FSM.Read(func(st *fsm.State, _ uint64) {
		sh := st.Shards[uid]
		if sh == nil || sh.Role != fsm.RoleMaster {
			return
		}
		if p := st.PairOf(sh); p != nil && p.Role != fsm.RoleMaster {
			if n, found := st.Nodes[p.NodeUID]; found {
				ref, ok = pairRef{uid: p.UID, node: p.NodeUID, apiAddr: n.APIAddr}, true
			}
		}
	})
	if !ok {
		return "", nil
	}
	addr, err := a.resolveShard(ctx, ref)
	if err == nil {
		a.replicas.Store(uid, replicaSeen{ref: ref, addr: addr})
		return addr, nil
	}
	// Its agent is down (its cnmd killed, say), not necessarily its
	// process, which outlives cnmd: asked directly, it says for itself.
	if seen, found := a.replicas.Load(uid); found && seen.(replicaSeen).ref == ref {
		return seen.(replicaSeen).addr, nil
	}
	return "", err
}

// findReplicas notes where the replica of each local master listens,
// while its agent answers, for a restart of the master's process at a
// moment it does not.
func (a *Agent) findReplicas(ctx context.Context, v view) {
	for uid, s := range v.want {
		if s.Role == fsm.RoleMaster {
			if _, err := a.replicaAddr(ctx, uid); err != nil {
				a.log.Debug("master's replica not found", "shard_uid", uid, "error", err)
			}
		}
	}
}

// replicaSeen is where a master's replica was last found.
type replicaSeen struct {
	ref  pairRef
	addr string
}

// resolveMasters fills in the master address of every replica in want
// whose master the state names; one not resolved now is tried again at
// the next reconcile.
func (a *Agent) resolveMasters(ctx context.Context, v *view) {
	for uid, p := range v.pairs {
		s, ok := v.want[uid]
		if !ok {
			continue
		}
		master, err := a.resolveShard(ctx, p)
		if err != nil {
			a.log.Debug("replica's master not resolved", "shard_uid", uid, "error", err)
			continue
		}
		s.Master = master
		v.want[uid] = s
	}
}

// fixRole makes the local copy's role the state's. A backend whose
// replicas follow a process is also pointed at the replica's current
// master, so that a master that moved or failed over is followed where it
// is now.
func (a *Agent) fixRole(ctx context.Context, s Spec, info Info) error {
	f, follows := a.cfg.Backend.(Follower)
	if !follows || s.Role == fsm.RoleMaster {
		if info.Role == s.Role {
			return nil
		}
		return a.cfg.Backend.SwitchRole(ctx, s.UID, s.Role)
	}
	if s.Master == "" || (info.Role == s.Role && info.Master == s.Master) {
		return nil
	}
	return f.Follow(ctx, s.UID, s.Master)
}

// withFacts completes a copy's spec from the state for a backend whose
// replicas follow a process: the shard's memory, and where a replica's
// master listens.
func (a *Agent) withFacts(ctx context.Context, s Spec) Spec {
	if _, follows := a.cfg.Backend.(Follower); !follows {
		return s
	}
	var pair pairRef
	var paired bool
	a.cfg.FSM.Read(func(st *fsm.State, _ uint64) {
		if sh, ok := st.Shards[s.UID]; ok {
			if s.Memory == 0 {
				s.Memory = sh.Memory
			}
			pair, paired = masterPair(st, sh)
		}
	})
	if paired && s.Role != fsm.RoleMaster && s.Master == "" {
		if master, err := a.resolveShard(ctx, pair); err == nil {
			s.Master = master
		}
	}
	return s
}

// fixPersistence writes the persistence file a database with persistence
// needs, after applying to a backend with settings (Configurer) the
// memory and persistence the state says now: a database changed since
// the shard started.
func (a *Agent) fixPersistence(ctx context.Context, s Spec, info Info) error {
	if c, ok := a.cfg.Backend.(Configurer); ok {
		if (s.Memory > 0 && info.Memory != s.Memory) || (info.Persistence != "" && info.Persistence != s.Persistence) {
			if err := c.Configure(ctx, s.UID, s.Memory, s.Persistence); err != nil {
				return err
			}
			info.Persisted = false
		}
	}
	if s.Persistence == fsm.PersistenceDisabled || info.Persisted {
		return nil
	}
	return a.cfg.Backend.Persist(ctx, s.UID, s.Persistence)
}
