package cluster

import (
	"context"
	"fmt"

	"cnm/agent"
	"cnm/fsm"
)

// failoverRunner makes a shard's replica its master once the replica is in
// sync, switching the roles on the agents before the commit records them;
// a failover onto a node that another action empties is refused.
var failoverRunner = runner{
	run:      (*Executor).failover,
	takeBack: (*Executor).unpromote,
	describe: func(st fsm.Step) string {
		return fmt.Sprintf("fail shard %s over to its replica", st.Shard)
	},
	conflict: func(r *actionRun, ctx context.Context, a *fsm.Action, st fsm.Step, err error) bool {
		if r.finish(ctx, fsm.StatusFailed, fsm.ErrInsufficientResources.Code, fmt.Sprintf("step %d of %d (%s): %v", a.Done+1, len(a.Steps), describe(st), err)) {
			r.e.unpromote(ctx, st)
		}
		return false
	},
	foresee: func(v *fsm.State, sh *fsm.Shard, _ fsm.Step) {
		if p := v.PairOf(sh); p != nil && sh.Role == fsm.RoleMaster {
			sh.Role, p.Role = fsm.RoleSlave, fsm.RoleMaster
		}
	},
	narrow: true,
}

func (e *Executor) failover(ctx context.Context, t *turn, st fsm.Step) (string, error) {
	a := &t.a
	var pairNode, oldNode int
	var pairUID string
	var master bool
	if sh, ok := t.view.Shards[st.Shard]; ok {
		if p := t.view.PairOf(sh); p != nil {
			pairNode, pairUID = p.NodeUID, p.UID
			oldNode, master = sh.NodeUID, sh.Role == fsm.RoleMaster
		}
	}
	if pairUID == "" {
		return fmt.Sprintf("shard %s is gone; nothing to fail over", st.Shard), nil
	}
	if pairNode != a.NodeUID && t.view.Emptying(pairNode) {
		// Another action is emptying the replica's node since this action
		// was planned: never fail a master over onto it.
		return "", fsm.Errorf(fsm.ErrInsufficientResources, "shard %s cannot fail over: its replica %s is on node %d, which another action is emptying", st.Shard, pairUID, pairNode)
	}
	if master {
		// The replica must be there and in sync before it takes over:
		// the promotion checks, in the same call.
		if err := e.promote(ctx, a, st.Shard, oldNode, pairUID, pairNode); err != nil {
			return "", err
		}
		return fmt.Sprintf("shard %s failed over to its replica %s on node %d", st.Shard, pairUID, pairNode), nil
	}
	err := e.retry(ctx, a, fmt.Sprintf("replica %s on node %d", pairUID, pairNode), func(ctx context.Context) error {
		info, err := e.info(ctx, e.apiAddr(pairNode), pairUID)
		if err != nil {
			return err
		}
		if !info.InSync {
			return fmt.Errorf("replica %s is not in sync", pairUID)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("shard %s failed over to its replica %s on node %d", st.Shard, pairUID, pairNode), nil
}

// promote switches the roles before the step commits: the replica's agent
// holds the old master's writes back until the replica has them all, then
// makes it the master and the old one its replica, so that no write the
// old master acknowledged is lost. The agents' reconciles leave the two
// alone while the step is in flight, and find them as the commit says.
func (e *Executor) promote(ctx context.Context, a *fsm.Action, old string, oldNode int, uid string, node int) error {
	return e.retry(ctx, a, fmt.Sprintf("promote replica %s on node %d", uid, node), func(ctx context.Context) error {
		addr := e.apiAddr(node)
		if addr == "" {
			return fsm.Errorf(fsm.ErrInternal, "node %d left the cluster", node)
		}
		// An old node that left, or does not answer, is no reason to wait:
		// the agent then promotes without pausing it (nothing reaches it).
		// The old master is looked up again at each try: another action
		// may have moved it meanwhile.
		e.FSM.Read(func(s *fsm.State, _ uint64) {
			if sh := s.Shards[old]; sh != nil {
				oldNode = sh.NodeUID
			}
		})
		req := agent.PromoteRequest{OldNode: e.apiAddr(oldNode), OldNodeUID: oldNode, OldShard: old,
			Op: agent.Op{TaskID: a.TaskID, Step: a.Done, Term: a.Term}, InSync: true}
		sctx, cancel := e.small(ctx)
		defer cancel()
		if _, err := e.Agents.Promote(sctx, addr, uid, req); err != nil {
			return fmt.Errorf("node %d: %w", node, err)
		}
		return nil
	})
}

// unpromote runs when a failover step stopped without its commit: a
// promotion whose answer was lost may have switched the roles all the
// same. The old master, which the state still names, is switched back the
// same lossless way, rather than left for the two agents' reconciles to
// flip independently; one that is master still finds nothing to do. Best
// effort: the reconciles restore the state's roles in any case.
func (e *Executor) unpromote(ctx context.Context, st fsm.Step) {
	var old, pair fsm.Shard
	var ok bool
	e.FSM.Read(func(s *fsm.State, _ uint64) {
		if sh := s.Shards[st.Shard]; sh != nil && sh.Role == fsm.RoleMaster {
			if p := s.PairOf(sh); p != nil {
				old, pair, ok = *sh, *p, true
			}
		}
	})
	addr := e.apiAddr(old.NodeUID)
	if !ok || addr == "" {
		return
	}
	ctx, cancel := e.small(ctx)
	defer cancel()
	req := agent.PromoteRequest{OldNode: e.apiAddr(pair.NodeUID), OldNodeUID: pair.NodeUID, OldShard: pair.UID}
	if _, err := e.Agents.Promote(ctx, addr, old.UID, req); err != nil {
		e.Log.Warn("switch a failed over shard back", "shard", old.UID, "node", old.NodeUID, "error", err)
	}
}
