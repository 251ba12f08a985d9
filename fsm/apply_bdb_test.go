package fsm_test

import (
	"fmt"
	"strconv"
	"testing"

	"cnm/fsm"
)

// createdCase is a CreateBDB that must succeed: b lands under uid with the
// given shards and endpoint node, and the uid counters move to nextBDB and
// nextShard.
func createdCase(name string, setup []any, cmd *fsm.CreateBDB, uid, nextBDB, nextShard int, shards ...*fsm.Shard) applyCase {
	want := storedBDB(cmd.BDB, uid, cmd.EndpointNode)
	return applyCase{
		name:  name,
		setup: setup,
		cmd:   cmd,
		want: func(s *fsm.State, _ uint64) {
			putBDB(s, want, shards...)
			s.NextBDBUID = nextBDB
			s.NextShardUID = nextShard
		},
		wantValue: func(uint64) any { return want },
	}
}

func TestApply_CreateBDB(t *testing.T) {
	const (
		m = fsm.RoleMaster
		r = fsm.RoleSlave
	)
	wide := func() []*fsm.Shard {
		var out []*fsm.Shard
		for i := range 512 {
			out = append(out, shard(strconv.Itoa(i+1), 1, 1, m, 1<<20, fmt.Sprintf("%d-%d", 32*i, 32*i+31)))
		}
		return out
	}
	withCache := with(threeNodes(), createBDB(newBDB("cache", 2*gib, 2, false), 1, 1, 2))

	runApplyCases(t, []applyCase{
		createdCase("one shard gets every slot, the endpoint and uid 1",
			threeNodes(),
			createBDB(newBDB("cache", gib, 1, false), 2, 2),
			1, 2, 2,
			shard("1", 1, 2, m, gib, "0-16383")),
		createdCase("two shards split the slots in halves",
			threeNodes(),
			createBDB(newBDB("cache", 2*gib, 2, false), 3, 3, 1),
			1, 2, 3,
			shard("1", 1, 3, m, gib, "0-8191"),
			shard("2", 1, 1, m, gib, "8192-16383")),
		createdCase("three shards split the slots as evenly as they divide",
			threeNodes(),
			createBDB(newBDB("cache", 3000, 3, false), 1, 1, 2, 3),
			1, 2, 4,
			shard("1", 1, 1, m, 1000, "0-5460"),
			shard("2", 1, 2, m, 1000, "5461-10921"),
			shard("3", 1, 3, m, 1000, "10922-16383")),
		createdCase("512 shards get 32 slots each",
			with(threeNodes(), &fsm.UpdateNode{Actor: adminActor, UID: 1, MaxRedisServers: ptr(512)}),
			createBDB(newBDB("wide", 512<<20, 512, false), 1, repeat(1, 512)...),
			1, 2, 513,
			wide()...),
		createdCase("replication places master then replica for each slot range",
			threeNodes(),
			createBDB(newBDB("orders", 4*gib, 2, true), 3, 1, 2, 3, 1),
			1, 2, 5,
			shard("1", 1, 1, m, 2*gib, "0-8191"),
			shard("2", 1, 2, r, 2*gib, "0-8191"),
			shard("3", 1, 3, m, 2*gib, "8192-16383"),
			shard("4", 1, 1, r, 2*gib, "8192-16383")),
		createdCase("shard memory is memory_size / shards_count rounded down",
			threeNodes(),
			createBDB(newBDB("odd", 10, 3, false), 1, 1, 1, 1),
			1, 2, 4,
			shard("1", 1, 1, m, 3, "0-5460"),
			shard("2", 1, 1, m, 3, "5461-10921"),
			shard("3", 1, 1, m, 3, "10922-16383")),
		createdCase("uids continue across databases",
			withCache,
			createBDB(newBDB("sessions", 2*gib, 1, true), 3, 3, 1),
			2, 3, 5,
			shard("3", 2, 3, m, 2*gib, "0-16383"),
			shard("4", 2, 1, r, 2*gib, "0-16383")),
		createdCase("uids of deleted databases and shards are not reused, nor is the name kept",
			with(withCache, &fsm.DeleteBDB{Actor: adminActor, UID: 1}),
			createBDB(newBDB("cache", gib, 1, false), 2, 2),
			2, 3, 4,
			shard("3", 2, 2, m, gib, "0-16383")),
		func() applyCase {
			c := createdCase("uids come from the counters in the state",
				threeNodes(),
				createBDB(newBDB("cache", 2*gib, 1, true), 1, 1, 2),
				7, 8, 42,
				shard("40", 7, 1, m, 2*gib, "0-16383"),
				shard("41", 7, 2, r, 2*gib, "0-16383"))
			c.edit = func(s *fsm.State) { s.NextBDBUID, s.NextShardUID = 7, 40 }
			return c
		}(),
		createdCase("uid, status and endpoints in the payload are ignored",
			threeNodes(),
			func() *fsm.CreateBDB {
				c := createBDB(newBDB("cache", gib, 1, false), 1, 1)
				c.BDB.UID = 7
				c.BDB.Status = "pending"
				c.BDB.Endpoints = []fsm.Endpoint{{UID: "7:9", NodeUID: 3, Port: 1}}
				return c
			}(),
			1, 2, 2,
			shard("1", 1, 1, m, gib, "0-16383")),
		createdCase("the endpoint may sit on the master of any slot range",
			threeNodes(),
			createBDB(newBDB("cache", 2*gib, 2, true), 3, 1, 2, 3, 1),
			1, 2, 5,
			shard("1", 1, 1, m, gib, "0-8191"),
			shard("2", 1, 2, r, gib, "0-8191"),
			shard("3", 1, 3, m, gib, "8192-16383"),
			shard("4", 1, 1, r, gib, "8192-16383")),
		createdCase("every persistence mode is accepted: snapshot",
			threeNodes(),
			func() *fsm.CreateBDB {
				b := newBDB("cache", gib, 1, false)
				b.DataPersistence = fsm.PersistenceSnapshot
				return createBDB(b, 1, 1)
			}(),
			1, 2, 2,
			shard("1", 1, 1, m, gib, "0-16383")),
		createdCase("every persistence mode is accepted: disabled, with crdt",
			threeNodes(),
			func() *fsm.CreateBDB {
				b := newBDB("cache", gib, 1, false)
				b.DataPersistence = fsm.PersistenceDisabled
				b.CRDT = true
				return createBDB(b, 1, 1)
			}(),
			1, 2, 2,
			shard("1", 1, 1, m, gib, "0-16383")),
		{
			name:    "a taken name is bdb_exists",
			setup:   withCache,
			cmd:     createBDB(newBDB("cache", gib, 1, false), 3, 3),
			wantErr: fsm.ErrBDBExists,
		},
	})
}

