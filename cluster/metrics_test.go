package cluster

import (
	"context"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"cnm/fsm"
)

// The executor's metrics count each committed step by kind, and the bytes
// each move copied.
func TestExecutor_MetricsTimeEveryStepAndCountMovedBytes(t *testing.T) {
	f, r, ag := executorCluster(t, "node1/2", "node2/1")
	m := NewStepMetrics()
	if res := applyTo(t, f, submit("task", fsm.ActionMaintenanceOn, 2)); res.Err != nil {
		t.Fatal(res.Err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Executor{FSM: f, Raft: r, Agents: ag, Log: slog.New(slog.DiscardHandler), Metrics: m}
	done := make(chan struct{})
	go func() { e.Run(ctx, 1); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	a := waitAction(t, f, "task", func(a *fsm.Action) bool { return fsm.Terminal(a.Status) })
	if a.Status != fsm.StatusCompleted {
		t.Fatalf("action ended %s (%s)", a.Status, a.ErrorMessage)
	}
	kinds := map[string]int{}
	moves := 0
	for _, st := range a.Steps {
		kinds[st.Kind]++
		if st.Kind == fsm.StepMove {
			moves++
		}
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "cnm_action_step_duration_seconds" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			counts[mt.GetLabel()[0].GetValue()] = mt.GetHistogram().GetSampleCount()
		}
	}
	for kind, n := range kinds {
		if counts[kind] != uint64(n) {
			t.Errorf("kind %s: %d observations, want %d (all: %v)", kind, counts[kind], n, counts)
		}
	}
	if moves == 0 {
		t.Fatalf("the action moved nothing: %+v", a.Steps)
	}
	if got := testutil.ToFloat64(m.moveBytes); got != float64(1000*moves) {
		t.Errorf("moved bytes %v, want %d", got, 1000*moves)
	}
}
