// Package agent is the node agent inside every cnmd (SPEC §4.6): it hosts
// the shards the replicated state assigns to this node, and serves the
// node-to-node shard API that migrations use (copy a shard from another
// node's agent with checksum verification and a bandwidth cap, report sync
// and persistence state, switch roles, drop a copy).
//
// Shards live behind the Backend interface declared here, so that the
// executors that move shards do not depend on how a shard is stored: the
// file backend materialises each shard as a data file; the redis backend
// runs each shard as its own redis-server, started detached so that it
// outlives cnmd, adopted by a restarted agent, restarted when it dies, and
// copied by replication (a copy of a master takes over from it with a
// write pause, so that no acknowledged write is lost). For the redis
// backend the agent also resolves where each replica's master listens
// (Follower) and tells its peers where its shards listen (Info.Port); a
// failover step promotes a replica through the agent (POST
// /shards/{uid}/promote, behind the copies' term fence) with the same
// write-pause switch-over, and reconcile leaves the roles of a failover in
// flight alone. With the redis backend the agent also runs each endpoint
// on its node as a RESP proxy (package proxy), routing to its database's
// masters as the state and their agents say.
//
// Its client (Client) calls other agents through peer's client, so every
// node-to-node call shares one transport and one reading of error answers.
//
// The agent reconciles: on start and after every change of the replicated
// state it makes the node's shards match what the state assigns to it.
package agent