func TestApply_CreateBDB_RefusesBadFields(t *testing.T) {
	bad := func(name string, edit func(c *fsm.CreateBDB)) applyCase {
		c := createBDB(newBDB("cache", gib, 1, false), 1, 1)
		edit(c)
		return applyCase{name: name, setup: threeNodes(), cmd: c, wantErr: fsm.ErrInvalidParameter}
	}
	runApplyCases(t, []applyCase{
		bad("empty name", func(c *fsm.CreateBDB) { c.BDB.Name = "" }),
		bad("memory 0", func(c *fsm.CreateBDB) { c.BDB.MemorySize = 0 }),
		bad("negative memory", func(c *fsm.CreateBDB) { c.BDB.MemorySize = -gib }),
		bad("0 shards", func(c *fsm.CreateBDB) { c.BDB.ShardsCount = 0; c.Placement = nil }),
		bad("negative shards", func(c *fsm.CreateBDB) { c.BDB.ShardsCount = -1; c.Placement = nil }),
		bad("513 shards", func(c *fsm.CreateBDB) { c.BDB.ShardsCount = 513; c.Placement = repeat(1, 513) }),
		bad("no persistence mode", func(c *fsm.CreateBDB) { c.BDB.DataPersistence = "" }),
		bad("unknown persistence mode", func(c *fsm.CreateBDB) { c.BDB.DataPersistence = "rdb" }),
		bad("persistence mode in capitals", func(c *fsm.CreateBDB) { c.BDB.DataPersistence = "AOF" }),
		bad("no placement", func(c *fsm.CreateBDB) { c.Placement = nil }),
		bad("placement longer than the shards", func(c *fsm.CreateBDB) { c.Placement = []int{1, 2} }),
		bad("placement without the replicas", func(c *fsm.CreateBDB) {
			c.BDB.Replication = true
			c.BDB.ShardsCount = 2
			c.Placement = []int{1, 2}
		}),
		bad("placement with replicas for a database without replication", func(c *fsm.CreateBDB) {
			c.BDB.ShardsCount = 2
			c.Placement = []int{1, 2, 3, 1}
		}),
		bad("placement one short of the replicas", func(c *fsm.CreateBDB) {
			c.BDB.Replication = true
			c.BDB.ShardsCount = 2
			c.Placement = []int{1, 2, 3}
		}),
		{
			// Bad fields are refused before the name is looked up.
			name:    "bad fields under a taken name are invalid_parameter",
			setup:   with(threeNodes(), createBDB(newBDB("cache", gib, 1, false), 1, 1)),
			cmd:     createBDB(newBDB("cache", 0, 1, false), 1, 1),
			wantErr: fsm.ErrInvalidParameter,
		},
	})
}

