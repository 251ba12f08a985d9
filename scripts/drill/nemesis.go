package main

// The nemeses: each applies one fault to the running cluster and repairs
// it. An error is a violation of the cluster's promises (no new leader in
// time, a node that does not recover), unless it wraps errSkipped.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"time"
)

// errNoPartitions: this machine cannot make partitions (iptables missing or
// not root); the nemesis is skipped, not failed.
var errNoPartitions = fmt.Errorf("iptables is not usable here (needs root): %w", errSkipped)

// errSkipped marks a nemesis that did not run its fault: the iteration is
// reported as skipped, neither ok nor a violation.
var errSkipped = errors.New("skipped")

// fault is one nemesis iteration: the cluster, the leader before the
// fault, and the randomness that picks victims and durations (in a fixed
// order, so that a seed replays a run).
type fault struct {
	c      *cluster
	ctx    context.Context
	rng    *rand.Rand
	leader *proc
}

// nemesisByName holds every nemesis allNemeses names.
var nemesisByName = map[string]func(f *fault) error{
	"kill-leader":        func(f *fault) error { return f.killRestart(f.oldLeader) },
	"kill-random":        func(f *fault) error { return f.killRestart(f.randomNode) },
	"partition-leader":   func(f *fault) error { return f.isolate(f.oldLeader) },
	"partition-minority": func(f *fault) error { return f.isolate(f.randomNode) },
	"remove-rejoin":      func(f *fault) error { return f.c.removeRejoin(f.ctx, f.rng, f.pause) },
	"remove-fail":        func(f *fault) error { return f.c.removeFail(f.ctx, f.rng, f.pause) },
	"rolling-restart":    (*fault).rollingRestart,
	"pause-leader":       func(f *fault) error { return f.pauseNode(false) },
	"pause-target":       func(f *fault) error { return f.pauseNode(true) },
	"term-restart":       (*fault).termStorm,
	"term-all":           func(f *fault) error { return f.c.restartAll(f.ctx, true) },
	"disk-full":          (*fault).fullDisk,
	"bitflip":            func(f *fault) error { return f.c.bitFlip(f.ctx, f.rng, f.randomFollower()) },
	"full-restart":       func(f *fault) error { return f.c.restartAll(f.ctx, false) },
	"kill-cnmd-only":     (*fault).killCnmdOnly,
	"kill-redis-server":  (*fault).killRedisServer,
	calm:                 func(f *fault) error { f.pause(5 * time.Second); return nil },
}

// calm is the nemesis of no fault: for 5 to 10 s the clients' actions run
// alone, so that what they cost by themselves (a switch-over's write gap)
// is measured apart from what the faults cost.
const calm = "calm"

// nemesis applies one fault and repairs it; an error is a violation of the
// cluster's promises (no new leader in time, a node that does not recover).
func (c *cluster) nemesis(ctx context.Context, name string, rng *rand.Rand) error {
	leader, err := c.leader(ctx, 15*time.Second)
	if err != nil {
		return fmt.Errorf("no leader before the fault: %w", err)
	}
	apply, ok := nemesisByName[name]
	if !ok {
		return fmt.Errorf("unknown nemesis %q (know %s)", name, strings.Join(allNemeses, ", "))
	}
	return apply(&fault{c: c, ctx: ctx, rng: rng, leader: leader})
}

// pause waits between d and 2d, or until the drill is stopped.
func (f *fault) pause(d time.Duration) {
	select {
	case <-f.ctx.Done():
	case <-time.After(d + time.Duration(f.rng.Int64N(int64(d)))):
	}
}

// Victim pickers. They are called only once a nemesis is sure to apply
// its fault, so that a skipped one draws nothing from rng.
func (f *fault) oldLeader() *proc  { return f.leader }
func (f *fault) randomNode() *proc { return f.c.nodes[f.rng.IntN(len(f.c.nodes))] }
func (f *fault) randomFollower() *proc {
	return othersThan(f.c.running(), f.leader)[f.rng.IntN(len(f.c.running())-1)]
}

