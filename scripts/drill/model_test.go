package main

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

type op struct {
	in        Input
	out       Output
	call, ret int64
}

func history(ops ...op) []porcupine.Operation {
	h := make([]porcupine.Operation, len(ops))
	for i, o := range ops {
		h[i] = porcupine.Operation{ClientId: i, Input: o.in, Output: o.out, Call: o.call, Return: o.ret}
	}
	return h
}

var (
	submitOn = Input{Kind: "submit", Node: 2, Action: "maintenance_on"}
	submitEn = Input{Kind: "submit", Node: 2, Action: "enslave_node"}
	readOn   = Input{Kind: "read", Node: 2, Action: "maintenance_on"}
	cancelOn = Input{Kind: "cancel", Node: 2, Action: "maintenance_on"}
	ok       = func(task, status string) Output { return Output{Code: 200, Task: task, Status: status} }
	conflict = Output{Code: 409}
	notFound = Output{Code: 404}
	noAnswer = Output{Unknown: true}
)

func TestModel_AcceptsHistoriesTheActionTableCanProduce(t *testing.T) {
	tests := map[string][]porcupine.Operation{
		"submit, conflict, progress, complete": history(
			op{submitOn, ok("a", "queued"), 0, 1},
			op{submitEn, conflict, 2, 3},
			op{readOn, ok("a", "running"), 4, 5},
			op{readOn, ok("a", "completed"), 6, 7},
			op{submitEn, ok("b", "queued"), 8, 9}),
		"concurrent submits: one 200, one 409": history(
			op{submitOn, ok("a", "queued"), 0, 5},
			op{submitEn, conflict, 1, 6}),
		"cancel queued, then forget": history(
			op{submitOn, ok("a", "queued"), 0, 1},
			op{cancelOn, ok("a", "cancelled"), 2, 3},
			op{cancelOn, ok("a", "cancelled"), 4, 5},
			op{readOn, notFound, 6, 7}),
		"a lost submit answer, seen later by a read": history(
			op{submitOn, noAnswer, 0, 10},
			op{readOn, ok("x", "running"), 11, 12}),
		"a lost submit answer that never happened": history(
			op{submitOn, noAnswer, 0, 10},
			op{readOn, notFound, 11, 12}),
	}
	for name, h := range tests {
		if !porcupine.CheckOperations(actionModel, h) {
			t.Errorf("%s: rejected", name)
		}
	}
}

func TestModel_RejectsWhatTheActionTableMustNeverDo(t *testing.T) {
	tests := map[string][]porcupine.Operation{
		"two actions running on one node": history(
			op{submitOn, ok("a", "queued"), 0, 1},
			op{readOn, ok("a", "running"), 2, 3},
			op{submitEn, ok("b", "queued"), 4, 5},
			op{readOn, ok("a", "running"), 6, 7}),
		"status going backwards": history(
			op{submitOn, ok("a", "queued"), 0, 1},
			op{readOn, ok("a", "running"), 2, 3},
			op{readOn, ok("a", "queued"), 4, 5}),
		"an acknowledged action lost": history(
			op{submitOn, ok("a", "queued"), 0, 1},
			op{readOn, notFound, 2, 3}),
		"409 with nothing running": history(
			op{submitEn, conflict, 0, 1}),
		"a completed action running again": history(
			op{submitOn, ok("a", "queued"), 0, 1},
			op{readOn, ok("a", "completed"), 2, 3},
			op{readOn, ok("a", "running"), 4, 5}),
	}
	for name, h := range tests {
		if porcupine.CheckOperations(actionModel, h) {
			t.Errorf("%s: accepted", name)
		}
	}
}
