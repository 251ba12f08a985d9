// Package httpapi is cnm's REST API: routes, Basic authentication, the role
// permissions of SPEC §8, read consistency (linearizable by default, stale
// and blocking reads on request), the forwarding loop of writes, the views
// of the model, and the mapping of errors to answers.
//
// It never decides a write itself: a handler parses the request and calls
// one typed method of the control layer (package control), which stamps,
// pre-checks and proposes; every error it answers with is an *fsm.Error,
// whose code carries its status, and anything else is a 500 that only the
// log explains. Node-to-node calls go through package peer, and the
// node-to-node endpoints are peer's, mounted here behind the same routing,
// metrics and member-certificate check. It imports no planner.
//
// A write is given its task id on the node the client sent it to, then run
// on the leader: here if this node leads, otherwise forwarded. It is sent
// again only when it surely was not applied, or when its route's writes are
// stored once under their id, so a retry after a leader change is the same
// write everywhere.
//
// No request may grow a node's memory or its /metrics without bound: paths
// are checked for canonical form before routing (never redirected), metric
// labels come from route templates and a fixed set of methods, and failed
// logins cost one password check each and are limited per client address
// and per user in bounded tables.
package httpapi
