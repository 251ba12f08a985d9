package proxy

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestRoutesKeysToTheOwningShard(t *testing.T) {
	p, a, b := twoShards(t)
	c := proxyClient(t, p)
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		lo, hi    int
		owner     *redisServer
		notOwner  *redisServer
		keyPrefix string
	}{
		{"low half", 0, 8191, a, b, "low"},
		{"high half", 8192, 16383, b, a, "high"},
		{"first slot", 0, 0, a, b, "first"},
		{"last slot", 16383, 16383, b, a, "last"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := keyForSlots(t, tc.keyPrefix, tc.lo, tc.hi)
			if err := c.Set(ctx, key, tc.name, 0).Err(); err != nil {
				t.Fatalf("SET via proxy: %v", err)
			}
			if got, err := tc.owner.Client.Get(ctx, key).Result(); err != nil || got != tc.name {
				t.Fatalf("owner shard has %q, %v; want %q", got, err, tc.name)
			}
			if n := tc.notOwner.Client.Exists(ctx, key).Val(); n != 0 {
				t.Fatalf("key %q also landed on the other shard", key)
			}
			if got := c.Get(ctx, key).Val(); got != tc.name {
				t.Fatalf("GET via proxy = %q, want %q", got, tc.name)
			}
		})
	}
}

func TestMultiKeyCommandsAcrossShardsAreRefused(t *testing.T) {
	p, _, _ := twoShards(t)
	r := dialRaw(t, p)
	lo := keyForSlots(t, "lo", 0, 8191)
	hi := keyForSlots(t, "hi", 8192, 16383)
	const crossSlot = "-CROSSSLOT Keys in request don't hash to the same slot"
	for _, args := range [][]string{
		{"MSET", lo, "1", hi, "2"},
		{"MGET", lo, hi},
		{"DEL", lo, hi},
		{"EXISTS", hi, lo},
		{"UNLINK", lo, hi},
		{"RENAME", lo, hi},
	} {
		if got := r.do(args...); got != crossSlot {
			t.Errorf("%v = %q, want %q", args, got, crossSlot)
		}
	}
}

func TestHashTagsColocateKeys(t *testing.T) {
	p, a, b := twoShards(t)
	c := proxyClient(t, p)
	ctx := context.Background()
	keys := []string{"{user1000}.following", "{user1000}.followers", "{user1000}"}
	owner, other := a, b
	if Slot([]byte("user1000")) > 8191 {
		owner, other = b, a
	}
	if err := c.MSet(ctx, keys[0], "x", keys[1], "y", keys[2], "z").Err(); err != nil {
		t.Fatalf("MSET with one hash tag: %v", err)
	}
	if n := owner.Client.Exists(ctx, keys...).Val(); n != 3 {
		t.Fatalf("owner shard has %d of the 3 tagged keys", n)
	}
	if n := other.Client.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("other shard has %d keys, want 0", n)
	}
	if got := c.MGet(ctx, keys...).Val(); len(got) != 3 || got[0] != "x" || got[2] != "z" {
		t.Fatalf("MGET = %v", got)
	}
}

