// Package fsm holds cnm's replicated state: the cluster model and the
// deterministic state machine that raft drives.
//
// Every change to the cluster is a typed, versioned command appended to the
// raft log. Apply decodes a command and changes State; it never reads the
// clock, draws random numbers, or does I/O, so every node that applies the same
// log reaches the same state. Whatever is non-deterministic (times, UUIDs,
// password hashes, the leader's term) is stamped into the command by the node
// that proposes it.
//
// Domain failures (a duplicate email, an unknown user) are returned from Apply
// as *Error values so that the proposer can answer the client; a log entry that
// cannot be decoded panics, because the log itself is then broken.
//
// Each command and each step kind of a node action is one entry of a table
// (commands, stepKinds) that holds how it changes the state, so that adding
// one is a single change that no switch can miss; StepKinds lists the step
// kinds so that the executor can check it runs every one of them.
package fsm
