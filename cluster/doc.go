// Package cluster holds the leader-side machinery: the leader loop that runs
// leader-only workers for exactly as long as this node is a ready leader (and
// placement and the node-action executors that run under it).
//
// Workers read copies of the replicated state and change it only through
// raft; they never assume leadership outlives their context.
//
// The executor knows each step kind of fsm.StepKinds through one runner
// (steps.go, step_*.go) that holds its work, its description and its special
// cases, so that a kind is read and changed in one place and a test can check
// that no kind fsm knows is missing here. Planner refusals are *fsm.Error
// values built from fsm's sentinels, so an error code is written once.
package cluster