// TestApply_CreateBDB_PlacementRules checks every rule of SPEC §5 that
// CreateBDB re-checks in Apply: each is broken once (placement_conflict,
// state unchanged) and, where a limit is involved, met exactly.
func TestApply_CreateBDB_PlacementRules(t *testing.T) {
	conflict := func(name string, setup []any, cmd *fsm.CreateBDB) applyCase {
		return applyCase{name: name, setup: setup, cmd: cmd, wantErr: fsm.ErrPlacementConflict}
	}
	conflictAfter := func(name string, setup []any, edit func(s *fsm.State), cmd *fsm.CreateBDB) applyCase {
		return applyCase{name: name, setup: setup, edit: edit, cmd: cmd, wantErr: fsm.ErrPlacementConflict}
	}
	const m, r = fsm.RoleMaster, fsm.RoleSlave
	one := func(node int) *fsm.CreateBDB { return createBDB(newBDB("new", gib, 1, false), node, node) }
	pair := func(master, replica int) *fsm.CreateBDB {
		return createBDB(newBDB("new", gib, 1, true), master, master, replica)
	}
	setStatus := func(uid int, status string) *fsm.SetNodeStatus {
		return &fsm.SetNodeStatus{Actor: adminActor, UID: uid, Status: status}
	}
	updateNode := func(u fsm.UpdateNode) *fsm.UpdateNode {
		u.Actor = adminActor
		return &u
	}
	maxShards := func(uid, n int) *fsm.UpdateNode {
		return updateNode(fsm.UpdateNode{UID: uid, MaxRedisServers: ptr(n)})
	}
	policy := func(p fsm.UpdatePolicy) *fsm.UpdatePolicy {
		p.Actor = adminActor
		return &p
	}
	rackAware := policy(fsm.UpdatePolicy{RackAware: ptr(true)})
	overbooking := policy(fsm.UpdatePolicy{ShardsOverbooking: ptr(true)})
	// Node 4 has 1000 bytes; node 2 holds 2 shards at most.
	small := with(threeNodes(), addNode(nodeWith(4, func(n *fsm.Node) { n.TotalMemory = 1000 })))
	two := with(threeNodes(), maxShards(2, 2))
	// Nodes 1 and 2 share rack-1.
	oneRack := with(threeNodes(), updateNode(fsm.UpdateNode{UID: 2, RackID: ptr("rack-1")}))
	// Nodes 1 and 2 have no rack.
	noRacks := with(threeNodes(),
		updateNode(fsm.UpdateNode{UID: 1, RackID: ptr("")}),
		updateNode(fsm.UpdateNode{UID: 2, RackID: ptr("")}))

	var cases []applyCase
	// The rules hold for a master and for a replica alike.
	for _, role := range []struct {
		name string
		cmd  func(node int) *fsm.CreateBDB
	}{
		{"master", one},
		{"replica", func(node int) *fsm.CreateBDB { return pair(3, node) }},
	} {
		cases = append(cases,
			conflict(role.name+" on a missing node", threeNodes(), role.cmd(4)),
			conflict(role.name+" on node 0", threeNodes(), role.cmd(0)),
			conflict(role.name+" on a down node", with(threeNodes(), setStatus(2, fsm.NodeDown)), role.cmd(2)),
			conflict(role.name+" on a provisioning node", with(threeNodes(), setStatus(2, fsm.NodeProvisioning)), role.cmd(2)),
			conflict(role.name+" on a decommissioning node", with(threeNodes(), setStatus(2, fsm.NodeDecommissioning)), role.cmd(2)),
			conflict(role.name+" on a node with accept_servers false",
				with(threeNodes(), updateNode(fsm.UpdateNode{UID: 2, AcceptServers: ptr(false)})), role.cmd(2)),
			conflictAfter(role.name+" on a node in maintenance", threeNodes(),
				func(s *fsm.State) { s.Nodes[2].Maintenance = true }, role.cmd(2)),
			conflictAfter(role.name+" on a node being removed", threeNodes(),
				func(s *fsm.State) { s.Nodes[2].Removing = true }, role.cmd(2)),
			conflict(role.name+" on a node with max_redis_servers 0", with(threeNodes(), maxShards(2, 0)), role.cmd(2)),
		)
	}
	cases = append(cases,
		// max_redis_servers
		conflict("more shards than max_redis_servers counting existing shards",
			with(two, createBDB(newBDB("old", gib, 1, false), 2, 2)),
			createBDB(newBDB("new", 2*gib, 2, false), 2, 2, 2)),
		createdCase("up to max_redis_servers counting existing shards",
			with(two, createBDB(newBDB("old", gib, 1, false), 2, 2)),
			createBDB(newBDB("new", gib, 1, false), 2, 2),
			2, 3, 3,
			shard("2", 2, 2, m, gib, "0-16383")),
		conflict("more shards than max_redis_servers counting shards of the same command",
			two,
			createBDB(newBDB("new", 3*gib, 3, false), 2, 2, 2, 2)),
		conflict("more shards than max_redis_servers counting replicas of the same command",
			two,
			createBDB(newBDB("new", 3*gib, 3, true), 2, 2, 1, 3, 2, 2, 3)),
		createdCase("up to max_redis_servers counting shards of the same command",
			two,
			createBDB(newBDB("new", 2*gib, 2, false), 2, 2, 2),
			1, 2, 3,
			shard("1", 1, 2, m, gib, "0-8191"),
			shard("2", 1, 2, m, gib, "8192-16383")),

		// memory
		conflict("more memory than the node has", small, createBDB(newBDB("new", 1001, 1, false), 4, 4)),
		createdCase("exactly the memory the node has", small,
			createBDB(newBDB("new", 1000, 1, false), 4, 4),
			1, 2, 2,
			shard("1", 1, 4, m, 1000, "0-16383")),
		conflict("more memory than is free counting existing shards",
			with(small, createBDB(newBDB("old", 600, 1, false), 4, 4)),
			createBDB(newBDB("new", 500, 1, false), 4, 4)),
		conflict("more memory than is free counting shards of the same command",
			small,
			createBDB(newBDB("new", 1200, 2, false), 4, 4, 4)),
		conflict("more memory than is free counting the replica of the same command",
			small,
			createBDB(newBDB("new", 1200, 2, true), 4, 4, 1, 1, 4)),
		conflict("more memory than is free with the largest size allowed",
			with(threeNodes(), createBDB(newBDB("old", gib, 1, false), 2, 2)),
			createBDB(newBDB("new", fsm.MaxMemorySize, 1, false), 2, 2)),
		// Two databases of the largest size, allowed while overbooking was
		// on, leave node 2 far over its memory; with overbooking off again
		// the node has no room left.
		conflict("more memory than is free after overbooking far beyond the node",
			with(threeNodes(), overbooking,
				createBDB(newBDB("huge", fsm.MaxMemorySize, 1, false), 2, 2),
				createBDB(newBDB("huger", fsm.MaxMemorySize, 1, false), 2, 2),
				policy(fsm.UpdatePolicy{ShardsOverbooking: ptr(false)})),
			createBDB(newBDB("new", gib, 1, false), 2, 2)),
		createdCase("more memory than the node has with shards_overbooking",
			with(small, overbooking),
			createBDB(newBDB("new", 1001, 1, false), 4, 4),
			1, 2, 2,
			shard("1", 1, 4, m, 1001, "0-16383")),
		createdCase("more memory than is free with shards_overbooking",
			with(small, createBDB(newBDB("old", 600, 1, false), 4, 4), overbooking),
			createBDB(newBDB("new", 1200, 2, false), 4, 4, 4),
			2, 3, 4,
			shard("2", 2, 4, m, 600, "0-8191"),
			shard("3", 2, 4, m, 600, "8192-16383")),
		conflict("shards_overbooking does not lift max_redis_servers",
			with(two, overbooking),
			createBDB(newBDB("new", 3*gib, 3, false), 2, 2, 2, 2)),

		// master and replica apart
		conflict("master and its replica on one node", threeNodes(), pair(2, 2)),
		conflict("master and its replica on one node in the second slot range",
			threeNodes(), createBDB(newBDB("new", 2*gib, 2, true), 1, 1, 2, 3, 3)),
		createdCase("a master and the replica of another slot range may share a node",
			threeNodes(),
			createBDB(newBDB("new", 2*gib, 2, true), 1, 1, 2, 2, 1),
			1, 2, 5,
			shard("1", 1, 1, m, gib, "0-8191"),
			shard("2", 1, 2, r, gib, "0-8191"),
			shard("3", 1, 2, m, gib, "8192-16383"),
			shard("4", 1, 1, r, gib, "8192-16383")),

		// racks
		conflict("master and replica on one rack with rack_aware", with(oneRack, rackAware), pair(1, 2)),
		createdCase("master and replica on one rack without rack_aware",
			oneRack, pair(1, 2),
			1, 2, 3,
			shard("1", 1, 1, m, gib, "0-16383"),
			shard("2", 1, 2, r, gib, "0-16383")),
		createdCase("master and replica on different racks with rack_aware",
			with(oneRack, rackAware), pair(1, 3),
			1, 2, 3,
			shard("1", 1, 1, m, gib, "0-16383"),
			shard("2", 1, 3, r, gib, "0-16383")),
		createdCase("masters of different slot ranges on one rack with rack_aware",
			with(oneRack, rackAware),
			createBDB(newBDB("new", 2*gib, 2, false), 1, 1, 2),
			1, 2, 3,
			shard("1", 1, 1, m, gib, "0-8191"),
			shard("2", 1, 2, m, gib, "8192-16383")),
		// Nodes without a rack id are on no rack, so not on the same rack
		// (SPEC §5); the planner (cluster/placement.go) places pairs there.
		createdCase("master and replica on nodes without a rack id with rack_aware",
			with(noRacks, rackAware), pair(1, 2),
			1, 2, 3,
			shard("1", 1, 1, m, gib, "0-16383"),
			shard("2", 1, 2, r, gib, "0-16383")),

		// endpoint
		conflict("endpoint on the node of the replica only", threeNodes(),
			createBDB(newBDB("new", gib, 1, true), 2, 1, 2)),
		conflict("endpoint on a node without shards of the database", threeNodes(),
			createBDB(newBDB("new", gib, 1, false), 3, 1)),
		conflict("endpoint on a node with a master of another database",
			with(threeNodes(), createBDB(newBDB("old", gib, 1, false), 3, 3)),
			createBDB(newBDB("new", gib, 1, false), 3, 1)),
		conflict("endpoint on a missing node", threeNodes(), createBDB(newBDB("new", gib, 1, false), 9, 1)),
		conflict("no endpoint node", threeNodes(), createBDB(newBDB("new", gib, 1, false), 0, 1)),
	)
	runApplyCases(t, cases)
}

