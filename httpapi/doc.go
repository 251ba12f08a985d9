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
//
// No request may grow a node's memory or its /metrics without bound: paths
// are checked for canonical form before routing (never redirected), metric
// labels come from route templates and a fixed set of methods, and failed
// logins cost one password check each and are limited per client address
// and per user in bounded tables.
package httpapi
