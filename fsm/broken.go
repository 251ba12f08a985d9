//go:build !drill_broken

package fsm

// brokenNoConflictCheck is false in every real build. The drill_broken
// build tag turns it on to prove that the drill catches a state machine
// that lets two actions run on one node (docs/RELIABILITY.md).
const brokenNoConflictCheck = false
