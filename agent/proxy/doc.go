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
// Upstream connections: each client connection gets its own connection to
// each master it uses, dialled on first use and closed with the client.
// Redis's WAIT counts the replicas that acknowledged the last write of the
// connection it runs on, so a pool shared between clients would make WAIT
// measure someone else's writes (or none); a dedicated connection also
// keeps one client's commands to a master in order. The cost is one
// upstream connection per client and master, which is what a redis-server
// is built to carry. Upstream connections are keyed by master address, not
// shard, so that WAIT after a table change still asks the master that took
// the writes.
//
// WAIT numreplicas timeout runs on every master this client wrote to since
// its last WAIT, in parallel, and answers the smallest count. A client that
// wrote nothing since gets 0 at once (no master is asked: there is nothing
// to acknowledge, and 0 is all the proxy can vouch for); so does a client
// whose writing connection to a master broke.
//
// Holds: a command whose slot is marked switching waits, without an
// error, for the table or marks to change, up to Config.HoldTimeout from
// its arrival; then it goes to whatever master the table names, or gets
// TRYAGAIN. A master that cannot be dialled while its slot is marked (or
// after the table moved the slot) is held for in the same way, because the
// old master going away is part of a switch-over.
// A write a master refuses with READONLY is held the same way until the
// table names another master for its slots, and then sent there once: the
// switch-over pauses the old master's writes and turns it into a replica
// of the new one, so a write reaching it then was not applied, and the
// agent repoints the table without marking anything. If no other master
// is named within HoldTimeout, the client gets the READONLY.
//
// Multi-key commands (MGET, MSET, DEL, ...) must have all their keys on
// one shard, not merely in one slot as Redis Cluster demands: the shards
// are plain redis-servers, for which any keys on one server are fine.
// Keys spread over shards get CROSSSLOT.
//
// Keyless commands answered by the proxy itself: PING, ECHO, SELECT 0,
// QUIT, COMMAND (an empty list), HELLO [2] (HELLO 3 gets NOPROTO, so
// clients fall back to RESP2), CLIENT SETNAME/GETNAME/SETINFO/ID, and
// DBSIZE and INFO summed over the masters.
//
// MULTI/EXEC, blocking commands (BLPOP, XREAD, ...), pub/sub and scripts
// are refused with an explicit error for now: each needs a connection to
// stay bound to one master across commands in ways the router does not
// model yet.
package proxy
