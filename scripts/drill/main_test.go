package main

import (
	"context"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"path/filepath"
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

// The drill checks the product from outside: a check that shared the
// product's code would share its bugs.
func TestDrillImportsNoPackageOfCnm(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files here: %v", err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		parsed, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range parsed.Imports {
			if path := strings.Trim(imp.Path.Value, `"`); path == "cnm" || strings.HasPrefix(path, "cnm/") {
				t.Errorf("%s imports %s", f, path)
			}
		}
	}
}
