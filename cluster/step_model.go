package cluster

import (
	"context"
	"errors"
	"fmt"

	"cnm/fsm"
)

// The steps below need no work outside the state, bar waiting for
// persistence: their commit is all they do, or the plan's verdict.

var waitPersistenceRunner = runner{
	run: (*Executor).waitPersistence,
	describe: func(st fsm.Step) string {
		return fmt.Sprintf("wait for shard %s to persist on node %d", st.Shard, st.To)
	},
}

var rebindRunner = runner{
	run: func(_ *Executor, _ context.Context, _ *turn, st fsm.Step) (string, error) {
		return fmt.Sprintf("endpoint %s rebound to node %d", st.Endpoint, st.To), nil
	},
	describe: func(st fsm.Step) string {
		return fmt.Sprintf("rebind endpoint %s to node %d", st.Endpoint, st.To)
	},
	committed: (*Executor).waitEndpoint,
}

// EndpointWaiter is an Agents that can wait for an endpoint's proxy.
type EndpointWaiter interface {
	WaitEndpoint(ctx context.Context, addr, uid string) error
}

// waitEndpoint lets the rebound endpoint's new node start its proxy
// before the action goes on, so that an action ends with the endpoint
// serving at the address GET /v1/bdbs shows. Best effort: a node slow to
// start it delays the action by a few seconds at most.
func (e *Executor) waitEndpoint(ctx context.Context, st fsm.Step) {
	w, ok := e.Agents.(EndpointWaiter)
	addr := e.apiAddr(st.To)
	if !ok || addr == "" {
		return
	}
	if err := w.WaitEndpoint(ctx, addr, st.Endpoint); err != nil {
		e.Log.Debug("rebound endpoint's proxy not confirmed", "endpoint", st.Endpoint, "node", st.To, "error", err)
	}
}

var snapshotRunner = runner{run: modelOnly, describe: func(st fsm.Step) string { return "record snapshot " + st.Snapshot }}

var deleteSnapshotRunner = runner{run: modelOnly, describe: func(st fsm.Step) string { return "delete snapshot " + st.Snapshot }}

var maintenanceRunner = runner{run: modelOnly, describe: func(fsm.Step) string { return "stop accepting shards" }}

var endMaintenanceRunner = runner{run: modelOnly, describe: func(fsm.Step) string { return "accept shards again" }}

// waitPersistence waits until the shard's copy on its new node has
// written its persistence files, so that removing the old node loses no
// data.
func (e *Executor) waitPersistence(ctx context.Context, t *turn, st fsm.Step) (string, error) {
	err := e.retry(ctx, &t.a, fmt.Sprintf("persistence of shard %s on node %d", st.Shard, st.To), func(ctx context.Context) error {
		info, err := e.info(ctx, e.apiAddr(st.To), st.Shard)
		if err != nil {
			return err
		}
		if !info.Persisted {
			return fmt.Errorf("shard %s has not persisted yet", st.Shard)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("shard %s persisted on node %d", st.Shard, st.To), nil
}

// errFailStep: the plan itself ends the action as failed here (fsm.StepFail),
// with the step's code and message.
var errFailStep = errors.New("the plan fails the action at this step")

var failRunner = runner{
	run: func(*Executor, context.Context, *turn, fsm.Step) (string, error) {
		return "", errFailStep
	},
	describe: func(st fsm.Step) string { return st.Kind },
}