func TestApply_DeleteBDB(t *testing.T) {
	const m, r = fsm.RoleMaster, fsm.RoleSlave
	twoDBs := with(threeNodes(),
		createBDB(newBDB("orders", 4*gib, 2, true), 1, 1, 2, 3, 1),
		createBDB(newBDB("cache", gib, 1, false), 2, 2),
	)
	orders := storedBDB(newBDB("orders", 4*gib, 2, true), 1, 1)
	cache := storedBDB(newBDB("cache", gib, 1, false), 2, 2)
	runApplyCases(t, []applyCase{
		{
			name:  "removes the database and exactly its shards",
			setup: twoDBs,
			cmd:   &fsm.DeleteBDB{Actor: adminActor, UID: 1},
			want: func(s *fsm.State, _ uint64) {
				s.BDBs = map[int]*fsm.BDB{}
				s.Shards = map[string]*fsm.Shard{}
				putBDB(s, cache, shard("5", 2, 2, m, gib, "0-16383"))
			},
		},
		{
			name:  "removes the last database and keeps the uid counters",
			setup: twoDBs,
			cmd:   &fsm.DeleteBDB{Actor: adminActor, UID: 2},
			want: func(s *fsm.State, _ uint64) {
				s.BDBs = map[int]*fsm.BDB{}
				s.Shards = map[string]*fsm.Shard{}
				putBDB(s, orders,
					shard("1", 1, 1, m, 2*gib, "0-8191"),
					shard("2", 1, 2, r, 2*gib, "0-8191"),
					shard("3", 1, 3, m, 2*gib, "8192-16383"),
					shard("4", 1, 1, r, 2*gib, "8192-16383"))
			},
		},
		{
			name:  "on behalf of the cluster",
			setup: twoDBs,
			cmd:   &fsm.DeleteBDB{UID: 2},
			want: func(s *fsm.State, _ uint64) {
				delete(s.BDBs, 2)
				delete(s.Shards, "5")
			},
		},
		{
			name:    "unknown uid is bdb_not_found",
			setup:   twoDBs,
			cmd:     &fsm.DeleteBDB{Actor: adminActor, UID: 3},
			wantErr: fsm.ErrBDBNotFound,
		},
		{
			name:    "uid 0 is bdb_not_found",
			setup:   twoDBs,
			cmd:     &fsm.DeleteBDB{Actor: adminActor},
			wantErr: fsm.ErrBDBNotFound,
		},
		{
			name:    "deleted uid is bdb_not_found",
			setup:   with(twoDBs, &fsm.DeleteBDB{Actor: adminActor, UID: 1}),
			cmd:     &fsm.DeleteBDB{Actor: adminActor, UID: 1},
			wantErr: fsm.ErrBDBNotFound,
		},
		{
			name:    "without databases is bdb_not_found",
			setup:   threeNodes(),
			cmd:     &fsm.DeleteBDB{Actor: adminActor, UID: 1},
			wantErr: fsm.ErrBDBNotFound,
		},
	})
}

