package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"cnm/agent"
	"cnm/fsm"
)

// Name implements Worker.
func (e *Executor) Name() string { return "executor" }

// errYielded: this leader handed leadership over; the next one resumes.
var errYielded = errors.New("leadership handed over")

// errCancelling: the action was cancelled while its step waited; the step
// is given up, and the action ends cancelled.
var errCancelling = errors.New("action cancelled while its step waited")

// Run starts a runner per unfinished action and waits for all of them when
// ctx ends.
func (e *Executor) Run(ctx context.Context, term uint64) {
	if e.Now == nil {
		e.Now = time.Now
	}
	running := map[string]bool{}
	done := make(chan string)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		changed := e.FSM.Changed()
		var todo, held []string
		e.FSM.Read(func(st *fsm.State, _ uint64) {
			for _, a := range st.AllActions() {
				switch {
				case running[a.TaskID]:
				case !fsm.Terminal(a.Status):
					todo = append(todo, a.TaskID)
				case a.Holds():
					held = append(held, a.TaskID)
				}
			}
		})
		for _, id := range todo {
			running[id] = true
			go func() {
				e.run(ctx, term, id)
				done <- id
			}()
		}
		for _, id := range held {
			running[id] = true
			go func() {
				e.release(ctx, term, id)
				done <- id
			}()
		}
		select {
		case <-ctx.Done():
			for len(running) > 0 {
				delete(running, <-done)
			}
			return
		case id := <-done:
			delete(running, id)
		case <-changed:
		case <-tick.C:
		}
	}
}

// release ends the hold of an ended action's step on its slots, once
// what the step left behind is taken back: its own run has taken it back
// already, or a deposed leader's may have not, and taking back again
// finds nothing to do.
func (e *Executor) release(ctx context.Context, term uint64, id string) {
	var st fsm.Step
	var ok bool
	e.FSM.Read(func(s *fsm.State, _ uint64) {
		if a := s.ActionByTask(id); a != nil && fsm.Terminal(a.Status) && a.Holds() {
			st, ok = a.Steps[a.Done], true
		}
	})
	if !ok {
		return
	}
	e.takeBack(ctx, st)
	if _, err := e.apply(ctx, &fsm.ReleaseStep{TaskID: id, Term: term}); err != nil {
		e.Log.Warn("release an ended action's step", "task_id", id, "error", err)
		// Tried again at the next change or tick.
		_ = e.pause(ctx, time.Second)
	}
}

// actionRun is one executor's run of one action for one term.
type actionRun struct {
	e    *Executor
	term uint64
	id   string
	log  *slog.Logger
	// stepStart is when the step in flight was taken up, on this process's
	// monotonic clock: the time a deposed leader spent on it is not known,
	// and a new leader only delays the action, never fails it at once.
	stepStart time.Time
}

// turn is what one pass of the run loop sees: the action and the state as
// one view, read at once, so that the decisions of a pass cannot disagree
// about a state that changed between two reads. What a step reads after
// its work began (a retried attempt, a refused commit) is read then, as it
// must see what changed while the step ran.
type turn struct {
	a    fsm.Action
	view *fsm.State
}

func (e *Executor) run(ctx context.Context, term uint64, id string) {
	r := &actionRun{e: e, term: term, id: id, log: e.Log.With("task_id", id, "term", term)}
	if _, err := e.apply(ctx, &fsm.ClaimAction{TaskID: id, Term: term, Leader: e.Raft.ID(), Time: e.Now().Unix(), TimeMS: e.Now().UnixMilli()}); err != nil {
		r.log.Debug("claim refused", "error", err)
		return
	}
	r.stepStart = time.Now()
	for ctx.Err() == nil {
		t, ok := r.read()
		if !ok || !r.next(ctx, t) {
			return
		}
	}
}

// read takes the turn's view; false when the action is over or no longer
// this term's.
func (r *actionRun) read() (*turn, bool) {
	var t *turn
	r.e.FSM.Read(func(st *fsm.State, _ uint64) {
		if p := st.ActionByTask(r.id); p != nil && !fsm.Terminal(p.Status) && p.Term == r.term {
			// A step only reads its view, and copying every shard for
			// each of thousands of steps cost more than the step; the
			// planner makes what-ifs on its own copy, and a step that
			// reads only its shard and that shard's pair copies those.
			var view *fsm.State
			switch {
			case p.Status == fsm.StatusStarting:
				view = st.View()
			case p.Done < len(p.Steps) && runnerOf(p.Steps[p.Done].Kind).narrow:
				view = st.ReadViewOf(p.Steps[p.Done].Shard)
			default:
				view = st.ReadView()
			}
			t = &turn{a: *view.ActionByTask(r.id), view: view}
		}
	})
	return t, t != nil
}