// killRestart kills a node, expects the survivors to elect a leader, and
// starts it again.
func (f *fault) killRestart(pick func() *proc) error {
	c, ctx := f.c, f.ctx
	victim := pick()
	c.kill(victim, false)
	if _, err := c.leader(ctx, 10*time.Second); err != nil {
		return fmt.Errorf("no leader among the survivors of node %d: %w", victim.uid, err)
	}
	f.pause(time.Second)
	if err := c.start(victim); err != nil {
		return err
	}
	return c.waitUp(ctx, victim)
}

// isolate cuts a node off from all the others for a while, then heals.
func (f *fault) isolate(pick func() *proc) error {
	if !havePartitions() {
		return errNoPartitions
	}
	victim := pick()
	if err := f.c.partition([]*proc{victim}, othersThan(f.c.nodes, victim)); err != nil {
		return err
	}
	f.pause(2 * time.Second)
	f.c.heal()
	_, err := f.c.leader(f.ctx, 15*time.Second)
	return err
}

// rollingRestart stops and starts every node in turn, gracefully, waiting
// for a leader after each.
func (f *fault) rollingRestart() error {
	c, ctx := f.c, f.ctx
	for _, n := range c.nodes {
		c.kill(n, true)
		if err := c.start(n); err != nil {
			return err
		}
		if err := c.waitUp(ctx, n); err != nil {
			return err
		}
		if _, err := c.leader(ctx, 15*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// pauseNode freezes the leader, or with target a node a shard is being
// copied to (a follower when no copy runs), for 3 or 15 s.
func (f *fault) pauseNode(target bool) error {
	c, rng, leader := f.c, f.rng, f.leader
	d := 3 * time.Second
	if rng.IntN(2) == 0 {
		d = 15 * time.Second
	}
	victim, what := leader, "leader"
	if target {
		if victim = c.moveTarget(f.ctx, 10*time.Second); victim != nil {
			what = "copy target"
		} else {
			victim, what = f.randomFollower(), "follower (no copy ran)"
		}
	}
	fmt.Printf("drill:   pausing %s node %d for %s\n", what, victim.uid, d)
	return c.pauseFor(f.ctx, victim, d, victim == leader)
}

// termStorm restarts three random nodes (perhaps the same one again)
// gracefully in quick succession.
func (f *fault) termStorm() error {
	var storm []*proc
	for range 3 {
		storm = append(storm, f.randomNode())
	}
	return f.c.termRestart(f.ctx, storm)
}

// fullDisk fills the disk of the leader or, on half the runs, of a
// follower.
func (f *fault) fullDisk() error {
	victim := f.leader
	if f.rng.IntN(2) == 0 {
		victim = f.randomFollower()
	}
	return f.c.diskFull(f.ctx, victim, 8*time.Second)
}

// iptables partitions: traffic between the two sides is dropped. Every
// node-to-node connection leaves from the node's own address, so rules on
// source and destination separate nodes on loopback.
func (c *cluster) partition(a, b []*proc) error {
	for _, x := range a {
		for _, y := range b {
			for _, r := range [][2]string{{x.host, y.host}, {y.host, x.host}} {
				if out, err := exec.Command("iptables", "-I", "INPUT", "-s", r[0], "-d", r[1], "-j", "DROP").CombinedOutput(); err != nil {
					return fmt.Errorf("iptables: %v: %s", err, out)
				}
				c.rules = append(c.rules, r)
			}
		}
	}
	return nil
}

func (c *cluster) heal() {
	for _, r := range c.rules {
		_ = exec.Command("iptables", "-D", "INPUT", "-s", r[0], "-d", r[1], "-j", "DROP").Run()
	}
	c.rules = nil
}

func havePartitions() bool {
	return exec.Command("iptables", "-L", "INPUT", "-n").Run() == nil
}

func othersThan(nodes []*proc, x *proc) []*proc {
	var out []*proc
	for _, n := range nodes {
		if n != x {
			out = append(out, n)
		}
	}
	return out
}
