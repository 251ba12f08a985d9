package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"cnm/agent"
	"cnm/fsm"
)

// stoppedAgents is a cluster whose agents accepted the call and never
// answer (SIGSTOPped nodes): every call waits until its context ends.
type stoppedAgents struct{}

func (stoppedAgents) Copy(ctx context.Context, _ string, _ agent.Spec, _ string, _ agent.Op) (agent.Info, error) {
	<-ctx.Done()
	return agent.Info{}, ctx.Err()
}

func (stoppedAgents) Info(ctx context.Context, _, _ string) (agent.Info, error) {
	<-ctx.Done()
	return agent.Info{}, ctx.Err()
}

func (stoppedAgents) Promote(ctx context.Context, _, _ string, _ agent.PromoteRequest) (agent.Info, error) {
	<-ctx.Done()
	return agent.Info{}, ctx.Err()
}

func (stoppedAgents) Drop(ctx context.Context, _, _ string) error {
	<-ctx.Done()
	return ctx.Err()
}

// Deadlines are durations measured on the executing leader's monotonic
// clock: a leader whose wall clock is an hour off the submitter's neither
// fails an action at once nor lets it run past its budget, and a step that
// waits for a node that never answers fails when the budget ends, naming
// the step and the node.
func TestExecutor_DeadlineIsMeasuredOnTheExecutingLeadersClock(t *testing.T) {
	submitted := time.Now() // the submitting leader's clock
	cases := []struct {
		name string
		// skew is the executing leader's wall clock minus the submitter's.
		skew time.Duration
		// budget is stated as a duration, or (legacy) only as an absolute
		// deadline on the submitter's clock, as older builds did.
		budget time.Duration
		legacy bool
		agents func() Agents
		// want is the end: completed, or failed naming the step.
		want     string
		within   time.Duration
		messages []string
	}{
		{name: "executor an hour ahead, work fits in the budget", skew: time.Hour, budget: 30 * time.Second,
			agents: func() Agents { return &copyingAgents{have: map[string]bool{"node1/2": true, "node2/1": true}} },
			want:   fsm.StatusCompleted, within: 10 * time.Second},
		{name: "executor an hour ahead, an older build's absolute deadline", skew: time.Hour, budget: 30 * time.Second, legacy: true,
			agents: func() Agents { return &copyingAgents{have: map[string]bool{"node1/2": true, "node2/1": true}} },
			want:   fsm.StatusCompleted, within: 10 * time.Second},
		{name: "executor an hour behind, a node never answers", skew: -time.Hour, budget: 1500 * time.Millisecond,
			agents: func() Agents { return stoppedAgents{} },
			want:   fsm.StatusFailed, within: 1500*time.Millisecond + 3*time.Second,
			messages: []string{"deadline passed at step 3 of", "fail shard 1 over to its replica", "node 1"}},
		{name: "clocks agree, a node never answers", budget: 1500 * time.Millisecond,
			agents: func() Agents { return stoppedAgents{} },
			want:   fsm.StatusFailed, within: 1500*time.Millisecond + 3*time.Second,
			messages: []string{"deadline passed at step 3 of", "fail shard 1 over to its replica", "node 1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, r, _ := executorCluster(t)
			a := fsm.Action{TaskID: "task", Action: fsm.ActionMaintenanceOn, NodeUID: 2,
				CreationTime: submitted.Unix(), Deadline: submitted.Add(c.budget).Unix(), Params: json.RawMessage(`{}`)}
			if c.legacy {
				// Whole seconds, as older builds stamped it.
				a.CreationTime, a.Deadline = submitted.Unix(), submitted.Unix()+int64(c.budget/time.Second)
			} else {
				a.TimeoutMS = c.budget.Milliseconds()
			}
			if res := applyTo(t, f, &fsm.SubmitAction{By: "test", Action: a}); res.Err != nil {
				t.Fatal(res.Err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			e := &Executor{FSM: f, Raft: r, Agents: c.agents(), Log: slog.New(slog.DiscardHandler),
				Now: func() time.Time { return time.Now().Add(c.skew) }}
			done := make(chan struct{})
			start := time.Now()
			go func() { e.Run(ctx, 1); close(done) }()
			t.Cleanup(func() { cancel(); <-done })

			got := waitAction(t, f, "task", func(a *fsm.Action) bool { return fsm.Terminal(a.Status) })
			took := time.Since(start)
			if got.Status != c.want {
				t.Fatalf("action ended %s (%s: %s) after %v, want %s", got.Status, got.ErrorCode, got.ErrorMessage, took, c.want)
			}
			if took > c.within {
				t.Errorf("action ended after %v, want within %v", took, c.within)
			}
			if c.want == fsm.StatusFailed {
				if took < c.budget {
					t.Errorf("action failed after %v, before its budget of %v", took, c.budget)
				}
				for _, m := range c.messages {
					if !strings.Contains(got.ErrorMessage, m) {
						t.Errorf("error message %q does not say %q", got.ErrorMessage, m)
					}
				}
			}
		})
	}
}

// A new leader measures the step in flight from its own claim: the time a
// deposed leader spent on it counts for nothing, what committed steps used
// counts in full.
func TestExecutor_NewLeaderMeasuresFromItsClaim(t *testing.T) {
	cases := []struct {
		name   string
		usedMS int64 // what the committed steps used, of a 20 s budget
		want   string
	}{
		{"committed steps left time", 15_000, fsm.StatusCompleted},
		{"committed steps used it all", 20_000, fsm.StatusFailed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, r, ag := executorCluster(t, "node1/2", "node2/1")
			// The leader of term 1 ran the first step for a long time, by
			// its clock, then stopped before its next commit.
			a := fsm.Action{TaskID: "task", Action: fsm.ActionMaintenanceOn, NodeUID: 2, CreationTime: 1767225600,
				Deadline: 1767225620, TimeoutMS: 20_000, Params: json.RawMessage(`{}`)}
			for _, p := range []any{
				&fsm.SubmitAction{By: "test", Action: a},
				&fsm.ClaimAction{TaskID: "task", Term: 1, Leader: 3},
			} {
				if res := applyTo(t, f, p); res.Err != nil {
					t.Fatal(res.Err)
				}
			}
			var steps []fsm.Step
			f.Read(func(st *fsm.State, _ uint64) {
				var err error
				steps, err = PlanAction(st, st.ActionByTask("task"), time.Unix(1767225600, 0))
				if err != nil {
					t.Fatal(err)
				}
			})
			for _, p := range []any{
				&fsm.PlanAction{TaskID: "task", Term: 1, Steps: steps},
				&fsm.StepDone{TaskID: "task", Term: 1, Index: 0, ElapsedMS: c.usedMS},
			} {
				if res := applyTo(t, f, p); res.Err != nil {
					t.Fatal(res.Err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			e := &Executor{FSM: f, Raft: r, Agents: ag, Log: slog.New(slog.DiscardHandler)}
			done := make(chan struct{})
			go func() { e.Run(ctx, 2); close(done) }()
			t.Cleanup(func() { cancel(); <-done })

			got := waitAction(t, f, "task", func(a *fsm.Action) bool { return fsm.Terminal(a.Status) })
			if got.Status != c.want {
				t.Fatalf("action ended %s (%s: %s), want %s", got.Status, got.ErrorCode, got.ErrorMessage, c.want)
			}
			if c.want == fsm.StatusFailed && !strings.Contains(got.ErrorMessage, "deadline passed at step 2 of") {
				t.Errorf("error message %q, want the deadline at step 2", got.ErrorMessage)
			}
		})
	}
}