// left is what remains of the action's time budget.
func (r *actionRun) left(a *fsm.Action) time.Duration {
	return a.TimeBudget() - a.Used() - time.Since(r.stepStart)
}

// finish ends the action and reports whether that was committed. Only then
// may a stray copy be taken back: if it was not (leadership lost), the next
// leader resumes the step and uses the copy.
func (r *actionRun) finish(ctx context.Context, status, code, msg string) bool {
	e := r.e
	if _, err := e.apply(ctx, &fsm.FinishAction{TaskID: r.id, Term: r.term, Status: status, ErrorCode: code, ErrorMessage: msg, Time: e.Now().Unix(), TimeMS: e.Now().UnixMilli()}); err != nil {
		r.log.Warn("finish action", "status", status, "error", err)
		return false
	}
	r.log.Info("action finished", "status", status, "error_code", code, "error_message", msg)
	return true
}

// failure is the code and message an action fails with for err: those of
// a domain error, else fsm.ErrInternal's code and err's text.
func failure(err error) (code, msg string) {
	var fe *fsm.Error
	if errors.As(err, &fe) {
		return fe.Code, fe.Description
	}
	return fsm.ErrInternal.Code, err.Error()
}

func (r *actionRun) deadlinePassed(ctx context.Context, a *fsm.Action, why error) {
	st := a.Steps[a.Done]
	msg := fmt.Sprintf("deadline passed at step %d of %d (%s)", a.Done+1, len(a.Steps), describe(st))
	if why != nil {
		msg += ": " + why.Error()
	}
	// A copy made meanwhile is taken back once the end is committed.
	if r.finish(ctx, fsm.StatusFailed, fsm.ErrInternal.Code, msg) {
		r.e.takeBack(ctx, st)
	}
}

// next runs one pass of the loop and reports whether the loop goes on.
func (r *actionRun) next(ctx context.Context, t *turn) bool {
	a := &t.a
	switch {
	case a.Status == fsm.StatusCancelling:
		// A step whose work was done but whose commit was refused (a
		// leadership transfer, say) may leave a copy behind: once the cancel
		// is committed nobody resumes the step, so take it back.
		if r.finish(ctx, fsm.StatusCancelled, "", "") && a.Done < len(a.Steps) {
			r.e.takeBack(ctx, a.Steps[a.Done])
		}
		return false
	case a.Status == fsm.StatusStarting:
		return r.plan(ctx, t)
	case a.Done >= len(a.Steps):
		r.finish(ctx, fsm.StatusCompleted, "", "")
		return false
	case r.left(a) <= 0 && !r.e.pastNoReturn(a.Steps[a.Done]):
		r.deadlinePassed(ctx, a, nil)
		return false
	}
	return r.step(ctx, t)
}

// plan stores the steps of a starting action.
func (r *actionRun) plan(ctx context.Context, t *turn) bool {
	e := r.e
	steps, perr := PlanAction(t.view, &t.a, e.Now())
	steps = ForLeader(steps, t.a.Action, e.Raft.ID())
	if perr != nil {
		code, msg := failure(perr)
		r.finish(ctx, fsm.StatusFailed, code, msg)
		return false
	}
	if _, err := e.apply(ctx, &fsm.PlanAction{TaskID: r.id, Term: r.term, Steps: steps, Time: e.Now().Unix()}); err != nil {
		r.log.Warn("store plan", "error", err)
		return false
	}
	return true
}

