// Package proxy is the RESP proxy a cnm database endpoint runs: clients
// speak the Redis protocol to one address, and every command goes to the
// master redis-server of the shard that owns the command's key slot (the
// 16384 Redis Cluster hash slots, CRC16 of the key or of its {hash tag}).
//
// The package owns:
//   - the slot function and the routing table (shards, their slot ranges and
//     their masters' addresses), which the caller replaces at run time;
//   - switch-over marks: commands for a marked slot are held, not failed,
//     until the mark is lifted (then they go to whatever master the table
//     names) or the hold times out (then they get TRYAGAIN);
//   - one upstream connection per client connection and master, so that
//     WAIT measures exactly the writes that client made;
//   - the answers to keyless commands (PING, INFO, DBSIZE, HELLO, ...).
//
// It must never:
//   - decide the routing itself: which master owns a slot is the caller's
//     (the node agent's) knowledge, read from the replicated state;
//   - start, stop or reconfigure redis-server processes;
//   - retry a command whose outcome is unknown (sent, then the connection
//     broke): that could apply a write twice; only commands that never left
//     the proxy are retried;
//   - guess a key for a command it does not know: unknown commands are
//     refused, because routing them by their first argument would silently
//     run keyless commands (FLUSHALL ASYNC, CONFIG SET ...) on one shard.
//
// MULTI/EXEC, blocking commands (BLPOP, XREAD, ...), pub/sub and scripts
// are refused with an explicit error for now: each needs a connection to
// stay bound to one master across commands in ways the router does not
// model yet.
package proxy
