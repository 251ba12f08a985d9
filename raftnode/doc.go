// Package raftnode owns one node's raft member: its log and stable stores
// (raft-boltdb), snapshot store, TLS stream transport, bootstrap and
// membership changes, and the read-index protocol behind linearizable reads.
//
// It knows nothing of HTTP or users: callers hand it encoded fsm commands and
// get back fsm results or errors that say whether the command can have been
// applied (ErrNotLeader: certainly not; ErrLeadershipLost: unknown).
//
// Its stores are checked: log entries and raft's term and vote carry
// checksums, and a failed write or a corrupt read stops raft on this node
// and is reported by Node.StorageFault (ErrStorageFault).
//
// It must never hand out its *raft.Raft, count a leader ready before the
// barrier of its own term is applied, or let raft go on after a storage
// fault: linearizable reads, leader-only work and the promise that a node
// which cannot persist neither leads nor votes all rest on those checks
// being made here and nowhere else.
package raftnode