// step does the work of the next step and commits it.
func (r *actionRun) step(ctx context.Context, t *turn) bool {
	a := &t.a
	st := a.Steps[a.Done]
	// Every call the step makes ends when the budget does.
	stepCtx, cancel := ctx, context.CancelFunc(func() {})
	if d := r.left(a); d > 0 {
		stepCtx, cancel = context.WithTimeout(ctx, d)
	}
	var msg string
	var err error
	begin := fsm.HoldsSlots(st.Kind) && a.Begun <= a.Done
	if begin {
		err = r.begin(stepCtx, a)
	} else {
		msg, err = runnerOf(st.Kind).run(r.e, stepCtx, t, st)
	}
	timedOut := stepCtx.Err() != nil && ctx.Err() == nil
	cancel()
	switch {
	case err == nil && ctx.Err() == nil && begin:
		// The work runs in the next turn, on the state as it is once the
		// step holds its slots: the action that held them may have moved
		// the shard or its pair meanwhile.
		return true
	case err == nil && ctx.Err() == nil:
		return r.commit(ctx, t, st, msg)
	}
	return r.stopped(ctx, a, st, err, timedOut)
}

// begin takes the slots a step switches (fsm.BeginStep) before its work
// begins, waiting while another action's step holds them: two actions
// switching one master and replica at once would each act on a state the
// other changes. A step begun already (resumed by a new leader) holds them.
func (r *actionRun) begin(ctx context.Context, a *fsm.Action) error {
	return r.e.retry(ctx, a, "wait for another action's step on the same shards", func(ctx context.Context) error {
		_, err := r.e.apply(ctx, &fsm.BeginStep{TaskID: r.id, Term: r.term, Index: a.Done})
		var fe *fsm.Error
		if errors.As(err, &fe) && errors.Is(err, fsm.ErrStepBusy) {
			// Not a domain error to fail on: the holder commits or ends.
			return errors.New(fe.Description)
		}
		return err
	})
}

// stopped ends or resumes an action whose step's work did not succeed.
func (r *actionRun) stopped(ctx context.Context, a *fsm.Action, st fsm.Step, err error, timedOut bool) bool {
	switch {
	case errors.Is(err, errFailStep):
		r.finish(ctx, fsm.StatusFailed, st.Code, st.Message)
		return false
	case errors.Is(err, errCancelling):
		// Nothing of the step was committed; what it left behind is taken
		// back, and the next turn ends the action cancelled.
		r.e.takeBack(ctx, st)
		return true
	case errors.Is(err, errYielded) || errors.Is(err, agent.ErrStaleTerm) || ctx.Err() != nil:
		// Handed over, or an agent already heard from a newer leader: this
		// executor is deposed and stops here.
		return false
	case timedOut || errors.Is(err, errDeadline):
		// Named after the step that was running, with what it waited for
		// (the node that did not answer).
		r.deadlinePassed(ctx, a, err)
		return false
	}
	code, msg := failure(err)
	if r.finish(ctx, fsm.StatusFailed, code, msg) {
		r.e.takeBack(ctx, st)
	}
	return false
}

// commit records the step's effect, or deals with the state's refusal.
func (r *actionRun) commit(ctx context.Context, t *turn, st fsm.Step, msg string) bool {
	e, a := r.e, &t.a
	elapsed := time.Since(r.stepStart)
	// The next step is begun by the same entry where its slots are free.
	if _, err := e.apply(ctx, &fsm.StepDone{TaskID: r.id, Term: r.term, Index: a.Done, Time: e.Now().Unix(), Message: msg, ElapsedMS: elapsed.Milliseconds(), BeginNext: true}); err != nil {
		return r.refused(ctx, a, st, err)
	}
	e.Metrics.stepDone(st.Kind, elapsed)
	// The next step is measured from here; what is left of this one's
	// measure below a millisecond stays with the next.
	r.stepStart = r.stepStart.Add(time.Duration(elapsed.Milliseconds()) * time.Millisecond)
	if k := runnerOf(st.Kind); k.committed != nil {
		k.committed(e, ctx, st)
	}
	return true
}

// refused deals with a commit of st that the state refused.
func (r *actionRun) refused(ctx context.Context, a *fsm.Action, st fsm.Step, err error) bool {
	if k := runnerOf(st.Kind); k.conflict != nil && errors.Is(err, fsm.ErrPlacementConflict) {
		return k.conflict(r, ctx, a, st, err)
	}
	if errors.Is(err, fsm.ErrInvalidParameter) {
		// The state refuses this step and will refuse it again: fail the
		// action rather than leave it running forever.
		r.finish(ctx, fsm.StatusFailed, fsm.ErrInternal.Code, fmt.Sprintf("step %d of %d (%s) was refused: %v", a.Done+1, len(a.Steps), describe(st), err))
		return false
	}
	r.log.Warn("commit step", "step", a.Done, "error", err)
	return false
}
