package proxy

import (
	"fmt"
	"strings"
)

// keySpec says where a command's keys are, in the style of Redis's own
// COMMAND INFO (first key, last key, step): last < 0 counts from the end,
// so -1 means "to the last argument".
type keySpec struct {
	first, last, step int
	write             bool // counts for WAIT
}

var (
	oneKeyRead   = keySpec{first: 1, last: 1, step: 1}
	oneKeyWrite  = keySpec{first: 1, last: 1, step: 1, write: true}
	allKeysRead  = keySpec{first: 1, last: -1, step: 1}
	allKeysWrite = keySpec{first: 1, last: -1, step: 1, write: true}
	twoKeysWrite = keySpec{first: 1, last: 2, step: 1, write: true}
	pairsWrite   = keySpec{first: 1, last: -1, step: 2, write: true}
)

func specs(spec keySpec, names ...string) map[string]keySpec {
	m := make(map[string]keySpec, len(names))
	for _, n := range names {
		m[n] = spec
	}
	return m
}

// keyed lists every command the proxy routes by key. The list is explicit
// on purpose: a command missing here is refused rather than guessed at.
var keyed = func() map[string]keySpec {
	all := map[string]keySpec{}
	for _, m := range []map[string]keySpec{
		specs(oneKeyRead, "get", "strlen", "getrange", "ttl", "pttl", "expiretime",
			"pexpiretime", "type", "dump", "getbit", "bitcount", "bitpos",
			"hget", "hgetall", "hmget", "hexists", "hkeys", "hvals", "hlen",
			"hstrlen", "hscan", "hrandfield",
			"lrange", "llen", "lindex", "lpos",
			"smembers", "scard", "sismember", "smismember", "srandmember", "sscan",
			"zrange", "zscore", "zcard", "zrank", "zrevrank", "zrevrange",
			"zrangebyscore", "zrevrangebyscore", "zrangebylex", "zrevrangebylex",
			"zcount", "zlexcount", "zmscore", "zscan", "zrandmember",
			"xlen", "xrange", "xrevrange"),
		specs(oneKeyWrite, "set", "incr", "incrby", "incrbyfloat", "decr", "decrby",
			"append", "getset", "getdel", "getex", "setnx", "setex", "psetex",
			"setrange", "expire", "pexpire", "expireat", "pexpireat", "persist",
			"restore", "setbit", "pfadd",
			"hset", "hsetnx", "hdel", "hincrby", "hincrbyfloat", "hmset",
			"lpush", "rpush", "lpushx", "rpushx", "lpop", "rpop", "lset", "lrem",
			"ltrim", "linsert",
			"sadd", "srem", "spop",
			"zadd", "zrem", "zincrby", "zremrangebyrank", "zremrangebyscore",
			"zremrangebylex", "zpopmin", "zpopmax",
			"xadd", "xdel", "xtrim"),
		specs(allKeysRead, "mget", "exists", "touch", "sinter", "sunion", "sdiff", "pfcount"),
		specs(allKeysWrite, "del", "unlink", "sinterstore", "sunionstore", "sdiffstore", "pfmerge"),
		specs(twoKeysWrite, "rename", "renamenx", "smove", "rpoplpush", "lmove", "copy"),
		specs(pairsWrite, "mset", "msetnx"),
	} {
		for k, v := range m {
			all[k] = v
		}
	}
	return all
}()

// refused maps commands the proxy knows but will not run to the reason
// given to the client.
var refused = func() map[string]string {
	m := map[string]string{}
	add := func(reason string, names ...string) {
		for _, n := range names {
			m[n] = reason
		}
	}
	add("transactions (MULTI/EXEC/WATCH) are not supported by the cnm proxy",
		"multi", "exec", "discard", "watch", "unwatch")
	add("blocking commands are not supported by the cnm proxy",
		"blpop", "brpop", "brpoplpush", "blmove", "blmpop", "bzpopmin",
		"bzpopmax", "bzmpop", "xread", "xreadgroup")
	add("pub/sub is not supported by the cnm proxy",
		"subscribe", "psubscribe", "ssubscribe", "unsubscribe",
		"punsubscribe", "sunsubscribe", "publish", "spublish", "pubsub")
	add("scripts and functions are not supported by the cnm proxy",
		"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro", "script", "function")
	add("commands over the whole keyspace are not supported by the cnm proxy",
		"keys", "scan", "randomkey", "flushdb", "flushall")
	add("other databases than 0 do not exist behind the cnm proxy", "move", "swapdb")
	return m
}()

// keysOf returns the key arguments of args (args[0] is the command name)
// or an arity error phrased like Redis's own.
func keysOf(spec keySpec, args [][]byte) ([][]byte, error) {
	arityErr := replyError(fmt.Sprintf("ERR wrong number of arguments for '%s' command",
		strings.ToLower(string(args[0]))))
	last := spec.last
	if last < 0 {
		last = len(args) + last
	}
	if len(args) <= spec.first || last >= len(args) || last < spec.first {
		return nil, arityErr
	}
	if spec.step > 1 && (last-spec.first+1)%spec.step != 0 {
		return nil, arityErr
	}
	keys := make([][]byte, 0, (last-spec.first)/spec.step+1)
	for i := spec.first; i <= last; i += spec.step {
		keys = append(keys, args[i])
	}
	return keys, nil
}
