package main

import "testing"

// The -nemeses flag offers allNemeses; each must be one the drill can run,
// and none it can run may be left out of the default cycle.
func TestNemeses_EveryNameHasANemesis(t *testing.T) {
	for _, name := range allNemeses {
		if nemesisByName[name] == nil {
			t.Errorf("nemesis %q is offered but has no function", name)
		}
	}
	if len(nemesisByName) != len(allNemeses) {
		t.Errorf("%d nemeses can run, %d are offered", len(nemesisByName), len(allNemeses))
	}
}
