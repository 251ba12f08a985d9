package cluster

import (
	"context"

	"cnm/fsm"
)

// runner is all the executor knows of one step kind (fsm.StepKinds), so
// that a kind's work, its wording and its special cases are one unit and
// the run loop holds no switch on kinds that could miss one.
type runner struct {
	// run does the work the step needs before its effect can be committed,
	// and returns the event message. t is the turn's view of the state.
	run func(e *Executor, ctx context.Context, t *turn, st fsm.Step) (string, error)
	// describe names the step in messages about it.
	describe func(st fsm.Step) string
	// takeBack undoes what run may have left behind once the step is given
	// up (the action failed, timed out or was cancelled before the commit).
	takeBack func(e *Executor, ctx context.Context, st fsm.Step)
	// committed tidies up after the step's effect is committed.
	committed func(e *Executor, ctx context.Context, st fsm.Step)
	// conflict deals with a commit refused with fsm.ErrPlacementConflict
	// (other actions changed the placement meanwhile) and reports whether
	// the run goes on; without it the action stops as for any refusal.
	conflict func(r *actionRun, ctx context.Context, a *fsm.Action, st fsm.Step, err error) bool
	// pastNoReturn reports whether the step is already half done in a way
	// that must be committed however late, so the deadline does not stop it.
	pastNoReturn func(e *Executor, st fsm.Step) bool
	// holdsCancel: a cancel does not interrupt the step's waiting, as an
	// attempt that failed to answer may have done its work.
	holdsCancel bool
	// foresee makes in v, the outlook that other actions plan against, the
	// change the pending step will make to shard sh; nil for steps that
	// change no shard's node or role.
	foresee func(v *fsm.State, sh *fsm.Shard, st fsm.Step)
	// narrow: run reads, of the turn's shard table, only the step's shard
	// and that shard's pair, so the turn copies no other (fsm.ReadViewOf).
	narrow bool
}

// runners holds a runner for every step kind fsm knows. init fills it, as
// the runners' own code looks kinds up in it.
var runners map[string]runner

func init() {
	runners = map[string]runner{
		fsm.StepMove:            moveRunner,
		fsm.StepFailover:        failoverRunner,
		fsm.StepWaitPersistence: waitPersistenceRunner,
		fsm.StepTransferLeader:  transferLeaderRunner,
		fsm.StepRemoveMember:    removeMemberRunner,
		fsm.StepRebind:          rebindRunner,
		fsm.StepSnapshot:        snapshotRunner,
		fsm.StepDeleteSnapshot:  deleteSnapshotRunner,
		fsm.StepMaintenance:     maintenanceRunner,
		fsm.StepEndMaintenance:  endMaintenanceRunner,
		fsm.StepFail:            failRunner,
	}
}

// unknownRunner runs a kind this build does not know: the commit is
// refused by the state, and the action fails instead of hanging.
var unknownRunner = runner{
	run: func(_ *Executor, _ context.Context, _ *turn, st fsm.Step) (string, error) {
		return st.Kind, nil
	},
	describe: func(st fsm.Step) string { return st.Kind },
}

func runnerOf(kind string) runner {
	if r, ok := runners[kind]; ok {
		return r
	}
	return unknownRunner
}

func describe(st fsm.Step) string { return runnerOf(st.Kind).describe(st) }

// modelOnly is the work of a step whose effect is all in the state.
func modelOnly(_ *Executor, _ context.Context, _ *turn, st fsm.Step) (string, error) {
	return describe(st), nil
}

// takeBack undoes what a given-up step left behind, if its kind leaves any.
func (e *Executor) takeBack(ctx context.Context, st fsm.Step) {
	if k := runnerOf(st.Kind); k.takeBack != nil {
		k.takeBack(e, ctx, st)
	}
}

// pastNoReturn reports whether st must be finished whatever the deadline.
func (e *Executor) pastNoReturn(st fsm.Step) bool {
	k := runnerOf(st.Kind)
	return k.pastNoReturn != nil && k.pastNoReturn(e, st)
}
