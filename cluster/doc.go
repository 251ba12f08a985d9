// Package cluster holds the leader-side machinery: the leader loop that runs
// leader-only workers for exactly as long as this node is a ready leader (and
// placement and the node-action executors that run under it).
//
// Workers read copies of the replicated state and change it only through
// raft; they never assume leadership outlives their context.
package cluster
