//go:build drill_broken

package fsm

// brokenNoConflictCheck: see broken.go. Never ship this build.
const brokenNoConflictCheck = true
