package cluster

import (
	"maps"
	"slices"
	"testing"

	"cnm/fsm"
)

// TestRunners_CoverEveryStepKind: the executor has a runner and a
// description for each kind fsm knows, and none for a kind fsm does not.
func TestRunners_CoverEveryStepKind(t *testing.T) {
	kinds := fsm.StepKinds()
	if got := slices.Sorted(maps.Keys(runners)); !slices.Equal(got, kinds) {
		t.Fatalf("runners for %v, fsm's step kinds are %v", got, kinds)
	}
	for _, k := range kinds {
		r := runners[k]
		if r.run == nil {
			t.Errorf("step kind %q has no run function", k)
		}
		if r.describe == nil || r.describe(fsm.Step{Kind: k}) == "" {
			t.Errorf("step kind %q has no description", k)
		}
	}
}

// TestDescribe_UnknownKindIsItsName: a kind from a newer build is named as
// it is, and its run leaves the refusal to the state.
func TestDescribe_UnknownKindIsItsName(t *testing.T) {
	st := fsm.Step{Kind: "from_a_newer_build"}
	if got := describe(st); got != st.Kind {
		t.Errorf("describe = %q, want %q", got, st.Kind)
	}
	if msg, err := runnerOf(st.Kind).run(nil, t.Context(), nil, st); err != nil || msg != st.Kind {
		t.Errorf("run = %q, %v; want %q, nil", msg, err, st.Kind)
	}
}
