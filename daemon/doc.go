// Package daemon assembles one cnm node from raftnode (the replicated
// log), httpapi (the REST API), peer (the node-to-node client), cluster
// (the work only the leader does) and agent (the shards on this node), and
// runs its life: bootstrap, join, restart from the data dir, removal and
// graceful shutdown. It owns the data dir's layout: the raft and tls dirs, the
// shard store, and the small files by which a restarted node knows where
// it stood before raft can tell it anything (identity.json,
// bootstrap-pending, join-pending, member, peers, state-diverged,
// cert-rotation), each named next to the code that writes it. cmd/cnmd
// and the multi-node test harness start nodes through it, so tests run
// exactly what operators run.
//
// It must never decide what the cluster decides (membership, placement,
// node state): those live in the replicated state and the leader's loop,
// because a choice made from one node's local view can differ from its
// peers' and split the cluster's truth. And it must never change the data
// dir before the flags and the data dir's identity have been checked: a
// refused start has to leave the node's data as it found it.
package daemon