func TestDBSizeSumsOverMasters(t *testing.T) {
	p, a, b := twoShards(t)
	c := proxyClient(t, p)
	ctx := context.Background()
	for i := range 10 {
		lo, hi := 0, 8191
		if i%3 == 0 {
			lo, hi = 8192, 16383
		}
		if err := c.Set(ctx, keyForSlots(t, "k"+string(rune('a'+i)), lo, hi), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	na, nb := a.Client.DBSize(ctx).Val(), b.Client.DBSize(ctx).Val()
	if na == 0 || nb == 0 {
		t.Fatalf("keys did not spread: %d and %d", na, nb)
	}
	if got := c.DBSize(ctx).Val(); got != na+nb || got != 10 {
		t.Fatalf("DBSIZE = %d, want %d+%d = 10", got, na, nb)
	}
	info := c.Info(ctx).Val()
	if !strings.Contains(info, "cnm_proxy:1") || !strings.Contains(info, "db0:keys=10,") {
		t.Fatalf("INFO lacks the proxy marker or the summed keyspace:\n%s", info)
	}
}

// TestGoRedisClient connects the way applications will: go-redis sends
// HELLO 3 and CLIENT SETNAME/SETINFO at connect and must fall back to RESP2.
func TestGoRedisClient(t *testing.T) {
	p, _, _ := twoShards(t)
	c := redis.NewClient(&redis.Options{Addr: p.Addr().String(), ClientName: "cnm-test"})
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	if got, err := c.Ping(ctx).Result(); err != nil || got != "PONG" {
		t.Fatalf("PING = %q, %v", got, err)
	}
	if err := c.Set(ctx, "foo", "bar", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got := c.Get(ctx, "foo").Val(); got != "bar" {
		t.Fatalf("GET = %q", got)
	}
	if got, err := c.Get(ctx, "missing").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET missing = %q, %v; want redis.Nil", got, err)
	}
	if got := c.Incr(ctx, "counter").Val(); got != 1 {
		t.Fatalf("INCR = %d", got)
	}
	if got := c.MGet(ctx, "{t}a", "{t}b").Val(); len(got) != 2 || got[0] != nil {
		t.Fatalf("MGET = %v", got)
	}
	if got, err := c.Del(ctx, "foo").Result(); err != nil || got != 1 {
		t.Fatalf("DEL = %d, %v", got, err)
	}
	if got, err := c.ClientGetName(ctx).Result(); err != nil || got != "cnm-test" {
		t.Fatalf("CLIENT GETNAME = %q, %v", got, err)
	}
	cmds, err := c.Pipelined(ctx, func(pp redis.Pipeliner) error {
		for range 50 {
			pp.Incr(ctx, "piped")
		}
		return nil
	})
	if err != nil || cmds[49].(*redis.IntCmd).Val() != 50 {
		t.Fatalf("pipelined INCRs: %v", err)
	}
}

func TestKeylessAndRefusedCommands(t *testing.T) {
	p, _, _ := twoShards(t)
	r := dialRaw(t, p)
	for _, tc := range []struct {
		args []string
		want string // exact reply, or a prefix when it ends in "..."
	}{
		{[]string{"PING"}, "+PONG"},
		{[]string{"ping", "hi"}, "$2\r\nhi"},
		{[]string{"ECHO", "hello"}, "$5\r\nhello"},
		{[]string{"SELECT", "0"}, "+OK"},
		{[]string{"SELECT", "1"}, "-ERR DB index is out of range..."},
		{[]string{"COMMAND", "DOCS"}, "*0"},
		{[]string{"HELLO", "3"}, "-NOPROTO..."},
		{[]string{"HELLO", "2", "SETNAME", "raw"}, "*14\r\n$6\r\nserver\r\n$9\r\ncnm-proxy..."},
		{[]string{"CLIENT", "GETNAME"}, "$3\r\nraw"},
		{[]string{"CLIENT", "KILL", "x"}, "-ERR CLIENT kill is not supported..."},
		{[]string{"SET", "k", "v"}, "+OK"},
		{[]string{"GET", "k"}, "$1\r\nv"},
		{[]string{"GET"}, "-ERR wrong number of arguments for 'get' command"},
		{[]string{"MSET", "{a}1", "x", "{a}2"}, "-ERR wrong number of arguments for 'mset' command"},
		{[]string{"LPUSH", "k", "x"}, "-WRONGTYPE Operation against a key holding the wrong kind of value"},
		{[]string{"NOSUCHCMD", "k"}, "-ERR unknown or unsupported command 'nosuchcmd'..."},
		{[]string{"bad\r\nname"}, "-ERR unknown or unsupported command 'bad ; name'..."},
		{[]string{"MOVE", "k", "1"}, "-ERR other databases than 0 do not exist..."},
		{[]string{"FLUSHALL", "ASYNC"}, "-ERR commands over the whole keyspace are not supported..."},
		{[]string{"MULTI"}, "-ERR transactions (MULTI/EXEC/WATCH) are not supported..."},
		{[]string{"BLPOP", "k", "0"}, "-ERR blocking commands are not supported..."},
		{[]string{"SUBSCRIBE", "ch"}, "-ERR pub/sub is not supported..."},
		{[]string{"QUIT"}, "+OK"},
	} {
		got := r.do(tc.args...)
		if prefix, ok := strings.CutSuffix(tc.want, "..."); ok {
			if !strings.HasPrefix(got, prefix) {
				t.Errorf("%v = %q, want prefix %q", tc.args, got, prefix)
			}
		} else if got != tc.want {
			t.Errorf("%v = %q, want %q", tc.args, got, tc.want)
		}
	}
	if _, err := r.br.ReadByte(); err == nil {
		t.Error("connection still open after QUIT")
	}
}

func TestUnreachableMasterIsAClearError(t *testing.T) {
	dead := "127.0.0.1:" + itoa(freePort(t))
	p := startProxy(t, Config{Shards: []Shard{{ID: "s0", Master: dead, Slots: []SlotRange{{0, 16383}}}}})
	r := dialRaw(t, p)
	got := r.do("GET", "k")
	if !strings.HasPrefix(got, "-ERR cnm proxy: master "+dead+" of shard s0 is unreachable") {
		t.Fatalf("GET with a dead master = %q", got)
	}
	if got := r.do("DBSIZE"); !strings.HasPrefix(got, "-ERR") {
		t.Fatalf("DBSIZE with a dead master = %q, want an error", got)
	}
	if got := r.do("INFO"); !strings.Contains(got, "unreachable_masters:1") {
		t.Fatalf("INFO with a dead master = %q", got)
	}
}

func TestUnservedSlotsAnswerClusterDown(t *testing.T) {
	a := startRedis(t)
	p := startProxy(t, Config{Shards: []Shard{{ID: "s0", Master: a.Addr, Slots: []SlotRange{{0, 8191}}}}})
	r := dialRaw(t, p)
	key := keyForSlots(t, "hi", 8192, 16383)
	if got := r.do("GET", key); !strings.HasPrefix(got, "-CLUSTERDOWN Hash slot") {
		t.Fatalf("GET of an unserved slot = %q", got)
	}
}

func TestABadTableIsRefusedAndTheOldOneKept(t *testing.T) {
	overlap := []Shard{
		{ID: "s0", Master: "127.0.0.1:1", Slots: []SlotRange{{0, 9000}}},
		{ID: "s1", Master: "127.0.0.1:2", Slots: []SlotRange{{8192, 16383}}},
	}
	if _, err := Listen(context.Background(), Config{Addr: "127.0.0.1:0", Shards: overlap}); !errors.Is(err, ErrBadTable) {
		t.Fatalf("Listen with overlapping shards: %v, want ErrBadTable", err)
	}
	p, _, _ := twoShards(t)
	r := dialRaw(t, p)
	if err := p.SetShards(overlap); !errors.Is(err, ErrBadTable) {
		t.Fatalf("SetShards with overlapping shards: %v, want ErrBadTable", err)
	}
	if _, err := p.MarkSwitching(SlotRange{0, NumSlots}); !errors.Is(err, ErrBadTable) {
		t.Fatalf("marking slots out of range: %v, want ErrBadTable", err)
	}
	if got := r.do("SET", "still", "routed"); got != "+OK" {
		t.Fatalf("SET after a refused table = %q", got)
	}
}

// A table that does not cover every slot yet (an endpoint whose masters
// are not all resolved) must not pass a partial count for the database's.
func TestDBSizeRefusesWhileSlotsHaveNoMaster(t *testing.T) {
	a := startRedis(t)
	p := startProxy(t, Config{Shards: []Shard{{ID: "s0", Master: a.Addr, Slots: []SlotRange{{0, 8191}}}}})
	c := proxyClient(t, p)
	ctx := context.Background()
	if err := c.DBSize(ctx).Err(); err == nil || !strings.Contains(err.Error(), "CLUSTERDOWN Hash slot 8192 not served") {
		t.Fatalf("DBSIZE over half the slots: %v, want CLUSTERDOWN naming slot 8192", err)
	}
	b := startRedis(t)
	if err := p.SetShards([]Shard{{ID: "s0", Master: a.Addr, Slots: []SlotRange{{0, 8191}}},
		{ID: "s1", Master: b.Addr, Slots: []SlotRange{{8192, 16383}}}}); err != nil {
		t.Fatal(err)
	}
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE over every slot: %d, %v", n, err)
	}
}
