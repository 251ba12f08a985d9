// Package control is the typed layer between the REST API and raft on the
// node that carries out a write (the leader): one method per write (submit
// or cancel a node action, create or delete a database, create, change or
// delete a user, change the policy, a node or a snapshot, rotate a
// certificate). Each method stamps what the proposing node must decide
// (times, deadlines, password hashes, placements), runs the pre-checks,
// proposes the command, and returns typed values or an *fsm.Error, whose
// code carries its HTTP status.
//
// It never reads HTTP requests or writes answers (httpapi does), never
// forwards (peer does), and never changes state but through raft.
package control
