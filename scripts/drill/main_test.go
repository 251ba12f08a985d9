package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestIterate_CountsSkippedIterationsApart(t *testing.T) {
	results := map[string]error{
		"a": nil,
		"b": fmt.Errorf("no remove accepted (last answer 409): %w", errSkipped),
		"c": errNoPartitions,
		"d": errors.New("no leader within 10s"),
	}
	var out strings.Builder
	got := iterate(context.Background(), 4, []string{"a", "b", "c", "d"}, func(name string) error {
		return results[name]
	}, &out)
	if got.ok != 1 || got.skipped != 2 || got.violations != 1 {
		t.Errorf("tally = %d ok, %d skipped, %d violations; want 1, 2, 1\n%s", got.ok, got.skipped, got.violations, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{" ok (", " skipped: no remove accepted", " skipped: iptables", " VIOLATION no leader"}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d = %q, want it to contain %q", i+1, lines[i], w)
		}
		if i > 0 && strings.Contains(lines[i], " ok (") {
			t.Errorf("line %d = %q: a skipped or failed iteration reported ok", i+1, lines[i])
		}
	}
	if len(got.report) != 1 || !strings.Contains(got.report[0], "iteration 4 d") {
		t.Errorf("report = %q, want the one violation of iteration 4", got.report)
	}
}
