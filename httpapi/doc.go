// Package httpapi is cnm's REST API: routes, Basic authentication, the role
// permissions of SPEC §8, JSON errors, read consistency (linearizable by
// default, stale and blocking reads on request), and the forwarding of every
// write to the raft leader.
//
// Handlers never touch raft directly: they read the replicated state through
// the FSM and propose encoded fsm commands through the Raft interface declared
// here. A write that lands on a follower is forwarded to the leader over the
// cluster's mutual TLS and the leader's answer is returned unchanged; a
// forwarded request is never forwarded again.
package httpapi