// TestSlotRange_SplitsEveryCountEvenly checks, for every shard count a
// database may have, that the ranges are contiguous, cover slots 0 to 16383
// exactly once, and differ in size by at most one slot.
func TestSlotRange_SplitsEveryCountEvenly(t *testing.T) {
	for n := 1; n <= 512; n++ {
		next, lo, hi := 0, fsm.SlotCount, 0
		for i := range n {
			var a, b int
			got := fsm.SlotRange(i, n)
			if _, err := fmt.Sscanf(got, "%d-%d", &a, &b); err != nil || got != fmt.Sprintf("%d-%d", a, b) {
				t.Fatalf("SlotRange(%d, %d) = %q, want FIRST-LAST", i, n, got)
			}
			if a != next || b < a {
				t.Fatalf("SlotRange(%d, %d) = %q, want a non-empty range from %d", i, n, got, next)
			}
			next = b + 1
			lo, hi = min(lo, b-a+1), max(hi, b-a+1)
		}
		if next != fsm.SlotCount {
			t.Fatalf("%d shards end at slot %d, want %d", n, next-1, fsm.SlotCount-1)
		}
		if hi-lo > 1 {
			t.Fatalf("%d shards get %d to %d slots", n, lo, hi)
		}
	}
	for _, tc := range []struct {
		i, n int
		want string
	}{
		{0, 1, "0-16383"},
		{0, 2, "0-8191"}, {1, 2, "8192-16383"},
		{0, 3, "0-5460"}, {1, 3, "5461-10921"}, {2, 3, "10922-16383"},
		{0, 512, "0-31"}, {1, 512, "32-63"}, {511, 512, "16352-16383"},
	} {
		if got := fsm.SlotRange(tc.i, tc.n); got != tc.want {
			t.Errorf("SlotRange(%d, %d) = %q, want %q", tc.i, tc.n, got, tc.want)
		}
	}
}

func repeat(node, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = node
	}
	return out
}
